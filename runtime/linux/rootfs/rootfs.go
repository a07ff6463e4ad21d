// Package rootfs builds a container's root filesystem inside the container's
// own mount namespace: the overlay of the image layers, /proc, a read-only
// /sys, a minimal /dev, masked and read-only kernel paths as containerd and
// CRI-O set them, the pod's hostname/hosts/resolv.conf, volume binds resolved
// inside the rootfs, then pivot_root. Every mount inside the rootfs is made
// by file descriptor, and an image whose /proc, /sys or /dev is not a real
// directory is refused. Nothing it mounts is visible on the host: the mount
// namespace dies with the container and takes them along.
package rootfs

import (
	"errors"
	"fmt"
	"strings"
)

// maxOverlayOptions is the page size: mount(2) copies at most one page of
// options.
const maxOverlayOptions = 4096

// overlayOptions returns the overlay mount options for s: lowerdir wants the
// highest layer first, the reverse of the image's order.
func overlayOptions(s *Spec) (string, error) {
	if len(s.Lower) == 0 {
		return "", errors.New("image has no layers")
	}
	lower := make([]string, len(s.Lower))
	for i, l := range s.Lower {
		if strings.ContainsAny(l, ":,") {
			return "", fmt.Errorf("layer path %q holds ':' or ','", l)
		}
		lower[len(s.Lower)-1-i] = l
	}
	for _, d := range []string{s.Upper, s.Work} {
		if strings.ContainsAny(d, ":,") {
			return "", fmt.Errorf("overlay directory %q holds ':' or ','", d)
		}
	}
	data := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + s.Upper + ",workdir=" + s.Work
	if len(data) >= maxOverlayOptions {
		return "", fmt.Errorf("%d layers make %d bytes of mount options, over the page size", len(lower), len(data))
	}
	return data, nil
}

// Bind is one bind mount into the container, or, with Layers, an image
// volume.
type Bind struct {
	Source      string `json:"source"`      // host path
	Destination string `json:"destination"` // absolute path inside the container
	ReadOnly    bool   `json:"readOnly,omitempty"`
	// Layers, in place of Source, are an image's unpacked layers, lowest
	// first: their merged tree is mounted read-only, nosuid and nodev
	// (ReadOnly does not matter), and SubPath, when set, picks one
	// file or directory of it, resolved beneath the tree.
	Layers  []string `json:"layers,omitempty"`
	SubPath string   `json:"subPath,omitempty"`
}

// Spec describes a container's root filesystem.
type Spec struct {
	// Rootfs is the (empty) host directory the overlay is mounted on.
	Rootfs string `json:"rootfs"`
	// Lower are the image's unpacked layers, lowest first.
	Lower []string `json:"lower"`
	// Upper and Work are the container's private overlay directories.
	Upper string `json:"upper"`
	Work  string `json:"work"`
	// ReadOnly makes the root mount read-only (readOnlyRootFilesystem).
	ReadOnly bool `json:"readOnly,omitempty"`
	// Binds are the pod files (/etc/hosts, /etc/hostname,
	// /etc/resolv.conf) and the volumes, mounted in order.
	Binds []Bind `json:"binds,omitempty"`
	// Privileged leaves /proc and /sys unmasked and /sys writable.
	Privileged bool `json:"privileged,omitempty"`
	// ShmSize is the size of /dev/shm in bytes (0: 64 MiB).
	ShmSize int64 `json:"shmSize,omitempty"`
}

// MaskedPaths are hidden from containers (bind of /dev/null over files, an
// empty read-only tmpfs over directories): containerd's and CRI-O's list.
var MaskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/interrupts",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/sys/devices/virtual/powercap",
	"/sys/firmware",
}

// ReadonlyPaths are mounted read-only in containers.
var ReadonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// Device is a character device node created in the container's /dev.
type Device struct {
	Path         string
	Major, Minor uint32
}

// Devices are the nodes of the minimal /dev. The devices cgroup (v1) admits
// exactly these (plus /dev/pts and /dev/ptmx); see the cgroups package.
var Devices = []Device{
	{"/dev/null", 1, 3},
	{"/dev/zero", 1, 5},
	{"/dev/full", 1, 7},
	{"/dev/random", 1, 8},
	{"/dev/urandom", 1, 9},
	{"/dev/tty", 5, 0},
}
