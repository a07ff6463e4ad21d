package caps

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolve(t *testing.T) {
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	without := func(s []string, drop ...string) []string {
		var out []string
		for _, c := range s {
			if !slices.Contains(drop, c) {
				out = append(out, c)
			}
		}
		return sorted(out)
	}
	cases := []struct {
		name       string
		add, drop  []string
		privileged bool
		want       []string
	}{
		{name: "default", want: sorted(Default)},
		{name: "drop ALL", drop: []string{"ALL"}, want: []string{}},
		{name: "drop ALL add one", drop: []string{"ALL"}, add: []string{"NET_BIND_SERVICE"}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "drop named lowercase", drop: []string{"net_raw", "CAP_MKNOD"}, want: without(Default, "CAP_NET_RAW", "CAP_MKNOD")},
		{name: "add outside default", add: []string{"NET_ADMIN"}, want: sorted(append(slices.Clone(Default), "CAP_NET_ADMIN"))},
		{name: "add ALL drop one", add: []string{"ALL"}, drop: []string{"SYS_ADMIN"}, want: without(Available(), "CAP_SYS_ADMIN")},
		{name: "privileged", privileged: true, want: sorted(Available())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.add, tc.drop, tc.privileged)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Resolve(add %v, drop %v) (-want +got):\n%s", tc.add, tc.drop, diff)
			}
		})
	}
}

func TestDefaultNoWiderThanDocker(t *testing.T) {
	for _, dangerous := range []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_DAC_READ_SEARCH", "CAP_BPF", "CAP_SYS_RESOURCE"} {
		if slices.Contains(Default, dangerous) {
			t.Errorf("default set holds %s", dangerous)
		}
	}
	if len(Default) != 14 {
		t.Errorf("default set has %d capabilities, Docker's has 14", len(Default))
	}
}

func TestResolveUnknown(t *testing.T) {
	if _, err := Resolve([]string{"NET_ADMNI"}, nil, false); !errors.Is(err, ErrUnknown) {
		t.Fatalf("typo in add: got %v, want ErrUnknown", err)
	}
	if _, err := Resolve(nil, []string{"BOGUS"}, false); !errors.Is(err, ErrUnknown) {
		t.Fatalf("typo in drop: got %v, want ErrUnknown", err)
	}
}

func TestMask(t *testing.T) {
	m, err := Mask([]string{"CAP_CHOWN", "KILL"})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(1<<0 | 1<<5); m != want {
		t.Errorf("Mask = %#x, want %#x", m, want)
	}
}
