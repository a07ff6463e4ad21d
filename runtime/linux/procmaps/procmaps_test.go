package procmaps

import (
	"reflect"
	"testing"
)

// TestExecutableHoldsOurCode: the text mapping found is the one this very
// function runs from, and a permission no mapping has finds nothing.
func TestExecutableHoldsOurCode(t *testing.T) {
	ranges, err := Executable("r-xp")
	if err != nil {
		t.Fatal(err)
	}
	pc := reflect.ValueOf(TestExecutableHoldsOurCode).Pointer()
	found := false
	for _, r := range ranges {
		found = found || (r.Start <= pc && pc < r.End)
	}
	if !found {
		t.Errorf("no r-xp mapping of the executable holds %#x: %v", pc, ranges)
	}
	if none, err := Executable("-w-s"); err != nil || len(none) != 0 {
		t.Errorf("mappings with a permission nobody has: %v %v", none, err)
	}
}
