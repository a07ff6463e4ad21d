package spec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The corpus (testdata/corpus) is real manifests written by others: the
// Kubernetes documentation's examples, podman's kube play and kube
// generate output, kubeadm and GCE static pods, kube-vip. Each file's
// header names its source and licence and what Kubernetes does with it on
// one node; testdata/corpus.golden pins what `validate` says about each,
// message by message (refresh with -update and review the diff).

// corpusHeader is what a corpus file's header comments say.
type corpusHeader struct {
	source, licence, k8s, note string
}

func readCorpusHeader(t *testing.T, path string, data []byte) corpusHeader {
	t.Helper()
	var h corpusHeader
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "# ") {
			break
		}
		key, value, _ := strings.Cut(strings.TrimPrefix(line, "# "), ": ")
		switch key {
		case "Source":
			h.source = value
		case "Licence":
			h.licence = value
		case "Kubernetes on one node":
			h.k8s = value
		case "Note":
			h.note = value
		}
	}
	if h.source == "" || h.licence == "" || h.k8s == "" {
		t.Errorf("%s: the header must name the Source, the Licence and what Kubernetes on one node does", path)
	}
	return h
}

// mustRun reports whether Kubernetes runs the manifest on one node as it
// is, with nothing the node lacks, so validate must accept it: the verdict
// "runs", with at most a remark in brackets. A note "Pending: <work>"
// names the work that will make it pass (the fleet semantics, terminals).
func (h corpusHeader) mustRun() bool {
	return (h.k8s == "runs" || strings.HasPrefix(h.k8s, "runs (")) && !strings.Contains(h.note, "Pending:")
}

func TestCorpus(t *testing.T) {
	paths, err := filepath.Glob("testdata/corpus/*.yaml")
	if err != nil || len(paths) < 100 {
		t.Fatalf("the corpus holds %d files (%v), want at least 100", len(paths), err)
	}
	var b strings.Builder
	docs, mustRun := 0, 0
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		h := readCorpusHeader(t, p, data)
		parsed, fileErrs := ParseFile(filepath.Base(p), data, Limits{})
		docs += len(parsed)
		var msgs []string
		for _, e := range fileErrs {
			msgs = append(msgs, fmt.Sprintf("%s [%s]", e, className(e)))
		}
		valid, skipped := 0, 0
		for _, d := range parsed {
			if d.Valid() {
				valid++
			} else if len(d.Errs) == 0 && errors.Is(d.Warnings, ErrSkipped) {
				skipped++ // a cluster object beside the pod (a Service)
			}
			for _, e := range d.Errs {
				msgs = append(msgs, fmt.Sprintf("%s [%s]", e, className(e)))
			}
		}
		verdict := "accepted"
		if len(msgs) > 0 {
			verdict = "refused"
		}
		fmt.Fprintf(&b, "== %s: %s (Kubernetes: %s)\n", filepath.Base(p), verdict, h.k8s)
		for _, m := range msgs {
			fmt.Fprintln(&b, m)
		}
		if h.mustRun() {
			mustRun++
			if len(msgs) > 0 || valid+skipped != len(parsed) || valid == 0 {
				t.Errorf("%s: Kubernetes runs it on one node, but validate refuses it:\n  %s", p, strings.Join(msgs, "\n  "))
			}
		}
	}
	fmt.Fprintf(&b, "== %d files, %d documents; %d that Kubernetes runs on one node as they are\n", len(paths), docs, mustRun)
	if docs < 100 {
		t.Errorf("the corpus holds %d documents, want at least 100", docs)
	}
	golden := "testdata/corpus.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./spec -run TestCorpus -update)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("validate's verdicts differ from %s (-want +got):\n%s", golden, diff)
	}
}
