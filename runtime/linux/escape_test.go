package linux

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// hostSecret writes a file with a random token on the host, in a directory
// no container mounts, and returns its path, the token, and the path of a
// file that must never appear.
func hostSecret(t *testing.T) (secret, token, canary string) {
	t.Helper()
	dir := t.TempDir()
	var b [16]byte
	rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	secret = filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return secret, token, filepath.Join(dir, "written-from-a-container")
}

// TestExecCannotLeaveContainerRoot is written as the attacker: a process
// started by Exec (as exec probes, hooks and `pelagos-agent exec` are)
// tries to reach the host's filesystem, with the default capabilities
// (the chroot breakout, CAP_SYS_CHROOT is a default) and with SYS_ADMIN
// added (joining its own mount namespace). Whatever it does, a host file
// must stay unread and a host path unwritten.
func TestExecCannotLeaveContainerRoot(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name, attack string
		capAdd       []string
	}{
		{"chroot breakout", "chroot-escape", nil},
		{"setns own mount namespace with SYS_ADMIN", "setns-self", []string{"SYS_ADMIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret, token, canary := hostSecret(t)
			c := e.startSleeper(t, strings.ReplaceAll(tc.attack, "-", ""), func(c *runtime.ContainerConfig) {
				c.Security.CapAdd = tc.capAdd
			})
			var out bytes.Buffer
			code, err := e.rt.Exec(ctx, c.ID, runtime.ExecOptions{
				Cmd:    []string{"/usr/local/bin/ctrprobe", tc.attack, secret, canary},
				Stdout: &out, Stderr: &out,
			})
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			t.Logf("attacker (exit %d):\n%s", code, out.String())
			if strings.Contains(out.String(), token) {
				t.Errorf("the exec'd process read the host file %s", secret)
			}
			if _, err := os.Stat(canary); err == nil {
				t.Errorf("the exec'd process created %s on the host", canary)
			}
			// The exec'd process lives in the container's mount namespace,
			// not in the host's with a chroot.
			if got, want := keyValues(out.String())["mntns"], ctrNS(t, c.PID, "mnt"); got != want {
				t.Errorf("exec'd process in mount namespace %q, the container's is %q", got, want)
			}
			if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
	e.check(t)
}
