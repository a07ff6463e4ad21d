package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The overlayfs whiteout forms: a 0/0 character device hides a lower
// entry, this xattr on a directory hides the lower directory's content.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// resolveFlags keep every lookup inside the layer and refuse any symlink
// on the way: a layer never legitimately writes through a link, and one
// that does is either broken or attacking.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// unpackLayer unpacks a layer blob into layers/<diffID> and returns the
// size of its uncompressed tar, and whether this call made the directory
// (another process may have finished the same layer first).
func (s *Store) unpackLayer(ctx context.Context, r io.Reader, diffID string, budget *sizeBudget) (int64, bool, error) {
	tmp, err := os.MkdirTemp(s.path("tmp"), "layer-*")
	if err != nil {
		return 0, false, fmt.Errorf("unpack %s: %w", diffID, err)
	}
	st, err := Unpack(ctx, r, tmp, UnpackOptions{DiffID: diffID, MaxEntries: s.opts.MaxLayerEntries, MaxSize: s.opts.MaxLayerSize, budget: budget})
	if err != nil {
		os.RemoveAll(tmp)
		return 0, false, fmt.Errorf("unpack %s: %w", diffID, err)
	}
	// One syncfs instead of an fsync per file: the layer is named only
	// after all of it is on disk.
	if err := syncFS(tmp); err != nil {
		os.RemoveAll(tmp)
		return 0, false, fmt.Errorf("unpack %s: %w", diffID, err)
	}
	// Layer directories are lowerdirs: 0755 so that non-root container
	// users can traverse the root.
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return 0, false, fmt.Errorf("unpack %s: %w", diffID, err)
	}
	dst := s.layerPath(diffID)
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Lstat(dst); serr == nil {
			return st.TarSize, false, nil // another process finished the same layer first
		}
		return 0, false, fmt.Errorf("unpack %s: %w", diffID, err)
	}
	return st.TarSize, true, syncDir(filepath.Dir(dst))
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}

// Unpack extracts a (possibly compressed) layer tar into dir, which must
// exist, converting whiteouts to overlayfs form. Every path is resolved
// beneath dir without following symlinks; entries with absolute paths or
// ".." components, links that leave the layer, and writes through symlinks
// are refused with ErrHostileLayer. Ownership, modes (setuid included),
// devices and mtimes are kept as the layer says. On error dir holds
// partial content: the caller unpacks into a temporary directory.
func Unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) (UnpackStats, error) {
	var st UnpackStats
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxLayerEntries
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultMaxLayerSize
	}
	zr, err := Decompress(r)
	if err != nil {
		return st, err
	}
	defer zr.Close()
	h := sha256.New()
	capped := &capReader{r: zr, max: opts.MaxSize, budget: opts.budget, what: "layer", setting: FlagMaxLayerSize}
	cr := &countReader{r: io.TeeReader(capped, h)}
	u, err := newUnpacker(dir)
	if err != nil {
		return st, err
	}
	u.stream = cr
	defer u.close()
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read tar after %d entries: %w", st.Entries, err)
		}
		st.Entries++
		if st.Entries > opts.MaxEntries {
			return st, fmt.Errorf("more than %d entries: %w", opts.MaxEntries, ErrHostileLayer)
		}
		if st.Entries%256 == 0 {
			if err := ctx.Err(); err != nil {
				return st, err
			}
		}
		if err := u.entry(hdr, tr); err != nil {
			return st, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	// The diffID covers the whole stream, end-of-archive padding included.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return st, fmt.Errorf("read tar trailer: %w", err)
	}
	if beforeFinish != nil {
		beforeFinish()
	}
	if err := u.finish(); err != nil {
		return st, err
	}
	st.TarSize = cr.n
	st.DiffID = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if opts.DiffID != "" && st.DiffID != opts.DiffID {
		return st, fmt.Errorf("uncompressed content hashes to %s, want %s: %w", st.DiffID, opts.DiffID, ErrDigestMismatch)
	}
	return st, nil
}

// beforeFinish, set by tests only, runs when every entry is written and
// the unpacker still holds what it keeps for the end.
var beforeFinish func()

// backedReader refuses file data that the tar stream does not carry: a
// sparse entry makes archive/tar invent holes, so a few bytes of layer
// could otherwise fill the disk with zeros.
type backedReader struct {
	r      io.Reader
	stream *countReader
	start  int64
	n      int64
}

func (b *backedReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.stream.n-b.start {
		return n, fmt.Errorf("file data not present in the layer (sparse entry): %w", ErrHostileLayer)
	}
	return n, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

type unpacker struct {
	stream   *countReader // the uncompressed tar, to check file data is backed by it
	path     string
	root     int
	cacheDir string
	cacheFd  int
	dirs     []*tar.Header
	buf      []byte
}

func newUnpacker(dir string) (*unpacker, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &unpacker{path: dir, root: fd, cacheFd: -1, buf: make([]byte, 256<<10)}, nil
}

func (u *unpacker) close() {
	u.dropCache()
	unix.Close(u.root)
}

func (u *unpacker) dropCache() {
	if u.cacheFd >= 0 {
		unix.Close(u.cacheFd)
	}
	u.cacheFd, u.cacheDir = -1, ""
}

// openBeneath opens dir (relative to the layer root) without following
// any symlink, creating missing directories when create is set.
func (u *unpacker) openBeneath(dir string, flags uint64, create bool) (int, error) {
	how := &unix.OpenHow{Flags: flags | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveFlags}
	fd, err := unix.Openat2(u.root, dir, how)
	if err == nil {
		return fd, nil
	}
	if err != unix.ENOENT || !create {
		return -1, resolveError(dir, err)
	}
	cur, err := unix.Dup(u.root)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(dir, "/") {
		if err := unix.Mkdirat(cur, c, 0o755); err != nil && err != unix.EEXIST {
			unix.Close(cur)
			return -1, &os.PathError{Op: "mkdirat", Path: dir, Err: err}
		}
		next, err := unix.Openat2(cur, c, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveFlags})
		unix.Close(cur)
		if err != nil {
			return -1, resolveError(dir, err)
		}
		cur = next
	}
	if flags == unix.O_PATH {
		return cur, nil
	}
	defer unix.Close(cur)
	fd, err = unix.Openat2(cur, ".", how)
	if err != nil {
		return -1, resolveError(dir, err)
	}
	return fd, nil
}

func resolveError(dir string, err error) error {
	switch err {
	case unix.ELOOP:
		return fmt.Errorf("%s: path goes through a symlink: %w", dir, ErrHostileLayer)
	case unix.EXDEV:
		return fmt.Errorf("%s: path leaves the layer: %w", dir, ErrHostileLayer)
	case unix.ENOTDIR:
		return fmt.Errorf("%s: a path component is not a directory: %w", dir, ErrHostileLayer)
	}
	return &os.PathError{Op: "openat2", Path: dir, Err: err}
}

// parent returns an O_PATH fd for dir, cached because tar entries come
// grouped by directory.
func (u *unpacker) parent(dir string) (int, error) {
	if dir == "" {
		return u.root, nil
	}
	if u.cacheFd >= 0 && u.cacheDir == dir {
		return u.cacheFd, nil
	}
	u.dropCache()
	fd, err := u.openBeneath(dir, unix.O_PATH, true)
	if err != nil {
		return -1, err
	}
	u.cacheDir, u.cacheFd = dir, fd
	return fd, nil
}

// removeExisting clears the way for a new entry: later entries replace
// earlier ones, as tar extraction does.
func (u *unpacker) removeExisting(pfd int, dir, base string) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "fstatat", Path: path.Join(dir, base), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return &os.PathError{Op: "unlinkat", Path: path.Join(dir, base), Err: err}
		}
		return nil
	}
	// Safe as a path: every component up to base was just resolved with
	// no symlinks, and only this unpacker writes into the directory. The
	// cached fd is base's parent, so it stays valid.
	return os.RemoveAll(filepath.Join(u.path, dir, base))
}

func (u *unpacker) entry(hdr *tar.Header, body io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		return nil // the layer root itself: the store owns its metadata
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	pfd, err := u.parent(dir)
	if err != nil {
		return err
	}
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		var st unix.Stat_t
		err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := u.removeExisting(pfd, dir, base); err != nil {
				return err
			}
			err = unix.ENOENT
		}
		if err == unix.ENOENT {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return &os.PathError{Op: "mkdirat", Path: name, Err: err}
			}
		} else if err != nil {
			return &os.PathError{Op: "fstatat", Path: name, Err: err}
		}
		if err := u.owner(pfd, base, hdr); err != nil {
			return err
		}
		if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
			return &os.PathError{Op: "fchmodat", Path: name, Err: err}
		}
		// Only what finish needs: a header keeps its PAX records (up to
		// 1 MiB each), and a layer may hold a million directories.
		u.dirs = append(u.dirs, &tar.Header{Name: hdr.Name, AccessTime: hdr.AccessTime, ModTime: hdr.ModTime})
		return nil
	case tar.TypeReg, tar.TypeRegA:
		if err := u.removeExisting(pfd, dir, base); err != nil {
			return err
		}
		return u.file(pfd, name, base, mode, hdr, body)
	case tar.TypeSymlink:
		if err := u.removeExisting(pfd, dir, base); err != nil {
			return err
		}
		// The target is stored as text and resolved later inside the
		// container's root; nothing here ever follows it.
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return &os.PathError{Op: "symlinkat", Path: name, Err: err}
		}
		if err := u.owner(pfd, base, hdr); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
		if target == "" {
			return fmt.Errorf("hardlink to the layer root: %w", ErrHostileLayer)
		}
		if err := u.removeExisting(pfd, dir, base); err != nil {
			return err
		}
		tdir, tbase := path.Split(target)
		tfd := u.root
		if tdir = strings.TrimSuffix(tdir, "/"); tdir != "" {
			if tfd, err = u.openBeneath(tdir, unix.O_PATH, false); err != nil {
				return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
			}
			defer unix.Close(tfd)
		}
		// Flags 0: a link to a symlink links the symlink, never its target.
		if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
			return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, &os.PathError{Op: "linkat", Path: name, Err: err})
		}
		return nil // a hardlink shares the target's inode and metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := u.removeExisting(pfd, dir, base); err != nil {
			return err
		}
		typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(pfd, base, typ|0o600, int(dev)); err != nil {
			return &os.PathError{Op: "mknodat", Path: name, Err: err}
		}
		if err := u.owner(pfd, base, hdr); err != nil {
			return err
		}
		if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
			return &os.PathError{Op: "fchmodat", Path: name, Err: err}
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q: %w", hdr.Typeflag, ErrHostileLayer)
	}
	return u.times(pfd, base, name, hdr)
}

func (u *unpacker) file(pfd int, name, base string, mode uint32, hdr *tar.Header, body io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "openat", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("sparse file: %w", ErrHostileLayer)
		}
	}
	guard := &backedReader{r: body, stream: u.stream, start: u.stream.n}
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, guard, u.buf); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	// chown clears setuid/setgid, so the mode comes after the owner.
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return &os.PathError{Op: "fchown", Path: name, Err: err}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return &os.PathError{Op: "fchmod", Path: name, Err: err}
	}
	for k, v := range hdr.PAXRecords {
		x, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !allowedXattr(x) {
			continue
		}
		if err := unix.Fsetxattr(fd, x, []byte(v), 0); err != nil {
			return &os.PathError{Op: "fsetxattr " + x, Path: name, Err: err}
		}
	}
	return u.times(pfd, base, name, hdr)
}

// allowedXattr keeps file capabilities and user attributes. trusted.* and
// security.* others would let a layer forge overlayfs metadata (redirects,
// opaque markers) or security labels.
func allowedXattr(x string) bool {
	return x == "security.capability" || strings.HasPrefix(x, "user.")
}

func (u *unpacker) owner(pfd int, base string, hdr *tar.Header) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "fchownat", Path: hdr.Name, Err: err}
	}
	return nil
}

func (u *unpacker) times(pfd int, base, name string, hdr *tar.Header) error {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: name, Err: err}
	}
	return nil
}

// whiteout converts a .wh. entry: .wh..wh..opq marks the directory opaque,
// .wh.NAME becomes a 0/0 character device NAME.
func (u *unpacker) whiteout(dir, base string) error {
	if base == opaqueMarker {
		if dir == "" {
			return nil // an opaque layer root hides nothing overlayfs can express
		}
		if _, err := u.parent(dir); err != nil {
			return err
		}
		fd, err := u.openBeneath(dir, unix.O_RDONLY, false)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
			return &os.PathError{Op: "fsetxattr " + opaqueXattr, Path: dir, Err: err}
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix) {
		return nil // aufs metadata (.wh..wh.plnk and the like) means nothing here
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("whiteout of %q: %w", target, ErrHostileLayer)
	}
	pfd, err := u.parent(dir)
	if err != nil {
		return err
	}
	if err := u.removeExisting(pfd, dir, target); err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, target, unix.S_IFCHR, 0); err != nil {
		return &os.PathError{Op: "mknodat", Path: path.Join(dir, target), Err: err}
	}
	return nil
}

// finish sets directory mtimes last: creating their children changed them.
func (u *unpacker) finish() error {
	for i := len(u.dirs) - 1; i >= 0; i-- {
		hdr := u.dirs[i]
		name, _ := cleanName(hdr.Name)
		dir, base := path.Split(name)
		pfd, err := u.parent(strings.TrimSuffix(dir, "/"))
		if err != nil {
			return err
		}
		if err := u.times(pfd, base, name, hdr); err != nil {
			return err
		}
	}
	return nil
}
