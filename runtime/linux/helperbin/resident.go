package helperbin

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procmaps"
)

// dropResident takes the embedded bytes of helper n out of the agent's
// resident memory once the sealed copy exists: they are read-only pages
// of the agent's executable, read once to make the copy, and would
// otherwise count in the agent's RSS for good (3.6 MB, a fifth of its
// budget). MADV_DONTNEED on such pages only unmaps them; a later read
// would fault them in again from the file.
//
// embed exposes no address, so the bytes are found through embed.FS's
// layout; nothing is done unless the range found lies entirely inside a
// read-only private mapping of the agent's own executable, so a layout
// this code does not know can never make it touch other memory.
func dropResident(n Name) {
	data := inPlace(dir + "/" + string(n))
	if len(data) == 0 {
		return
	}
	base := unsafe.Pointer(unsafe.StringData(data))
	page := uintptr(os.Getpagesize())
	start := uintptr(base)
	first := (start + page - 1) &^ (page - 1)
	last := (start + uintptr(len(data))) &^ (page - 1)
	if last <= first || !inExecutable(first, last) {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(base, first-start)), last-first)
	unix.Madvise(b, unix.MADV_DONTNEED)
}

// inPlace returns the embedded file's content where the binary holds it,
// or "" when embed.FS is not laid out as { files *[]file } with file
// { name, data string; hash [16]byte } (Go 1.16 on).
func inPlace(name string) string {
	type file struct {
		name string
		data string
		hash [16]byte
	}
	fsys := (*struct{ files *[]file })(unsafe.Pointer(&files))
	if fsys.files == nil {
		return ""
	}
	for _, f := range *fsys.files {
		if f.name == name {
			if st, err := files.Open(name); err == nil {
				info, err := st.Stat()
				st.Close()
				if err == nil && info.Size() == int64(len(f.data)) {
					return f.data
				}
			}
			return ""
		}
	}
	return ""
}

// inExecutable reports whether [first, last) lies in one read-only private
// mapping of this process's executable (/proc/self/maps).
func inExecutable(first, last uintptr) bool {
	ranges, err := procmaps.Executable("r--p")
	if err != nil {
		return false
	}
	for _, r := range ranges {
		if r.Start <= first && last <= r.End {
			return true
		}
	}
	return false
}
