// Command tools provides, by the name it is started as, the two commands
// critest runs in its busybox image that Debian's busybox-static lacks:
// pgrep (process names matching a pattern) and ipcs -m (System V shared
// memory segments).
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case "pgrep":
		os.Exit(pgrep(os.Args[1:]))
	case "ipcs":
		os.Exit(ipcs(os.Args[1:]))
	}
	fmt.Fprintln(os.Stderr, "tools: start me as pgrep or ipcs")
	os.Exit(2)
}

// pgrep prints the PIDs whose process name matches the pattern; it exits
// 1 when none does, as procps' pgrep.
func pgrep(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: pgrep PATTERN")
		return 2
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgrep:", err)
		return 2
	}
	ents, _ := os.ReadDir("/proc")
	found := 1
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && re.MatchString(strings.TrimSpace(string(b))) {
			fmt.Println(pid)
			found = 0
		}
	}
	return found
}

// ipcs -m lists the shared memory segments of the caller's IPC namespace
// in util-linux's layout.
func ipcs(args []string) int {
	if len(args) != 1 || args[0] != "-m" {
		fmt.Fprintln(os.Stderr, "usage: ipcs -m")
		return 2
	}
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipcs:", err)
		return 1
	}
	defer f.Close()
	fmt.Println("\n------ Shared Memory Segments --------")
	fmt.Printf("%-10s %-10s %-10s %-10s %-10s %-10s\n", "key", "shmid", "owner", "perms", "bytes", "nattch")
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// key shmid perms size cpid lpid nattch uid ...
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 {
			continue
		}
		key, _ := strconv.ParseInt(fs[0], 10, 64)
		fmt.Printf("0x%08x %-10s %-10s %-10s %-10s %-10s\n", uint32(key), fs[1], fs[7], fs[2], fs[3], fs[6])
	}
	return 0
}
