// Package manifest is the manifest directory: it lists a directory of Pod
// manifests, checks that every file and directory involved is trusted, reads
// each file with bounded effort and decodes it with package spec.
//
// The agent calls LoadDir on every pass (the fsnotify watcher in watch*.go
// only tells it when). LoadDir returns an error only when the directory
// itself is missing, unreadable or untrusted: then there is no truth, and the
// agent must keep running what it runs. Otherwise it returns a Snapshot,
// possibly empty, with a FileResult per manifest file: the pods, ConfigMaps
// and Secrets its documents define and the problems found in it, so the
// agent can keep the last good version of a broken file.
//
// Rules:
//   - Only regular files named *.yaml, *.yml or *.json are read. Dotfiles,
//     editor and package-manager artifacts (*~, .#*, #*#, *.swp, *.swx, *.swo,
//     *.tmp, *.bak, *.orig, *.dpkg-*, *.rpmnew, *.rpmsave, vim's 4913) and
//     other names are ignored
//     (listed in Snapshot.Ignored). A directory, FIFO, socket or device with
//     a manifest name is reported and never opened, so nothing can block.
//   - Symlinks are followed (git-sync and ConfigMap "..data" layouts), and
//     the resolved file must pass the trust check too.
//   - Trust check (sshd's StrictModes): the directory, each of its parents,
//     every manifest and, for symlinks, the resolved file and its parents
//     must be owned by root or by the agent's effective uid and must not be
//     group- or world-writable. A world-writable parent with the sticky bit
//     (/tmp) is accepted, because only an entry's owner can rename or remove
//     it there; the manifest directory itself never is. Options.SkipTrustCheck
//     (the CLI's --insecure-skip-trust-check) turns this off for development.
//   - A file larger than Options.MaxFileSize is refused after reading at most
//     MaxFileSize+1 bytes.
//   - Two documents defining the same kind and namespace/name (pods,
//     ConfigMaps, Secrets, PersistentVolumeClaims): the one in the lexically first file (or earlier
//     in the same file) wins; the loser is left out of its FileResult, and
//     both files get an error naming the other.
//
// Every problem is a *spec.FieldError whose File is the manifest's path, so
// it prints as "pods/web.yaml: doc 2: spec.containers[0].image: is required".
//
// A long-running caller should pass the same Options.Cache on every load:
// files whose bytes did not change are then not parsed again (their objects
// are shared between snapshots and must be treated as read-only).
package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

// Error classes of the loader, beside spec's; test with errors.Is.
var (
	// ErrUntrusted: an owner or mode that lets someone other than root or the
	// agent change what the agent runs.
	ErrUntrusted = errors.New("untrusted")
	// ErrNotRegular: a manifest name that is a directory, FIFO, socket or
	// device; it is never opened.
	ErrNotRegular = errors.New("not a regular file")
	// ErrDuplicate: a pod defined in two places.
	ErrDuplicate = errors.New("duplicate pod")
	// ErrTooLarge: a file over Options.MaxFileSize.
	ErrTooLarge = errors.New("file too large")
	// ErrDanglingSymlink: a manifest that is a symlink to nothing. It is a
	// broken file, not a removed one: the agent keeps what it defined.
	ErrDanglingSymlink = errors.New("dangling symlink")
)

// Options tune the loader. The zero value is the production setting.
type Options struct {
	// SkipTrustCheck disables ownership and mode checks (development only).
	SkipTrustCheck bool
	// MaxFileSize caps a manifest's size in bytes; 0 means
	// spec.DefaultLimits.MaxBytes (1 MiB).
	MaxFileSize int64
	// Cache, when set, skips re-parsing files whose bytes did not change
	// since the last load with the same Cache.
	Cache *Cache
	// AllowUnsafeSysctls admits namespaced sysctls outside Kubernetes' safe
	// set (the agent's --allow-unsafe-sysctls).
	AllowUnsafeSysctls bool
}

func (o Options) limits() spec.Limits {
	l := spec.DefaultLimits
	if o.MaxFileSize > 0 {
		l.MaxBytes = o.MaxFileSize
	}
	l.Validation.AllowUnsafeSysctls = o.AllowUnsafeSysctls
	return l
}

// PodSource is a valid, defaulted pod and where it came from.
type PodSource struct {
	Pod      *spec.Pod
	File     string // path of the manifest, as in FileResult.Path
	Doc      int    // 1-based document index in File
	Line     int    // line where the document starts
	NameLine int    // line of metadata.name (0 if unknown)
}

// ConfigMapSource is a valid ConfigMap and where it came from.
type ConfigMapSource struct {
	ConfigMap *spec.ConfigMap
	File      string
	Doc       int
	NameLine  int
}

// SecretSource is a valid Secret and where it came from.
type SecretSource struct {
	Secret   *spec.Secret
	File     string
	Doc      int
	NameLine int
}

// ClaimSource is a valid PersistentVolumeClaim and where it came from.
type ClaimSource struct {
	Claim    *spec.PersistentVolumeClaim
	File     string
	Doc      int
	NameLine int
}

func (c *ClaimSource) key() spec.PodKey {
	return spec.PodKey{Namespace: c.Claim.Metadata.Namespace, Name: c.Claim.Metadata.Name}
}

// FileResult is what one manifest file yielded. Pods, ConfigMaps and
// Secrets hold only valid documents; Errs holds every problem (all
// *spec.FieldError). A file with errors may still define valid pods in its
// other documents; the agent decides whether to use them or keep the file's
// last good version.
type FileResult struct {
	Path       string // dir joined with the entry name (or the path given to LoadFile)
	Resolved   string // the file actually read, after symlinks; empty if not read
	Digest     string // sha256 of the bytes read, hex; equal digests mean identical bytes
	Pods       []*PodSource
	ConfigMaps []*ConfigMapSource
	Secrets    []*SecretSource
	// Claims are the PersistentVolumeClaims, which size named volumes.
	Claims []*ClaimSource
	Errs   []error
}

// OK reports whether the file had no problem at all.
func (f *FileResult) OK() bool { return len(f.Errs) == 0 }

// Vanished reports whether the file was removed between the listing and
// the read: it is gone, as the next listing will show.
func (f *FileResult) Vanished() bool {
	for _, err := range f.Errs {
		if errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

func (f *FileResult) fail(err error, format string, args ...any) {
	f.Errs = append(f.Errs, &spec.FieldError{File: f.Path, Msg: fmt.Sprintf(format, args...), Err: err})
}

// Snapshot is one listing of the manifest directory.
type Snapshot struct {
	Dir   string
	Files map[string]*FileResult // keyed by FileResult.Path
	// Pods, ConfigMaps and Secrets are the valid objects of all files by
	// namespace/name, duplicates resolved (the lexically first file wins).
	Pods       map[spec.PodKey]*PodSource
	ConfigMaps map[spec.PodKey]*ConfigMapSource
	Secrets    map[spec.PodKey]*SecretSource
	Claims     map[spec.PodKey]*ClaimSource
	Ignored    []string // entry names skipped by the name rules, sorted
}

func newSnapshot(dir string) *Snapshot {
	return &Snapshot{Dir: dir, Files: map[string]*FileResult{}, Pods: map[spec.PodKey]*PodSource{},
		ConfigMaps: map[spec.PodKey]*ConfigMapSource{}, Secrets: map[spec.PodKey]*SecretSource{},
		Claims: map[spec.PodKey]*ClaimSource{}}
}

// SortedPods returns the valid pods ordered by namespace/name.
func (s *Snapshot) SortedPods() []*PodSource {
	out := make([]*PodSource, 0, len(s.Pods))
	for _, p := range s.Pods {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod.Key().String() < out[j].Pod.Key().String() })
	return out
}

// Paths returns the manifest paths in lexical order.
func (s *Snapshot) Paths() []string {
	out := make([]string, 0, len(s.Files))
	for p := range s.Files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Errors returns every problem of every file, by file then position.
func (s *Snapshot) Errors() []error {
	var out []error
	for _, p := range s.Paths() {
		out = append(out, s.Files[p].Errs...)
	}
	return out
}

// IsManifestName reports whether a directory entry name is one the loader
// reads; the watcher uses it to drop irrelevant events early.
func IsManifestName(name string) bool {
	if ignoredName(name) {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func ignoredName(name string) bool {
	switch {
	case name == "", strings.HasPrefix(name, "."), strings.HasSuffix(name, "~"),
		strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"),
		name == "4913", strings.Contains(name, ".dpkg-"):
		return true
	}
	switch filepath.Ext(name) {
	case ".swp", ".swx", ".swo", ".tmp", ".rpmnew", ".rpmsave", ".bak", ".orig":
		return true
	}
	return false
}

// LoadDir lists dir and loads every manifest in it. The error is non-nil
// only when dir itself is missing, unreadable or untrusted; an existing
// empty directory is a valid, empty Snapshot.
func LoadDir(dir string, opts Options) (*Snapshot, error) {
	snap, err := loadDir(dir, opts)
	if err == nil && opts.Cache != nil {
		opts.Cache.retain(snap.Files)
	}
	return snap, err
}

// loadDir is LoadDir without trimming the cache, for the watcher, which
// keeps the entries of files it carries over a short absence.
func loadDir(dir string, opts Options) (*Snapshot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("manifest directory %s: %w", dir, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("manifest directory %s: %w", dir, err)
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return nil, fmt.Errorf("manifest directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("manifest directory %s: %w", dir, &fs.PathError{Op: "open", Path: dir, Err: errors.New("not a directory")})
	}
	if !opts.SkipTrustCheck {
		if err := checkDirChain(abs, true); err != nil {
			return nil, fmt.Errorf("manifest directory %s: %w", dir, err)
		}
		if resolved != abs {
			if err := checkDirChain(resolved, true); err != nil {
				return nil, fmt.Errorf("manifest directory %s (resolved to %s): %w", dir, resolved, err)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("manifest directory %s: list: %w", dir, err)
	}
	snap := newSnapshot(dir)
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		if !IsManifestName(name) {
			snap.Ignored = append(snap.Ignored, name)
			continue
		}
		path := filepath.Join(dir, name)
		snap.Files[path] = loadEntry(path, e.Type(), opts)
	}
	resolveDuplicates(snap)
	return snap, nil
}

// LoadFile loads one manifest file, for `validate FILE` and for the watcher
// when one file changed. Every problem, including a missing file
// (errors.Is(err, fs.ErrNotExist)), is in the result's Errs.
func LoadFile(path string, opts Options) *FileResult {
	st, err := os.Lstat(path)
	if err != nil {
		fr := &FileResult{Path: path}
		fr.Errs = append(fr.Errs, &spec.FieldError{File: path, Msg: "cannot stat: " + errText(err), Err: err})
		return fr
	}
	if !opts.SkipTrustCheck {
		abs, err := filepath.Abs(filepath.Dir(path))
		if err == nil {
			err = checkDirChain(abs, false)
		}
		if err != nil {
			fr := &FileResult{Path: path}
			fr.Errs = append(fr.Errs, &spec.FieldError{File: path, Msg: errText(err), Err: err})
			return fr
		}
	}
	fr := loadEntry(path, st.Mode().Type(), opts)
	snap := newSnapshot(filepath.Dir(path))
	snap.Files[path] = fr
	resolveDuplicates(snap)
	return fr
}

// loadEntry reads and decodes one directory entry of the given type.
func loadEntry(path string, typ fs.FileMode, opts Options) *FileResult {
	fr := &FileResult{Path: path}
	target := path
	link := typ&fs.ModeSymlink != 0
	if link {
		r, err := filepath.EvalSymlinks(path)
		if err == nil {
			target = r
			var st fs.FileInfo
			if st, err = os.Stat(r); err == nil {
				typ = st.Mode().Type()
			}
		}
		if err != nil {
			if cause := danglingOrGone(path, err); cause == ErrDanglingSymlink {
				fr.fail(cause, "is a dangling symlink (%v); what it defined is kept until it is fixed or removed", err)
			} else {
				fr.fail(cause, "symlink cannot be resolved: %s", errText(err))
			}
			return fr
		}
		if !opts.SkipTrustCheck && typ.IsRegular() {
			abs, err := filepath.Abs(filepath.Dir(r))
			if err == nil {
				err = checkDirChain(abs, false)
			}
			if err != nil {
				fr.fail(err, "symlink target %s: %s", r, errText(err))
				return fr
			}
		}
	}
	if !typ.IsRegular() {
		fr.fail(ErrNotRegular, "is %s, not a regular file; not opened", describeType(typ))
		return fr
	}
	data, err := readBounded(target, opts)
	if err != nil {
		if link {
			err = danglingOrGone(path, err)
		}
		fr.fail(err, "%s", errText(err))
		return fr
	}
	fr.Resolved = target
	sum := sha256.Sum256(data)
	fr.Digest = hex.EncodeToString(sum[:])
	lim := opts.limits()
	docs, fileErrs, cached := []*spec.Document(nil), spec.FieldErrors(nil), false
	if opts.Cache != nil {
		docs, fileErrs, cached = opts.Cache.get(path, fr.Digest, lim)
	}
	if !cached {
		docs, fileErrs = spec.ParseFile(path, data, lim)
		if opts.Cache != nil {
			opts.Cache.put(path, fr.Digest, lim, docs, fileErrs)
		}
	}
	for _, e := range fileErrs {
		fr.Errs = append(fr.Errs, e)
	}
	for _, d := range docs {
		for _, e := range d.Errs {
			fr.Errs = append(fr.Errs, e)
		}
		if !d.Valid() {
			continue
		}
		switch {
		case d.Pod != nil:
			fr.Pods = append(fr.Pods, &PodSource{Pod: d.Pod, File: path, Doc: d.Index, Line: d.Line, NameLine: d.NameLine})
		case d.ConfigMap != nil:
			fr.ConfigMaps = append(fr.ConfigMaps, &ConfigMapSource{ConfigMap: d.ConfigMap, File: path, Doc: d.Index, NameLine: d.NameLine})
		case d.Secret != nil:
			fr.Secrets = append(fr.Secrets, &SecretSource{Secret: d.Secret, File: path, Doc: d.Index, NameLine: d.NameLine})
		case d.PersistentVolumeClaim != nil:
			fr.Claims = append(fr.Claims, &ClaimSource{Claim: d.PersistentVolumeClaim, File: path, Doc: d.Index, NameLine: d.NameLine})
		}
	}
	return fr
}

// danglingOrGone classifies a symlink that cannot be followed: when the
// link itself is still there, its target is missing (ErrDanglingSymlink,
// which must keep the pods it defined); otherwise the link was removed.
func danglingOrGone(path string, err error) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, lerr := os.Lstat(path); lerr == nil {
		return ErrDanglingSymlink
	}
	return err
}

// readBounded opens without blocking (a FIFO swapped in after the listing
// cannot hang us), checks the opened file itself and reads at most max+1
// bytes.
func readBounded(path string, opts Options) ([]byte, error) {
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file: %w", path, describeType(st.Mode().Type()), ErrNotRegular)
	}
	if !opts.SkipTrustCheck {
		if err := checkOwnerMode(path, st, false); err != nil {
			return nil, err
		}
	}
	max := opts.limits().MaxBytes
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("file is larger than the %d-byte limit: %w", max, ErrTooLarge)
	}
	return data, nil
}

func describeType(t fs.FileMode) string {
	switch {
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	case t&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "not a regular file"
}

// errText drops the "op path:" prefix of a PathError whose path the
// FieldError already names.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) && !errors.Is(err, ErrUntrusted) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Merge combines FileResults loaded separately (LoadFile on several paths,
// or several directories) into one Snapshot and applies the duplicate rule
// across all of them, by lexical path order. It changes the FileResults
// (losers are removed, errors added); a path given twice counts once.
func Merge(files ...*FileResult) *Snapshot {
	snap := newSnapshot("")
	for _, fr := range files {
		if _, seen := snap.Files[fr.Path]; !seen {
			snap.Files[fr.Path] = fr
		}
	}
	resolveDuplicates(snap)
	return snap
}

// resolveDuplicates applies "lexically first wins, both are told" to pods,
// ConfigMaps, Secrets and claims (each kind on its own), removes the losers from
// their files and fills the snapshot's maps.
func resolveDuplicates(snap *Snapshot) {
	paths := snap.Paths()
	dedupe(snap, paths, "pod", func(fr *FileResult) *[]*PodSource { return &fr.Pods },
		func(ps *PodSource) origin {
			return origin{ps.Pod.Key(), ps.File, ps.Doc, ps.NameLine}
		}, func(k spec.PodKey, ps *PodSource) { snap.Pods[k] = ps })
	dedupe(snap, paths, "ConfigMap", func(fr *FileResult) *[]*ConfigMapSource { return &fr.ConfigMaps },
		func(cs *ConfigMapSource) origin {
			m := cs.ConfigMap.Metadata
			return origin{spec.PodKey{Namespace: m.Namespace, Name: m.Name}, cs.File, cs.Doc, cs.NameLine}
		}, func(k spec.PodKey, cs *ConfigMapSource) { snap.ConfigMaps[k] = cs })
	dedupe(snap, paths, "Secret", func(fr *FileResult) *[]*SecretSource { return &fr.Secrets },
		func(ss *SecretSource) origin {
			m := ss.Secret.Metadata
			return origin{spec.PodKey{Namespace: m.Namespace, Name: m.Name}, ss.File, ss.Doc, ss.NameLine}
		}, func(k spec.PodKey, ss *SecretSource) { snap.Secrets[k] = ss })
	dedupe(snap, paths, "PersistentVolumeClaim", func(fr *FileResult) *[]*ClaimSource { return &fr.Claims },
		func(cs *ClaimSource) origin { return origin{cs.key(), cs.File, cs.Doc, cs.NameLine} },
		func(k spec.PodKey, cs *ClaimSource) { snap.Claims[k] = cs })
}

// origin is where one object was defined.
type origin struct {
	key  spec.PodKey
	file string
	doc  int
	line int
}

func dedupe[T any](snap *Snapshot, paths []string, kind string, list func(*FileResult) *[]T, where func(T) origin, keep func(spec.PodKey, T)) {
	type owner struct {
		o  origin
		fr *FileResult
	}
	first := map[spec.PodKey]owner{}
	for _, path := range paths {
		fr := snap.Files[path]
		items := list(fr)
		kept := (*items)[:0]
		for _, it := range *items {
			o := where(it)
			prev, dup := first[o.key]
			if !dup {
				first[o.key] = owner{o, fr}
				keep(o.key, it)
				kept = append(kept, it)
				continue
			}
			fr.Errs = append(fr.Errs, &spec.FieldError{File: fr.Path, Doc: o.doc, Path: "metadata.name", Line: o.line,
				Msg: fmt.Sprintf("%s %s is already defined in %s doc %d, which wins; this one is ignored", kind, o.key, prev.o.file, prev.o.doc),
				Err: ErrDuplicate})
			if prev.fr != fr {
				prev.fr.Errs = append(prev.fr.Errs, &spec.FieldError{File: prev.fr.Path, Doc: prev.o.doc, Path: "metadata.name", Line: prev.o.line,
					Msg: fmt.Sprintf("%s %s is also defined in %s doc %d; this one wins", kind, o.key, fr.Path, o.doc),
					Err: ErrDuplicate})
			}
		}
		*items = kept
	}
}
