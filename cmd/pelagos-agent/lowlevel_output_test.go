package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
)

// TestLowLevelOutputGolden: what sandbox, container and image ls and
// inspect print is the contract: crictl's habits (13-character IDs unless
// --no-trunc, -q for IDs), and -o json and yaml with the camelCase fields
// of the runtime's types, one object for one argument and a list for
// several.
func TestLowLevelOutputGolden(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sbs := []*runtime.Sandbox{
		{ID: "3f2a9c41d07be815", Pod: runtime.PodKey{Namespace: "default", Name: "web"}, UID: "0d9e", State: runtime.SandboxReady,
			PausePID: 4242, NetNSName: "pelagos-3f2a9c41d07be815", NetNSPath: "/run/netns/pelagos-3f2a9c41d07be815",
			VethHost: "pv3f2a9c41", IP: "172.16.128.3", CgroupPath: "/pelagos/pod-3f2a9c41d07be815",
			Namespaces: runtime.NamespaceOptions{Network: runtime.NamespacePod, IPC: runtime.NamespacePod, PID: runtime.NamespaceContainer},
			Labels:     map[string]string{"app": "web"}, CreatedAt: now.Add(-5 * time.Minute)},
		{ID: "9b0c77e2a4f1d3c6", Pod: runtime.PodKey{Namespace: "infra", Name: "edge"}, State: runtime.SandboxNotReady,
			Reason: "pause process exited", Namespaces: runtime.NamespaceOptions{Network: runtime.NamespaceNode},
			CreatedAt: now.Add(-3 * time.Hour)},
	}
	started, finished := now.Add(-4*time.Minute), now.Add(-time.Minute)
	code := 3
	ctrs := []containerInfo{
		{ID: "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6", Name: "app", SandboxID: sbs[0].ID, Pod: sbs[0].Pod, Attempt: 0,
			Image: "busybox:1.36", ImageID: "sha256:ab512471e34f10e894cfa69eec441e1412a1c418f681cdb04b15c219c8b1dd67",
			State: "running", PID: 4300, CreatedAt: started, StartedAt: &started, LogPath: "/var/lib/pelagos/logs/default_web/app/0.log",
			CgroupPath: "/pelagos/pod-3f2a9c41d07be815/c1d2e3f4"},
		{ID: "0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d", Name: "crash", SandboxID: sbs[0].ID, Pod: sbs[0].Pod, Attempt: 2,
			Image: "busybox:1.36", ImageID: "sha256:ab512471e34f10e894cfa69eec441e1412a1c418f681cdb04b15c219c8b1dd67",
			State: "exited", ExitCode: &code, Reason: "Error", CreatedAt: started, StartedAt: &started, FinishedAt: &finished},
	}
	imgs := []*runtime.Image{
		{ID: "sha256:ab512471e34f10e894cfa69eec441e1412a1c418f681cdb04b15c219c8b1dd67",
			Digest:     "sha256:2e1c7a83c4d8c1d2b5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8",
			References: []string{"docker.io/library/busybox:1.36", "registry.local:5000/tools/busybox:stable"}, Size: 2 << 20,
			Config: runtime.ImageConfig{Cmd: []string{"sh"}}},
		{ID: "sha256:77e0b2d9c1a4f3e6b5d8c7a0f9e2d1c4b3a6f5e8d7c0b9a2f1e4d3c6b5a8f7e0",
			Digest: "sha256:51d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4", Size: 712},
	}
	details := &image.Details{Image: *imgs[0], MediaType: "application/vnd.oci.image.manifest.v1+json", OS: "linux",
		Architecture: "amd64", StoredAt: now.Add(-time.Hour),
		Layers: []image.LayerDetails{{Digest: "sha256:aa", DiffID: "sha256:bb", Size: 2 << 20, Dir: "/var/lib/pelagos/images/layers/bb"}}}

	for _, tc := range []struct {
		golden string
		print  func(w *bytes.Buffer) error
	}{
		{"lowlevel/sandbox-ls.golden", func(w *bytes.Buffer) error { return printSandboxes(w, sbs, &listOptions{output: "table"}, now) }},
		{"lowlevel/sandbox-ls-no-trunc.golden", func(w *bytes.Buffer) error {
			return printSandboxes(w, sbs, &listOptions{output: "table", noTrunc: true}, now)
		}},
		{"lowlevel/sandbox-ls-q.golden", func(w *bytes.Buffer) error {
			return printSandboxes(w, sbs, &listOptions{output: "table", quiet: true}, now)
		}},
		{"lowlevel/sandbox-ls-json.golden", func(w *bytes.Buffer) error { return printSandboxes(w, sbs, &listOptions{output: "json"}, now) }},
		{"lowlevel/sandbox-ls-empty-json.golden", func(w *bytes.Buffer) error { return printSandboxes(w, nil, &listOptions{output: "json"}, now) }},
		{"lowlevel/sandbox-inspect.golden", func(w *bytes.Buffer) error { return printInspected(w, sbs[:1], "json", sandboxFields) }},
		{"lowlevel/sandbox-inspect-table.golden", func(w *bytes.Buffer) error { return printInspected(w, sbs, "table", sandboxFields) }},
		{"lowlevel/container-ls.golden", func(w *bytes.Buffer) error { return printContainers(w, ctrs, &listOptions{output: "table"}, now) }},
		{"lowlevel/container-ls-yaml.golden", func(w *bytes.Buffer) error { return printContainers(w, ctrs, &listOptions{output: "yaml"}, now) }},
		{"lowlevel/container-inspect-two.golden", func(w *bytes.Buffer) error { return printInspected(w, ctrs, "json", containerFields) }},
		{"lowlevel/container-inspect-table.golden", func(w *bytes.Buffer) error { return printInspected(w, ctrs[1:], "table", containerFields) }},
		{"lowlevel/image-ls.golden", func(w *bytes.Buffer) error { return printImages(w, imgs, &listOptions{output: "table"}, false) }},
		{"lowlevel/image-ls-digests-no-trunc.golden", func(w *bytes.Buffer) error {
			return printImages(w, imgs, &listOptions{output: "table", noTrunc: true}, true)
		}},
		{"lowlevel/image-ls-q.golden", func(w *bytes.Buffer) error {
			return printImages(w, imgs, &listOptions{output: "table", quiet: true}, false)
		}},
		{"lowlevel/image-ls-json.golden", func(w *bytes.Buffer) error { return printImages(w, imgs, &listOptions{output: "json"}, false) }},
		{"lowlevel/image-inspect-table.golden", func(w *bytes.Buffer) error {
			return printInspected(w, []*image.Details{details}, "table", imageFields)
		}},
		{"lowlevel/image-inspect-yaml.golden", func(w *bytes.Buffer) error {
			return printInspected(w, []*image.Details{details}, "yaml", imageFields)
		}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.print(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, b.String())
			if strings.Contains(b.String(), "_") && strings.Contains(tc.golden, "json") {
				for _, l := range strings.Split(b.String(), "\n") {
					if k, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && strings.Contains(k, "_") {
						t.Errorf("snake_case field %s", k)
					}
				}
			}
		})
	}
}

// TestShortIDsNameObjects: what a table shows of an ID names the object,
// as in crictl; a name wins over a prefix, and a prefix of several IDs is
// refused with the candidates.
func TestShortIDsNameObjects(t *testing.T) {
	ctx := t.Context()
	f := fake.New()
	f.AddImage("busybox:1", runtime.ImageConfig{})
	for _, ids := range [][3]string{{"web", "3f2a9c41d07be815", "c1d2e3f4a5b6c7d8"}, {"db", "3f9b0c77e2a4f1d3", "c1aa0b9c8d7e6f5a"}} {
		sb, err := f.CreateSandbox(ctx, &runtime.SandboxConfig{ID: ids[1], Pod: runtime.PodKey{Namespace: "default", Name: ids[0]}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.StartContainer(ctx, &runtime.ContainerConfig{ID: ids[2], SandboxID: sb.ID, Name: "app", Image: "busybox:1"}); err != nil {
			t.Fatal(err)
		}
	}
	sbs, _ := f.ListSandboxes(ctx)
	ctrs, _ := f.ListContainers(ctx, runtime.ContainerFilter{})
	for _, tc := range []struct {
		arg, want, err string
	}{
		{arg: sbs[0].ID, want: sbs[0].ID},
		{arg: "db", want: sbs[1].ID},
		{arg: sbs[1].ID[:3], want: sbs[1].ID},
		{arg: "3f", err: `sandbox ID prefix "3f" is ambiguous: use an ID (` + sbs[0].ID + ", " + sbs[1].ID + ")"},
		{arg: "nosuch", err: `sandbox "nosuch": not found`},
		{arg: "../x", err: `sandbox "../x": not an ID or name`},
	} {
		sb, err := resolveSandbox(ctx, f, tc.arg)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err || exitCode(err) != exitFailure {
				t.Errorf("sandbox %q: %v, want %q", tc.arg, err, tc.err)
			}
		} else if err != nil || sb.ID != tc.want {
			t.Errorf("sandbox %q: %v %v, want %s", tc.arg, sb, err, tc.want)
		}
	}
	for _, tc := range []struct {
		arg, want, err string
	}{
		{arg: ctrs[1].ID, want: ctrs[1].ID},
		{arg: ctrs[1].ID[:3], want: ctrs[1].ID},
		{arg: "c1", err: `container ID prefix "c1" is ambiguous: use an ID (` + ctrs[0].ID + ", " + ctrs[1].ID + ")"},
		{arg: "nosuch", err: `container "nosuch": not found`},
	} {
		c, err := getContainer(ctx, f, tc.arg)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err || exitCode(err) != exitFailure {
				t.Errorf("container %q: %v, want %q", tc.arg, err, tc.err)
			}
		} else if err != nil || c.ID != tc.want {
			t.Errorf("container %q: %v %v, want %s", tc.arg, c, err, tc.want)
		}
	}
}
