package spec

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	fieldTableBegin = "<!-- BEGIN FIELD TABLE: generated from the model by `go test ./spec -run TestFieldTableDoc -update`; do not edit by hand -->"
	fieldTableEnd   = "<!-- END FIELD TABLE -->"
)

func renderFieldTable() string {
	var b strings.Builder
	b.WriteString("| Field | Status | Notes |\n| --- | --- | --- |\n")
	for _, r := range FieldTable() {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.Path, r.Status, r.Note)
	}
	return b.String()
}

// TestFieldTableDoc keeps docs/manifest.md's table of every Pod field
// equal to what the model says: a field added, refused or lifted changes
// the page in the same commit.
func TestFieldTableDoc(t *testing.T) {
	const page = "../docs/manifest.md"
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, fieldTableBegin), strings.Index(doc, fieldTableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no field table between %q and %q", page, fieldTableBegin, fieldTableEnd)
	}
	got := doc[i+len(fieldTableBegin)+1 : j]
	want := renderFieldTable()
	if *update {
		doc = doc[:i+len(fieldTableBegin)+1] + want + doc[j:]
		if err := os.WriteFile(page, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s's field table is stale (-model +page); run go test ./spec -run TestFieldTableDoc -update:\n%s", page, diff)
	}
}

// Every row has a known status, every exception names a real row, and
// what the strict decoder refuses is refused in the table.
func TestFieldTable(t *testing.T) {
	rows := FieldTable()
	seen := map[string]bool{}
	for _, r := range rows {
		switch r.Status {
		case FieldSupported, FieldEvaluated, FieldWarned, FieldRefused, FieldIgnored, FieldAccepted:
		default:
			t.Errorf("%s: unknown status %q", r.Path, r.Status)
		}
		if seen[r.Path] {
			t.Errorf("%s is listed twice", r.Path)
		}
		seen[r.Path] = true
	}
	for p := range fieldStatus {
		if !seen[p] {
			t.Errorf("fieldStatus names %s, which is not a Pod field", p)
		}
	}
	for _, want := range []struct{ path, status string }{
		{"spec.containers[].image", FieldSupported},
		{"spec.initContainers[]", FieldSupported},
		{"spec.affinity", FieldRefused},
		{"spec.volumes[].nfs", FieldRefused},
		{"spec.volumes[].projected.sources[].serviceAccountToken", FieldRefused},
		{"spec.volumes[].downwardAPI.items[].resourceFieldRef.divisor", FieldSupported},
		{"status", FieldIgnored},
		{"metadata.uid", FieldIgnored},
	} {
		found := false
		for _, r := range rows {
			if r.Path == want.path {
				found = true
				if r.Status != want.status {
					t.Errorf("%s: %s, want %s", r.Path, r.Status, want.status)
				}
			}
		}
		if !found {
			t.Errorf("%s is not in the table", want.path)
		}
	}
}
