package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nft"
)

// webPod is busybox httpd serving the pod's /etc on a hostPort, so
// GET /hostname says which pod answered.
func webPod(name string, hostPort int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: busybox:1.36
    command: ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]
    ports:
    - containerPort: 80
      hostPort: %d
`, name, hostPort)
}

func get(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second} // bounds a broken test only
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// TestAgentHostPortEndToEnd runs the built agent on a manifest directory:
// a web pod with a hostPort answers on localhost and on a node address; a
// second pod claiming the same port stays Pending with an event naming the
// holder, and starts (and answers) once the first manifest is removed;
// afterwards no pod rules are left in the agent's nftables table.
func TestAgentHostPortEndToEnd(t *testing.T) {
	e := newAgentEnv(t)
	n := 1 + rand.IntN(250)
	e.subnet = fmt.Sprintf("10.204.%d.0/24", n) // pod networking's test range
	nodeAddr := fmt.Sprintf("10.204.%d.1", n)   // the bridge: one of the node's own addresses
	hp := 20000 + rand.IntN(20000)
	e.start()

	e.write("rev1", "web-a.yaml", webPod("web-a", hp))
	e.running("web-a")
	for _, url := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/hostname", hp),
		fmt.Sprintf("http://%s:%d/hostname", nodeAddr, hp),
	} {
		e.eventually(url+" answered by web-a", func() error {
			body, err := get(url)
			if err != nil {
				return err
			}
			if body != "web-a\n" {
				return fmt.Errorf("answered %q", body)
			}
			return nil
		})
	}

	e.write("rev1", "web-b.yaml", webPod("web-b", hp))
	e.eventually("web-b refused with the holder named", func() error {
		p, err := e.pod("web-b")
		if err != nil {
			return err
		}
		if p.Status.Phase != "Pending" {
			return fmt.Errorf("phase %s, want Pending", p.Status.Phase)
		}
		evs, err := e.client.Events(context.Background(), "default", "web-b")
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Reason == "FailedCreatePodSandBox" && strings.Contains(ev.Message, "held by pod default/web-a") {
				return nil
			}
		}
		return fmt.Errorf("no FailedCreatePodSandBox event naming default/web-a in %+v", evs)
	})

	if err := os.Remove(filepath.Join(e.repo, "rev1", "web-a.yaml")); err != nil {
		t.Fatal(err)
	}
	e.gone("web-a")
	e.running("web-b")
	url := fmt.Sprintf("http://127.0.0.1:%d/hostname", hp)
	e.eventually(url+" answered by web-b", func() error {
		body, err := get(url)
		if err != nil {
			return err
		}
		if body != "web-b\n" {
			return fmt.Errorf("answered %q", body)
		}
		return nil
	})

	if err := os.Remove(filepath.Join(e.repo, "rev1", "web-b.yaml")); err != nil {
		t.Fatal(err)
	}
	e.gone("web-b")
	e.stop(syscall.SIGTERM) // the agent itself carries the run root in its arguments
	e.census().Check(t, 10*time.Second)
	m, err := nft.New(nft.Config{Table: e.tag, Bridge: e.tag, Subnet: netip.MustParsePrefix(e.subnet)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	chains, err := m.Census()
	if err != nil {
		t.Fatal(err)
	}
	for chain, rules := range chains {
		if strings.HasPrefix(chain, "pod-") || (chain == "hostports" && rules != 0) {
			t.Errorf("census: table %s keeps chain %s with %d rules after every pod went", e.tag, chain, rules)
		}
	}
}
