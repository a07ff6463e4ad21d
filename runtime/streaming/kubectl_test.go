package streaming_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/runtimetest"
)

// TestKubectl drives the real kubectl against the handlers, once with its
// default WebSocket protocols and once forced onto SPDY, and checks which
// one each session really used (kubectl falls back silently).
func TestKubectl(t *testing.T) {
	path := findKubectl(t)
	for _, mode := range []struct {
		name       string
		websockets bool
		exec, pf   string // the upgrade each session must have used
	}{
		{"websocket", true, "websocket v5.channel.k8s.io", "websocket SPDY/3.1+portforward.k8s.io"},
		{"spdy", false, "SPDY/3.1 v4.channel.k8s.io", "SPDY/3.1 portforward.k8s.io"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t)
			k := e.kubectl(path, mode.websockets)
			web := e.addPod("web", runtime.ContainerConfig{Name: "app"})
			protocols := func(t *testing.T, sub, want string) {
				t.Helper()
				// A session is recorded when its handler returns, which
				// can be after kubectl has exited: wait for it, so that it
				// is not counted as the next subtest's.
				var ups []string
				seen := func() bool {
					ups = append(ups, e.takeUpgrades()...)
					return slices.ContainsFunc(ups, func(u string) bool { return strings.HasPrefix(u, sub+" ") })
				}
				for deadline := time.Now().Add(10 * time.Second); !seen() && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				if len(ups) == 0 {
					t.Errorf("no %s session reached the server", sub)
				}
				for _, u := range ups {
					if u != sub+" "+want {
						t.Errorf("%s session used %q; want %q (a silent fallback?)", sub, u, want)
					}
				}
			}

			t.Run("exec output and exit codes", func(t *testing.T) {
				for _, tc := range []struct {
					cmd            []string
					stdout, stderr string
					code           int
				}{
					{[]string{"echo", "hello", "world"}, "hello world\n", "", 0},
					{[]string{"warn", "to", "stderr"}, "", "to stderr\n", 0},
					{[]string{"exit", "1"}, "", "command terminated with exit code 1", 1},
					{[]string{"exit", "42"}, "", "command terminated with exit code 42", 42},
					{[]string{"nope"}, "", `exec: "nope": executable file not found in $PATH`, 127},
				} {
					out, errOut, code := k.run(t, nil, append([]string{"exec", "web", "--"}, tc.cmd...)...)
					if code != tc.code || out != tc.stdout || !strings.Contains(errOut, tc.stderr) {
						t.Errorf("kubectl exec %v: code %d stdout %q stderr %q; want %d %q %q", tc.cmd, code, out, errOut, tc.code, tc.stdout, tc.stderr)
					}
				}
				protocols(t, "exec", mode.exec)
			})

			t.Run("exec stdin to its end", func(t *testing.T) {
				in := strings.Repeat("a line of input\n", 64<<10) // 1 MiB: many messages
				out, errOut, code := k.run(t, strings.NewReader(in), "exec", "-i", "web", "--", "cat")
				if code != 0 || out != in {
					t.Errorf("kubectl exec -i cat: code %d, %d of %d bytes back, stderr %q", code, len(out), len(in), errOut)
				}
				protocols(t, "exec", mode.exec)
			})

			t.Run("exec 64 MiB", func(t *testing.T) {
				cmd, stdout, errb := k.start(t, "exec", "web", "--", "blob", "64")
				h := sha256.New()
				n, _ := io.Copy(h, stdout)
				if err := cmd.Wait(); err != nil {
					t.Errorf("kubectl exec blob 64: %v: %s", err, errb.String())
				}
				if want := blobSum(64); n != 64<<20 || [32]byte(h.Sum(nil)) != want {
					t.Errorf("got %d bytes (sha256 %x); want all of 64 MiB", n, h.Sum(nil))
				}
				protocols(t, "exec", mode.exec)
			})

			t.Run("exec -it through a terminal", func(t *testing.T) {
				term := startInPty(t, k, 24, 80, "exec", "-it", "web", "--", "repl")
				id := web.containers[0].ID
				eventually(t, "the initial size", func() bool { s, ok := e.f.TermSize(id); return ok && s == runtime.TermSize{Width: 80, Height: 24} })
				term.typeText("hello\r")
				eventually(t, "the echo and the answer", func() bool { return strings.Contains(term.out.String(), "hello\r\nyou said: hello\r\n") })
				term.resize(40, 120)
				eventually(t, "the new size", func() bool { s, _ := e.f.TermSize(id); return s == runtime.TermSize{Width: 120, Height: 40} })
				term.typeText("\x04") // ^D: the end of repl's input; it exits 5
				if code := term.wait(); code != 5 {
					t.Errorf("kubectl exec -it exit code %d, want 5; terminal:\n%q", code, term.out.String())
				}
				protocols(t, "exec", mode.exec)
			})

			t.Run("refused before the upgrade", func(t *testing.T) {
				if _, errOut, code := k.run(t, nil, "exec", "web", "-c", "nope", "--", "echo"); code == 0 || !strings.Contains(errOut, "container nope is not valid") && !strings.Contains(errOut, `container nope not found`) {
					t.Errorf("exec in a missing container: code %d stderr %q", code, errOut)
				}
				e.takeUpgrades()
			})

			t.Run("attach", func(t *testing.T) {
				p := e.addPod("logger-"+mode.name, runtime.ContainerConfig{Name: "main"})
				id := p.containers[0].ID
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := k.command(ctx, "attach", p.sandbox.Pod.Name)
				var out, errb runtimetest.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				eventually(t, "kubectl attached", func() bool { return e.f.Attached(id) == 1 })
				e.f.Output(id, false, []byte("from the main process\n"))
				e.f.Output(id, true, []byte("its complaint\n"))
				eventually(t, "the output", func() bool {
					return out.String() == "from the main process\n" && strings.Contains(errb.String(), "its complaint\n")
				})
				e.f.Exit(id, 0)
				if err := cmd.Wait(); err != nil {
					t.Errorf("kubectl attach after the container exited: %v\n%s", err, errb.String())
				}
				protocols(t, "attach", mode.exec)
			})

			t.Run("attach -it to a tty container", func(t *testing.T) {
				p := e.addPod("console-"+mode.name, runtime.ContainerConfig{Name: "shell", TTY: true, Stdin: true})
				id := p.containers[0].ID
				term := startInPty(t, k, 30, 90, "attach", "-it", p.sandbox.Pod.Name)
				eventually(t, "kubectl attached", func() bool { return e.f.Attached(id) == 1 })
				eventually(t, "the initial size", func() bool { s, ok := e.f.TermSize(id); return ok && s == runtime.TermSize{Width: 90, Height: 30} })
				term.typeText("ls\r")
				eventually(t, "the echo", func() bool { return strings.Contains(term.out.String(), "ls\r\n") })
				eventually(t, "the input reached the process", func() bool { return e.f.Input(id) == "ls\n" })
				e.f.Output(id, false, []byte("bin etc\n"))
				eventually(t, "the output", func() bool { return strings.Contains(term.out.String(), "bin etc\r\n") })
				term.resize(50, 132)
				eventually(t, "the new size", func() bool { s, _ := e.f.TermSize(id); return s == runtime.TermSize{Width: 132, Height: 50} })
				e.f.Exit(id, 0)
				if code := term.wait(); code != 0 {
					t.Errorf("kubectl attach -it exit code %d; terminal:\n%q", code, term.out.String())
				}
				protocols(t, "attach", mode.exec)
			})

			t.Run("port-forward", func(t *testing.T) {
				backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, "hello from "+r.URL.Path)
				}))
				defer backend.Close()
				e.f.ServePort(web.sandbox.ID, 80, strings.TrimPrefix(backend.URL, "http://"))
				cmd, stdout, errb := k.start(t, "port-forward", "pod/web", ":80", ":81")
				local := map[string]string{}
				sc := bufio.NewScanner(stdout)
				re := regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$`)
				for len(local) < 2 && sc.Scan() {
					if m := re.FindStringSubmatch(sc.Text()); m != nil {
						local[m[2]] = m[1]
					}
				}
				go io.Copy(io.Discard, stdout)
				if len(local) < 2 {
					t.Fatalf("kubectl port-forward did not forward both ports: %v\n%s", local, errb.String())
				}
				client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
				for _, path := range []string{"/one", "/two"} { // a stream each
					resp, err := client.Get("http://127.0.0.1:" + local["80"] + path)
					if err != nil {
						t.Fatalf("GET %s through the forward: %v\n%s", path, err, errb.String())
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(body) != "hello from "+path {
						t.Errorf("GET %s through the forward: %q", path, body)
					}
				}
				// Nothing listens on 81 in the pod: the error reaches kubectl.
				if _, err := client.Get("http://127.0.0.1:" + local["81"] + "/"); err == nil {
					t.Errorf("a request to an unserved pod port succeeded")
				}
				eventually(t, "kubectl reports the refused port", func() bool { return strings.Contains(errb.String(), "connection refused") })
				cmd.Process.Signal(os.Interrupt)
				cmd.Wait()
				protocols(t, "portforward", mode.pf)
			})
		})
	}
}

// ptyRun is kubectl running with a terminal of the test's for its stdio.
type ptyRun struct {
	t    *testing.T
	ptmx *os.File
	cmd  interface{ Wait() error }
	out  runtimetest.Buffer
	done chan struct{}
	code int
}

// startInPty starts kubectl as a session leader whose controlling
// terminal is a new pty of rows x cols, as a user's shell would.
func startInPty(t *testing.T, k kubectl, rows, cols uint16, args ...string) *ptyRun {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := k.command(ctx, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	r := &ptyRun{t: t, ptmx: ptmx, cmd: cmd, done: make(chan struct{}), code: -1}
	go func() {
		io.Copy(&r.out, ptmx) // ends with EIO once kubectl is gone
	}()
	go func() {
		defer close(r.done)
		err := cmd.Wait()
		r.code = cmd.ProcessState.ExitCode()
		if err != nil && r.code < 0 {
			t.Errorf("kubectl %v: %v", args, err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
		ptmx.Close()
	})
	return r
}

func (r *ptyRun) typeText(s string) {
	if _, err := io.WriteString(r.ptmx, s); err != nil {
		r.t.Fatal(err)
	}
}

// resize changes the terminal's size; the kernel tells kubectl (SIGWINCH).
func (r *ptyRun) resize(rows, cols uint16) {
	if err := pty.Setsize(r.ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *ptyRun) wait() int {
	select {
	case <-r.done:
	case <-time.After(2 * time.Minute):
		r.t.Fatalf("kubectl did not end; terminal:\n%q", r.out.String())
	}
	return r.code
}
