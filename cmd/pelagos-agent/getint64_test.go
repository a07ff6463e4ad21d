package main

import (
	"bytes"
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
	"github.com/pelagos-containers/pelagos-agent/runtime/fake"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// TestGetPodsPrintsInt64Exactly: an int64 in a pod's spec reaches
// `get pods -o json|yaml` digit for digit. The client used to decode the
// spec into `any` through float64, which printed 9223372036854775807 as
// 9223372036854776000. The pod skips validation (which now refuses such a
// grace period) to reach the extreme.
func TestGetPodsPrintsInt64Exactly(t *testing.T) {
	f := fake.New()
	rec := reconcile.New(reconcile.Config{Runtime: f, Images: f, Log: zerolog.Nop(), Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Run(ctx) }()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan error, 1)
	kube := kubeapi.New(kubeapi.Config{Backend: rec, Runtime: f, NodeName: "node", Log: zerolog.Nop()})
	go func() {
		srvDone <- (&api.Server{Backend: rec, Runtime: f, Kube: kube, Log: zerolog.Nop()}).Serve(ctx, l)
	}()
	defer func() { cancel(); <-recDone; <-srvDone }()

	maxInt := int64(math.MaxInt64)
	p := &spec.Pod{Metadata: spec.ObjectMeta{Name: "web"}, Spec: spec.PodSpec{
		TerminationGracePeriodSeconds: &maxInt,
		SecurityContext:               &spec.PodSecurityContext{RunAsUser: &maxInt},
		Containers:                    []spec.Container{{Name: "app", Image: "busybox:1.36"}},
	}}
	d, err := reconcile.Translator{}.Pod(p, "web.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{d}})

	const want = "9223372036854775807"
	for _, args := range [][]string{{"get", "pods", "-o", "json"}, {"get", "pods", "web", "-o", "yaml"}} {
		var out string
		deadline := time.Now().Add(10 * time.Second)
		for {
			var stdout, stderr bytes.Buffer
			err := run(ctx, append([]string{"--socket", sock}, args...), &stdout, &stderr)
			out = stdout.String()
			if err == nil && strings.Contains(out, "terminationGracePeriodSeconds") || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := strings.Count(out, want); n != 2 || strings.Contains(out, "9223372036854776000") || strings.Contains(out, "e+18") {
			t.Errorf("%v: %d exact copies of %s (want 2: grace period and runAsUser):\n%s", args, n, want, out)
		}
	}
}
