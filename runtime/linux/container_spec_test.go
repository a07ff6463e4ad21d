package linux

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/record"
)

func TestResolveArgs(t *testing.T) {
	ep, cmd := []string{"/ep"}, []string{"c1", "c2"}
	cases := []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image defaults", nil, nil, []string{"/ep", "c1", "c2"}},
		{"args replace cmd", nil, []string{"a"}, []string{"/ep", "a"}},
		{"command drops cmd", []string{"/bin/sh"}, nil, []string{"/bin/sh"}},
		{"command and args", []string{"/bin/sh"}, []string{"-c", "x"}, []string{"/bin/sh", "-c", "x"}},
	}
	for _, tc := range cases {
		got, err := resolveArgs(tc.command, tc.args, ep, cmd)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", tc.name, diff)
		}
	}
	if _, err := resolveArgs(nil, nil, nil, nil); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("no command at all: %v", err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/img", "A=1", "B=2"}, []runtime.EnvVar{{Name: "B", Value: "pod"}, {Name: "C", Value: "3"}}, "web-0", "/root")
	want := []string{"PATH=/img", "A=1", "B=pod", "C=3", "HOME=/root", "HOSTNAME=web-0"}
	// HOME and HOSTNAME are appended in map order; compare as sets after the fixed part.
	if diff := cmp.Diff(want[:4], got[:4]); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	rest := map[string]bool{got[4]: true, got[5]: true}
	if !rest["HOME=/root"] || !rest["HOSTNAME=web-0"] || len(got) != 6 {
		t.Errorf("defaults: %v", got)
	}
	got = mergeEnv(nil, nil, "", "")
	if diff := cmp.Diff([]string{"PATH=" + defaultPath}, got); diff != "" {
		t.Errorf("empty: %s", diff)
	}
}

const testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1001:app:/home/app:/bin/sh
`
const testGroup = `root:x:0:
app:x:1001:
extra:x:2000:app,other
`

func i64(v int64) *int64 { return &v }

func TestResolveUser(t *testing.T) {
	cases := []struct {
		name      string
		sec       runtime.SecurityConfig
		imageUser string
		want      record.User
		wantErr   error
	}{
		{name: "default root", want: record.User{UID: 0, GID: 0, Groups: []uint32{0}, Home: "/root"}},
		{name: "image name", imageUser: "app", want: record.User{UID: 1000, GID: 1001, Groups: []uint32{1001, 2000}, Home: "/home/app"}},
		{name: "image uid", imageUser: "1000", want: record.User{UID: 1000, GID: 1001, Groups: []uint32{1001, 2000}, Home: "/home/app"}},
		{name: "image uid:gid", imageUser: "1000:5", want: record.User{UID: 1000, GID: 5, Groups: []uint32{5, 2000}, Home: "/home/app"}},
		{name: "image name:group", imageUser: "daemon:extra", want: record.User{UID: 1, GID: 2000, Groups: []uint32{2000}, Home: "/usr/sbin"}},
		{name: "unknown numeric uid", imageUser: "4242", want: record.User{UID: 4242, GID: 0, Groups: []uint32{0}, Home: "/"}},
		{name: "runAsUser wins", imageUser: "app", sec: runtime.SecurityConfig{RunAsUser: i64(7)}, want: record.User{UID: 7, GID: 0, Groups: []uint32{0}, Home: "/"}},
		{name: "runAsUser and group", sec: runtime.SecurityConfig{RunAsUser: i64(1000), RunAsGroup: i64(9), SupplementalGroups: []int64{9, 10}},
			want: record.User{UID: 1000, GID: 9, Groups: []uint32{9, 2000, 10}, Home: "/home/app"}},
		{name: "Strict: no /etc/group memberships", sec: runtime.SecurityConfig{RunAsUser: i64(1000), RunAsGroup: i64(9), SupplementalGroups: []int64{10},
			SupplementalGroupsPolicy: "Strict"}, want: record.User{UID: 1000, GID: 9, Groups: []uint32{9, 10}, Home: "/home/app"}},
		{name: "nonroot ok", imageUser: "app", sec: runtime.SecurityConfig{RunAsNonRoot: true}, want: record.User{UID: 1000, GID: 1001, Groups: []uint32{1001, 2000}, Home: "/home/app"}},
		{name: "nonroot refuses root", sec: runtime.SecurityConfig{RunAsNonRoot: true}, wantErr: errNonRoot},
		{name: "nonroot refuses runAsUser 0", imageUser: "app", sec: runtime.SecurityConfig{RunAsNonRoot: true, RunAsUser: i64(0)}, wantErr: errNonRoot},
		{name: "nonroot refuses unknown name", imageUser: "ghost", sec: runtime.SecurityConfig{RunAsNonRoot: true}, wantErr: errNonRoot},
		{name: "unknown name", imageUser: "ghost", wantErr: runtime.ErrInvalidConfig},
		{name: "negative uid", sec: runtime.SecurityConfig{RunAsUser: i64(-1)}, wantErr: runtime.ErrInvalidConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveUser(&tc.sec, tc.imageUser, []byte(testPasswd), []byte(testGroup))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestImageFile(t *testing.T) {
	l1, l2, l3 := t.TempDir(), t.TempDir(), t.TempDir()
	write := func(dir, name, data string) {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	write(l1, "etc/passwd", "low")
	write(l2, "etc/passwd", "mid")
	write(l1, "etc/group", "low")
	write(l3, "etc/.wh.group", "")
	os.Symlink("/etc/shadow", filepath.Join(l3, "etc/evil"))
	if b, err := imageFile([]string{l1, l2, l3}, "/etc/passwd"); err != nil || string(b) != "mid" {
		t.Errorf("passwd = %q, %v", b, err)
	}
	if _, err := imageFile([]string{l1, l2, l3}, "/etc/group"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whited-out group: %v", err)
	}
	if _, err := imageFile([]string{l1, l2, l3}, "/etc/evil"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("symlink followed: %v", err)
	}
}
