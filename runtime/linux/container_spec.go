package linux

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nsinit"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
)

// defaultPath is the PATH a container gets when neither the image nor the
// pod sets one (Docker's and containerd's default); the init searches it
// then.
const defaultPath = nsinit.DefaultPath

// resolveArgs applies Kubernetes' rules: command replaces the image's
// Entrypoint, args its Cmd, and a command without args drops the image Cmd.
func resolveArgs(command, args, entrypoint, cmd []string) ([]string, error) {
	var out []string
	switch {
	case len(command) == 0 && len(args) == 0:
		out = append(append(out, entrypoint...), cmd...)
	case len(command) == 0:
		out = append(append(out, entrypoint...), args...)
	case len(args) == 0:
		out = append(out, command...)
	default:
		out = append(append(out, command...), args...)
	}
	if len(out) == 0 || out[0] == "" {
		return nil, fmt.Errorf("no command: the image has no entrypoint or cmd and none is given: %w", runtime.ErrInvalidConfig)
	}
	return out, nil
}

// mergeEnv returns the image environment overridden by the pod's, in a
// stable order (image order, then new names in pod order), plus PATH,
// HOSTNAME and HOME when nobody set them.
func mergeEnv(image []string, pod []runtime.EnvVar, hostname, home string) []string {
	var names []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			names = append(names, k)
		}
		vals[k] = v
	}
	for _, kv := range image {
		k, v, _ := strings.Cut(kv, "=")
		if k != "" {
			set(k, v)
		}
	}
	for _, e := range pod {
		set(e.Name, e.Value)
	}
	for k, v := range map[string]string{"PATH": defaultPath, "HOSTNAME": hostname, "HOME": home} {
		if _, ok := vals[k]; !ok && v != "" {
			set(k, v)
		}
	}
	out := make([]string, 0, len(names))
	for _, k := range names {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// imageFile reads a file of the image as the overlay would show it: the
// highest layer that has it wins, and a whiteout hides it from lower layers.
// A missing file is os.ErrNotExist.
func imageFile(layers []string, name string) ([]byte, error) {
	name = path.Clean("/" + name)
	dir, base := path.Split(name)
	for i := len(layers) - 1; i >= 0; i-- {
		p := filepath.Join(layers[i], name)
		if st, err := os.Lstat(p); err == nil {
			if !st.Mode().IsRegular() {
				// A symlink could point anywhere on the host: not followed.
				return nil, fmt.Errorf("image file %s is not a regular file: %w", name, os.ErrNotExist)
			}
			return os.ReadFile(p)
		}
		if _, err := os.Lstat(filepath.Join(layers[i], dir, ".wh."+base)); err == nil {
			return nil, os.ErrNotExist
		}
		if _, err := os.Lstat(filepath.Join(layers[i], dir, ".wh..wh..opq")); err == nil {
			return nil, os.ErrNotExist
		}
	}
	return nil, os.ErrNotExist
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

func parsePasswd(b []byte) []passwdEntry {
	var out []passwdEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 || strings.HasPrefix(f[0], "#") {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5]})
	}
	return out
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

func parseGroup(b []byte) []groupEntry {
	var out []groupEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		var members []string
		if f[3] != "" {
			members = strings.Split(f[3], ",")
		}
		out = append(out, groupEntry{name: f[0], gid: uint32(gid), members: members})
	}
	return out
}

// errNonRoot is wrapped when runAsNonRoot refuses a container.
var errNonRoot = errors.New("runAsNonRoot")

// resolveUser decides uid, gid and groups: runAsUser/runAsGroup win over the
// image's User ("name", "uid", "uid:gid", "name:group"), names are looked up
// in the image's /etc/passwd and /etc/group, and runAsNonRoot refuses uid 0
// or a name it cannot prove is not root.
func resolveUser(sec *runtime.SecurityConfig, imageUser string, passwd, group []byte) (*record.User, error) {
	users, groups := parsePasswd(passwd), parseGroup(group)
	id := &record.User{}
	userPart, groupPart, _ := strings.Cut(imageUser, ":")
	var userName string
	uidKnown := false
	gidSet := false
	switch {
	case sec.RunAsUser != nil:
		if *sec.RunAsUser < 0 || *sec.RunAsUser > 1<<32-2 {
			return nil, fmt.Errorf("runAsUser %d: out of range: %w", *sec.RunAsUser, runtime.ErrInvalidConfig)
		}
		id.UID, uidKnown = uint32(*sec.RunAsUser), true
	case userPart != "":
		if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
			id.UID, uidKnown = uint32(n), true
		} else {
			userName = userPart
		}
	default:
		uidKnown = true // root
	}
	if userName != "" {
		found := false
		for _, u := range users {
			if u.name == userName {
				id.UID, id.GID, id.Home, found = u.uid, u.gid, u.home, true
				gidSet = true
				break
			}
		}
		if !found {
			if sec.RunAsNonRoot {
				return nil, fmt.Errorf("%w: image user %q is not numeric and not in the image's /etc/passwd, cannot verify it is not root: %w", errNonRoot, userName, runtime.ErrInvalidConfig)
			}
			return nil, fmt.Errorf("image user %q: not found in the image's /etc/passwd: %w", userName, runtime.ErrInvalidConfig)
		}
		uidKnown = true
	} else {
		for _, u := range users {
			if u.uid == id.UID {
				userName, id.Home = u.name, u.home
				if !gidSet {
					id.GID, gidSet = u.gid, true
				}
				break
			}
		}
	}
	if !uidKnown {
		return nil, fmt.Errorf("user %q unresolved: %w", imageUser, runtime.ErrInvalidConfig)
	}
	switch {
	case sec.RunAsGroup != nil:
		if *sec.RunAsGroup < 0 || *sec.RunAsGroup > 1<<32-2 {
			return nil, fmt.Errorf("runAsGroup %d: out of range: %w", *sec.RunAsGroup, runtime.ErrInvalidConfig)
		}
		id.GID = uint32(*sec.RunAsGroup)
	case groupPart != "" && sec.RunAsUser == nil:
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			id.GID = uint32(n)
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					id.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("image group %q: not found in the image's /etc/group: %w", groupPart, runtime.ErrInvalidConfig)
			}
		}
	case !gidSet:
		id.GID = 0
	}
	if sec.RunAsNonRoot && id.UID == 0 {
		return nil, fmt.Errorf("%w: container would run as root (uid 0): %w", errNonRoot, runtime.ErrInvalidConfig)
	}
	// As containerd: the primary group is a supplementary group too, then
	// (unless the pod's policy is Strict) the groups the image's
	// /etc/group gives the user, then the pod's supplementalGroups.
	seen := map[uint32]bool{id.GID: true}
	id.Groups = append(id.Groups, id.GID)
	if userName != "" && sec.SupplementalGroupsPolicy != "Strict" {
		for _, g := range groups {
			for _, m := range g.members {
				if m == userName && !seen[g.gid] {
					seen[g.gid] = true
					id.Groups = append(id.Groups, g.gid)
				}
			}
		}
	}
	for _, g := range sec.SupplementalGroups {
		if g < 0 || g > 1<<32-2 {
			return nil, fmt.Errorf("supplementalGroups %d: out of range: %w", g, runtime.ErrInvalidConfig)
		}
		if !seen[uint32(g)] {
			seen[uint32(g)] = true
			id.Groups = append(id.Groups, uint32(g))
		}
	}
	if id.Home == "" {
		id.Home = "/"
	}
	return id, nil
}
