package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/runtimetest"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

const configPod = `apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  app.conf: %q
---
apiVersion: v1
kind: Pod
metadata: {name: configured}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: ` + lifecycleImage + `
    imagePullPolicy: Never
    command: ["/bin/sleep", "3600"]
    env:
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: sec, mountPath: /run/secrets/app}
  volumes:
  - name: cfg
    configMap: {name: app-config, items: [{key: app.conf, path: conf/app.conf}]}
  - name: sec
    secret: {secretName: creds, defaultMode: 0400}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData:
  password: %q
`

// TestLifecycleConfigMapAndSecretEndToEnd: a ConfigMap edit reaches the
// running container's file without a restart; a Secret used in env restarts
// the container with the new value; no secret value appears in any log,
// event or status.
func TestLifecycleConfigMapAndSecretEndToEnd(t *testing.T) {
	e := lifecycleRuntime(t)
	var rtLog, recLog runtimetest.Buffer
	cfg := e.cfg
	cfg.Logger = zerolog.New(&rtLog).Level(zerolog.DebugLevel)
	rt := openRuntime(t, &cfg)
	rt.SetImageStore(e.store)
	events := reconcile.NewEvents(256, zerolog.New(&recLog))
	r := reconcile.New(reconcile.Config{Runtime: rt, Images: e.store, Events: events, Workers: 2,
		Resync: 300 * time.Millisecond, Log: zerolog.New(&recLog).Level(zerolog.DebugLevel)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const secret1, secret2 = "s3cr3t-0ne-NEVER-PRINT", "s3cr3t-tw0-NEVER-PRINT"
	load := func(conf, secret string) runtime.PodKey {
		t.Helper()
		docs, errs := spec.ParseFile("dir/app.yaml", []byte(fmt.Sprintf(configPod, conf, secret)), spec.Limits{})
		if len(errs) > 0 {
			t.Fatalf("parse: %v", errs)
		}
		all := &reconcile.Documents{ConfigMaps: map[spec.PodKey]*spec.ConfigMap{}, Secrets: map[spec.PodKey]*spec.Secret{}}
		var pod *spec.Pod
		for _, d := range docs {
			if !d.Valid() {
				t.Fatalf("invalid: %v", d.Errs)
			}
			switch {
			case d.Pod != nil:
				pod = d.Pod
			case d.ConfigMap != nil:
				all.ConfigMaps[spec.PodKey{Namespace: d.ConfigMap.Metadata.Namespace, Name: d.ConfigMap.Metadata.Name}] = d.ConfigMap
			case d.Secret != nil:
				all.Secrets[spec.PodKey{Namespace: d.Secret.Metadata.Namespace, Name: d.Secret.Metadata.Name}] = d.Secret
			}
		}
		dp, err := reconcile.Translator{}.Pod(pod, "dir/app.yaml", all)
		if err != nil {
			t.Fatal(err)
		}
		r.SetDesired(reconcile.DesiredSet{Pods: []*reconcile.DesiredPod{dp}})
		return dp.Key
	}
	appID := func() string {
		cs, _ := rt.ListContainers(context.Background(), runtime.ContainerFilter{})
		for _, c := range cs {
			if c.Name == "app" && c.State == runtime.ContainerRunning {
				return c.ID
			}
		}
		return ""
	}
	// eventually runs script in the running app container until its output
	// is want; a bounded wait for the agent's own loop, not a timing claim.
	eventually := func(script, want string) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var got string
		for time.Now().Before(deadline) {
			if id := appID(); id != "" {
				var out bytes.Buffer
				code, err := rt.Exec(context.Background(), id, runtime.ExecOptions{Cmd: []string{"/bin/sh", "-c", script}, Stdout: &out, Stderr: &out, Timeout: 30 * time.Second})
				got = out.String()
				if err == nil && code == 0 && got == want {
					return id
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%q never printed %q (last: %q)", script, want, got)
		return ""
	}

	key := load("mode=v1", secret1)
	id1 := eventually("cat /etc/app/conf/app.conf", "mode=v1")
	eventually(`cat /run/secrets/app/password; echo; echo "$PASSWORD"; stat -c %a /run/secrets/app/..data/password`, secret1+"\n"+secret1+"\n400\n")

	// ConfigMap edit: the mounted file follows, the container stays.
	load("mode=v2", secret1)
	if id := eventually("cat /etc/app/conf/app.conf", "mode=v2"); id != id1 {
		t.Fatalf("a ConfigMap volume edit restarted the container (%s -> %s)", id1, id)
	}
	// Secret edit: used in env, so the container restarts with the new value.
	load("mode=v2", secret2)
	id2 := eventually(`echo "$PASSWORD"; cat /run/secrets/app/password`, secret2+"\n"+secret2)
	if id2 == id1 {
		t.Fatal("the env Secret changed but the container was not restarted")
	}

	var seen strings.Builder
	for _, ev := range events.List() {
		fmt.Fprintln(&seen, ev.Reason, ev.Message)
	}
	pods, _ := json.Marshal(r.Pods())
	seen.Write(pods)
	seen.WriteString(rtLog.String())
	seen.WriteString(recLog.String())
	for _, s := range []string{"s3cr3t", "NEVER-PRINT"} {
		if strings.Contains(seen.String(), s) {
			t.Fatalf("secret material %q printed:\n%s", s, seen.String())
		}
	}
	if recLog.String() == "" {
		t.Fatal("the reconciler logged nothing: the secret check above would prove nothing")
	}
	if !strings.Contains(string(pods), "configured") {
		t.Fatalf("pod view empty: %s", pods)
	}

	r.SetDesired(reconcile.DesiredSet{})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, ok := r.Pod(key); !ok {
			if sbs, _ := rt.ListSandboxes(context.Background()); len(sbs) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("pod not removed within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.census.Check(t, 10*time.Second)
	if kids, _ := e.cg.Children(); len(kids) != 0 {
		t.Errorf("census: cgroups left below %s: %v", e.cg.Parent(), kids)
	}
}
