package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestAgentHostNetworkPodShowsNodeIP: on a real agent, a pod on the
// host's network has the node's address (the Node's InternalIP) as its IP
// in get pods and describe, and every pod has it as its hostIP.
func TestAgentHostNetworkPodShowsNodeIP(t *testing.T) {
	e := newAgentEnv(t, "--stop-pods-on-exit")
	e.write("rev1", "edge.yaml", `apiVersion: v1
kind: Pod
metadata: {name: edge}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - {name: proxy, image: busybox:1.36, command: [sleep, "3600"]}
`)
	e.start()
	p := e.running("edge")
	var node corev1.Node
	if err := json.Unmarshal([]byte(getSocket(t, e.sock, "/api/v1/nodes")), &struct {
		Items []*corev1.Node `json:"items"`
	}{Items: []*corev1.Node{&node}}); err != nil {
		t.Fatal(err)
	}
	var nodeIP string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			nodeIP = a.Address
		}
	}
	if nodeIP == "" {
		t.Fatalf("the node has no InternalIP: %+v", node.Status.Addresses)
	}
	raw := getSocket(t, e.sock, "/api/v1/namespaces/default/pods/edge")
	var served corev1.Pod
	if err := json.Unmarshal([]byte(raw), &served); err != nil || served.Status.HostIP != nodeIP || served.Status.PodIP != nodeIP {
		t.Errorf("served pod: hostIP %q podIP %q, want %s (%v)", served.Status.HostIP, served.Status.PodIP, nodeIP, err)
	}
	if p.Status.PodIP != nodeIP {
		t.Errorf("the client reads podIP %q, want %s", p.Status.PodIP, nodeIP)
	}
	out, _, _ := e.cli("get", "pods")
	if f := strings.Fields(strings.Split(out, "\n")[1]); f[0] != "edge" || f[len(f)-1] != nodeIP {
		t.Errorf("get pods:\n%s", out)
	}
	out, _, _ = e.cli("describe", "pod", "edge")
	if !strings.Contains(out, "/"+nodeIP+"\n") || !strings.Contains(out, "IP:           "+nodeIP+"\n") {
		t.Errorf("describe:\n%s", out)
	}
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 10*time.Second)
}
