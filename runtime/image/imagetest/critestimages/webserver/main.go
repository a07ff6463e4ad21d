// Command webserver stands in for the nginx and httpd images critest
// runs: it serves a page on a port, writes /var/run/<name>.pid and says
// where it listens on stderr, named after the file it runs from. Like
// nginx's master, its command line says "<name>: master process".
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

func main() {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "webserver:", err)
		os.Exit(1)
	}
	name := filepath.Base(exe)
	title := name + ": master process " + name
	if os.Args[0] != title {
		// Run again with the title as argv[0], as nginx sets it; the
		// process name (comm) stays the file's.
		err := syscall.Exec(exe, append([]string{title}, os.Args[1:]...), os.Environ())
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
	port := flag.Int("port", 80, "TCP port to serve on")
	flag.Parse()
	_ = os.MkdirAll("/var/run", 0o755)
	if err := os.WriteFile("/var/run/"+name+".pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "%s: pid file: %v\n", name, err)
	}
	fmt.Fprintf(os.Stderr, "%s: listening on :%d\n", name, *port)
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "<html><body><h1>Welcome to %s!</h1></body></html>\n", name)
	})
	if err := http.ListenAndServe(":"+strconv.Itoa(*port), nil); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
