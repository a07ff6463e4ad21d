package hostlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	. "github.com/pelagos-containers/pelagos-agent/runtime/linux/hostlock"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// The helper process of the cross-process cases: it takes the names in
// its environment for the owner there, says "held", and keeps them until
// its stdin closes.
const helperEnv = "HOSTLOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(hold(spec))
	}
	os.Exit(m.Run())
}

func hold(spec string) int {
	f := strings.Split(spec, "|")
	owner := Owner{StateRoot: f[0], RunRoot: f[1]}
	var names []Name
	for _, kv := range f[2:] {
		k, v, _ := strings.Cut(kv, "=")
		names = append(names, Name{Kind: Kind(k), Value: v})
	}
	set, err := Acquire(owner, names)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("held")
	bufio.NewReader(os.Stdin).ReadString('\n')
	set.Release()
	return 0
}

// holder runs hold in another process; the returned func ends it.
func holder(t *testing.T, owner Owner, names ...Name) (pid int, stop func()) {
	t.Helper()
	spec := []string{owner.StateRoot, owner.RunRoot}
	for _, n := range names {
		spec = append(spec, string(n.Kind)+"="+n.Value)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(spec, "|"))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "held" {
		in.Close()
		cmd.Wait()
		t.Fatalf("helper: %q", line)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			in.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return cmd.Process.Pid, stop
}

func owners(t *testing.T) (Owner, Owner) {
	a, b := t.TempDir(), t.TempDir()
	return Owner{StateRoot: a + "/state", RunRoot: a + "/run"}, Owner{StateRoot: b + "/state", RunRoot: b + "/run"}
}

func wantConflict(t *testing.T, err error, held Name, holder Owner, pid int) {
	t.Helper()
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConflictError", err)
	}
	if ce.Held != held || ce.Holder != holder || !slices.Contains(ce.PIDs, pid) {
		t.Fatalf("conflict %+v: want %s held by %+v, pid %d among the holders", ce, held, holder, pid)
	}
	for _, s := range []string{held.Value, holder.StateRoot, fmt.Sprint(pid), "give this one its own --"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q does not name %q", err, s)
		}
	}
}

func TestOneOwnerPerName(t *testing.T) {
	linuxtest.RequireRoot(t)
	a, b := owners(t)
	tag := linuxtest.RandomName("hl", 6)
	names := []Name{{Bridge, tag}, {NetNSPrefix, tag + "-"}, {NFTable, tag}, {Subnet, "10.250.7.0/24"}}

	// Within a process, one owner's users share the names (an agent's
	// workers and its GC); the files go with the last of them.
	s1, err := Acquire(a, names)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Acquire(a, names)
	if err != nil {
		t.Fatalf("the same owner again: %v", err)
	}
	_, err = Acquire(b, names[:1])
	wantConflict(t, err, names[0], a, os.Getpid())
	s1.Release()
	_, err = Acquire(b, names[:1])
	wantConflict(t, err, names[0], a, os.Getpid())
	s2.Release()
	s2.Release() // twice is once
	for _, n := range names {
		if _, err := os.Stat(n.File()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: lock file left after the last release: %v", n, err)
		}
	}
	s3, err := Acquire(b, names)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	s3.Release()
}

func TestOverlappingNames(t *testing.T) {
	linuxtest.RequireRoot(t)
	a, b := owners(t)
	tag := linuxtest.RandomName("hl", 6)
	dir := t.TempDir()
	for _, tc := range []struct {
		held, want Name
		overlap    bool
	}{
		{Name{Subnet, "10.250.0.0/16"}, Name{Subnet, "10.250.9.0/24"}, true},
		{Name{Subnet, "10.251.0.0/24"}, Name{Subnet, "10.251.1.0/24"}, false},
		{Name{NetNSPrefix, tag + "-"}, Name{NetNSPrefix, tag + "-x"}, true},
		{Name{NetNSPrefix, tag + "a"}, Name{NetNSPrefix, tag + "b"}, false},
		{Name{StateRoot, dir + "/p"}, Name{StateRoot, dir + "/p/q"}, true},
		{Name{StateRoot, dir + "/p2"}, Name{StateRoot, dir + "/p22"}, false},
		{Name{CgroupParent, "/" + tag}, Name{CgroupParent, "/" + tag + "/x"}, true},
		{Name{Bridge, tag + "1"}, Name{Bridge, tag + "10"}, false},
	} {
		t.Run(tc.held.String()+"~"+tc.want.Value, func(t *testing.T) {
			held, err := Acquire(a, []Name{tc.held})
			if err != nil {
				t.Fatal(err)
			}
			defer held.Release()
			got, err := Acquire(b, []Name{tc.want})
			if !tc.overlap {
				if err != nil {
					t.Fatalf("%s does not overlap %s: %v", tc.want, tc.held, err)
				}
				got.Release()
				return
			}
			wantConflict(t, err, tc.held, a, os.Getpid())
			if !strings.Contains(err.Error(), "overlaps") {
				t.Errorf("message %q does not say it overlaps", err)
			}
		})
	}
}

// TestNamesAcrossProcesses: another process of the same owner shares the
// names; one of another owner is refused with the holder's PID and state
// root; a holder that died leaves nothing held, whatever its file says;
// and an acquisition is all or none.
func TestNamesAcrossProcesses(t *testing.T) {
	linuxtest.RequireRoot(t)
	a, b := owners(t)
	tag := linuxtest.RandomName("hl", 6)
	br, free := Name{Bridge, tag}, Name{NFTable, tag}
	pid, stop := holder(t, a, br)

	if _, err := Acquire(b, []Name{free, br}); err == nil {
		t.Fatal("another owner took a name a live process holds")
	} else {
		wantConflict(t, err, br, a, pid)
	}
	if _, err := os.Stat(free.File()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused acquisition kept %s: %v", free, err)
	}
	same, err := Acquire(a, []Name{br})
	if err != nil {
		t.Fatalf("the same owner in another process: %v", err)
	}
	same.Release()
	if _, err := os.Stat(br.File()); err != nil {
		t.Fatalf("the file went while another process holds it: %v", err)
	}

	stop()
	if _, err := os.Stat(br.File()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the last holder left its file: %v", err)
	}
	// A holder killed before it could release: the kernel dropped its
	// lock, and the file it left names an owner that holds nothing.
	pid, stop = holder(t, a, br)
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	stop() // reaps it
	if _, err := os.Stat(br.File()); err != nil {
		t.Fatalf("the killed holder's file: %v", err)
	}
	got, err := Acquire(b, []Name{br})
	if err != nil {
		t.Fatalf("a name whose holder died: %v", err)
	}
	got.Release()
}

// TestStaleLockFilesDoNotPileUp: an agent killed while it holds names
// leaves their lock files; the next acquisition of a name of the same kind
// removes every one nobody holds, overlapping or not. Before, only the
// overlapping ones went, and the lock directory grew with every agent
// killed under names no one used again (167 files after a day of tests).
func TestStaleLockFilesDoNotPileUp(t *testing.T) {
	linuxtest.RequireRoot(t)
	a, b := owners(t)
	dead := Name{Bridge, linuxtest.RandomName("hl", 6)}
	live := Name{Bridge, linuxtest.RandomName("hl", 6)}
	pid, stop := holder(t, b, live)
	defer stop()
	// What a killed agent leaves: a lock file with its content, unheld.
	if err := os.WriteFile(dead.File(), []byte(`{"kind":"bridge","name":"`+dead.Value+`","owner":{"stateRoot":"/gone"},"pid":1}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mine := Name{Bridge, linuxtest.RandomName("hl", 6)}
	s, err := Acquire(a, []Name{mine})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if _, err := os.Stat(dead.File()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale lock file of %s is still there: %v", dead, err)
	}
	if _, err := os.Stat(live.File()); err != nil {
		t.Errorf("the lock file of %s, held by process %d, was removed: %v", live, pid, err)
	}
}
