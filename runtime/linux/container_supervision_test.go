package linux

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/procid"
)

// starterEnv makes the test binary a stand-in agent (see TestMain): it
// starts the container described by the variable, prints its ID and waits
// to be killed.
const starterEnv = "PELAGOS_TEST_STARTER"

func starterMain() int {
	var in struct {
		Config Config
		Ctr    runtime.ContainerConfig
	}
	if err := json.Unmarshal([]byte(os.Getenv(starterEnv)), &in); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	rt, err := New(in.Config)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	store, err := image.Open(image.Options{Root: in.Config.StateRoot})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	rt.SetImageStore(store)
	c, err := rt.StartContainer(context.Background(), &in.Ctr)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println(c.ID)
	select {}
}

func parentPID(t testing.TB, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	var ppid int
	fmt.Sscan(f[1], &ppid)
	return ppid
}

// TestContainerSurvivesAgentKill kills -9 the process that started a
// container: the container keeps running and logging, a new Runtime finds
// it, and its exit is still recorded and reported.
func TestContainerSurvivesAgentKill(t *testing.T) {
	e := newCtrEnv(t, nil)
	in := map[string]any{
		"Config": e.cfg,
		"Ctr": e.config("survivor", "/bin/sh", "-c",
			"echo started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after-agent-death; exit 7"),
	}
	b, _ := json.Marshal(in)
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), starterEnv+"="+string(b))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	id := strings.TrimSpace(line)
	if strings.HasPrefix(id, "error") || id == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("starter: %q", line)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	rt := e.rt // a Runtime object that did not start the container
	c, err := rt.GetContainer(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != runtime.ContainerRunning {
		t.Fatalf("after the agent died: state %s, want running", c.State)
	}
	rec, _ := rt.containerRecord(id)
	st, _ := rec.State()
	// The shim is a child of the agent's parent (CLONE_PARENT) or of
	// init, never of the agent that started it.
	if pp := parentPID(t, st.Shim.PID); pp == cmd.Process.Pid {
		t.Errorf("shim %d is a child of the agent (%d)", st.Shim.PID, pp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exits, err := rt.WatchExits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := rt.Exec(ctx, id, runtime.ExecOptions{Cmd: []string{"touch", "/tmp/go"}}); err != nil || code != 0 {
		t.Fatalf("exec touch: %d %v", code, err)
	}
	select {
	case ev := <-exits:
		if ev.ContainerID != id || ev.SandboxID != e.sb.ID || ev.Pod != e.sb.Pod {
			t.Errorf("exit event %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no exit event")
	}
	c, _ = rt.GetContainer(ctx, id)
	if c.State != runtime.ContainerExited || c.ExitCode != 7 || c.Reason != runtime.ReasonError {
		t.Errorf("exit: %s %d %s, want exited 7 Error", c.State, c.ExitCode, c.Reason)
	}
	var logs bytes.Buffer
	crilog.Read(c.LogPath, &logs, crilog.ReadOptions{})
	if logs.String() != "started\nafter-agent-death\n" {
		t.Errorf("log %q", logs.String())
	}
	e.check(t)
}

// TestContainerShimLost kills the shim from outside: the container is
// still found running, and stopping it records an exit instead of leaving
// it unknown.
func TestContainerShimLost(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	c := e.startSleeper(t, "orphaned", nil)
	rec, _ := e.rt.containerRecord(c.ID)
	st, _ := rec.State()
	if err := syscall.Kill(st.Shim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := st.Shim.WaitGone(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, _ := e.rt.GetContainer(ctx, c.ID)
	if got.State != runtime.ContainerRunning || got.PID != c.PID {
		t.Errorf("without its shim: %s pid %d, want running %d", got.State, got.PID, c.PID)
	}
	if err := e.rt.StopContainer(ctx, c.ID, 0); err != nil {
		t.Fatal(err)
	}
	got, _ = e.rt.GetContainer(ctx, c.ID)
	if got.State != runtime.ContainerExited || !strings.Contains(got.Message, "shim lost") {
		t.Errorf("after stop: %s %q, want exited with the shim-lost message", got.State, got.Message)
	}
	if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// TestExitedShimsAreReaped: a shim whose container has ended must not stay
// a zombie. Under `go test` the runtime's parent is the go command, which,
// like many supervisors and test harnesses, waits only for the child it
// started: a shim cloned with CLONE_PARENT became its child and, once
// ended, stayed a zombie holding a PID (one per container ever run) until
// the go command exited. Handed to init instead, it is reaped.
func TestExitedShimsAreReaped(t *testing.T) {
	e := newCtrEnv(t, nil)
	var shims []int
	for i := range 3 {
		c, _ := e.run(t, e.config(fmt.Sprintf("brief-%d", i), "/bin/true"))
		rec, err := e.rt.containerRecord(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		st, err := rec.State()
		if err != nil {
			t.Fatal(err)
		}
		shims = append(shims, st.Shim.PID)
		if err := e.rt.RemoveContainer(context.Background(), c.ID); err != nil {
			t.Fatal(err)
		}
	}
	// Init reaps what it is given on its own schedule (every ~2 s on
	// these VMs); a zombie nobody reaps stays for good.
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range shims {
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				break // reaped
			}
			if !strings.Contains(string(b), "(pelagos-shimd)") {
				break // reaped, and the PID already reused
			}
			if time.Now().After(deadline) {
				state, _, _ := procid.Stat(pid)
				t.Fatalf("shim %d is still there (state %c), a child of %d; the runtime's parent is %d and does not reap it",
					pid, state, parentPID(t, pid), os.Getppid())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	e.check(t)
}
