package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// imageRunRoot keeps the runtime the CLI consults for containers away
// from the host's /run/pelagos.
var imageRunRoot string

func runImageCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if imageRunRoot == "" {
		t.Fatal("imageRunRoot unset")
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"--log-format", "json", "--run-root", imageRunRoot}, args...), &out, &errb)
	return out.String() + errb.String(), err
}

func TestImageCommands(t *testing.T) {
	root := t.TempDir()
	imageRunRoot = t.TempDir()
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	img := imagetest.Image(t, v1.Config{Cmd: []string{"/hello"}}, imagetest.Gzip,
		[]imagetest.Entry{imagetest.File("hello", 0o755, []byte("hi"))},
		[]imagetest.Entry{imagetest.File("etc/motd", 0o644, []byte("motd"))})
	ref := reg.Push(t, "demo/hello:1", img)

	out, err := runImageCLI(t, "--root", root, "image", "pull", ref)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	// Not a terminal: plain lines, one per layer, no escape sequences.
	if strings.Contains(out, "\033[") || strings.Count(out, ": downloaded (") != 2 {
		t.Errorf("pull output is not plain lines per layer:\n%s", out)
	}
	if !strings.Contains(out, "pulled") {
		t.Errorf("pull output lacks the summary:\n%s", out)
	}

	out, err = runImageCLI(t, "--root", root, "image", "ls")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "IMAGE TAG IMAGE ID SIZE" {
		t.Fatalf("image ls:\n%s", out)
	}

	out, err = runImageCLI(t, "--root", root, "image", "inspect", ref)
	if err != nil {
		t.Fatal(err)
	}
	var details image.Details
	if err := json.Unmarshal([]byte(out), &details); err != nil {
		t.Fatalf("inspect output is not one JSON object: %v\n%s", err, out)
	}
	if len(details.Layers) != 2 || details.Config.Cmd[0] != "/hello" {
		t.Errorf("inspect: %+v", details)
	}
	// IMAGE ID is the image's ID (what pods report as imageID), cut to
	// 13 characters.
	if f := strings.Fields(lines[1]); f[0] != reg.Host+"/demo/hello" || f[1] != "1" || f[2] != strings.TrimPrefix(details.ID, "sha256:")[:13] {
		t.Errorf("image ls row %q, want the ID %s", lines[1], details.ID)
	}
	if out, _ = runImageCLI(t, "--root", root, "image", "ls", "--no-trunc"); !strings.Contains(out, " "+details.ID+" ") {
		t.Errorf("image ls --no-trunc lacks %s:\n%s", details.ID, out)
	}
	// TAB completes the stored references.
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"__complete", "image", "rm", "--run-root", imageRunRoot, "--root", root, ""}, &stdout, &stderr); err != nil ||
		stdout.String() != ref+"\n:4\n" {
		t.Errorf("__complete image rm: %v %q %s", err, stdout.String(), stderr.String())
	}

	if out, err := runImageCLI(t, "--root", root, "image", "rm", "absent:1"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("rm of a missing image: %v\n%s", err, out)
	}
	// In use by a container: refused without --force.
	imageID := details.ID
	defer func(orig func(context.Context, *globalOptions) (func(string) bool, error)) { imageInUse = orig }(imageInUse)
	imageInUse = func(context.Context, *globalOptions) (func(string) bool, error) {
		return func(id string) bool { return id == imageID }, nil
	}
	if out, err := runImageCLI(t, "--root", root, "image", "rm", ref); err == nil || !strings.Contains(out, "--force") {
		t.Errorf("rm of an image in use: %v\n%s", err, out)
	}
	if out, err := runImageCLI(t, "--root", root, "image", "rm", "--force", ref); err != nil {
		t.Fatalf("rm --force: %v\n%s", err, out)
	}
	imageInUse = func(context.Context, *globalOptions) (func(string) bool, error) {
		return func(string) bool { return false }, nil
	}
	out, err = runImageCLI(t, "--root", root, "image", "prune")
	if err != nil || !strings.Contains(out, "Total reclaimed space:") || strings.Contains(out, "space: 0 B") {
		t.Errorf("prune: %v\n%s", err, out)
	}

	archive := filepath.Join(t.TempDir(), "hello.tar")
	if err := imagetest.WriteDockerArchive(archive, map[string]v1.Image{"hello:2": img}); err != nil {
		t.Fatal(err)
	}
	out, err = runImageCLI(t, "--root", root, "image", "import", archive)
	if err != nil || !strings.Contains(out, "Loaded image: docker.io/library/hello:2") {
		t.Errorf("import: %v\n%s", err, out)
	}
	out, _ = runImageCLI(t, "--root", root, "image", "ls")
	if !strings.Contains(out, "hello ") {
		t.Errorf("ls after import:\n%s", out)
	}
}

// TestContainerImagesReadsRuntime: the real in-use source lists the
// runtime's containers under the configured run root (none here).
func TestContainerImagesReadsRuntime(t *testing.T) {
	linuxtest.RequireRoot(t)
	g := &globalOptions{Root: t.TempDir(), RunRoot: t.TempDir(), Subnet: "10.88.0.0/16", log: zerolog.Nop()}
	inUse, err := containerImages(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if inUse("sha256:" + strings.Repeat("0", 64)) {
		t.Error("an image is in use with no containers")
	}
}
