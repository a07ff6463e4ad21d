// Command mkimage writes an image archive built from the host's static
// busybox (Debian's busybox-static), so the README's demo and offline edge
// boxes can import an example image without any registry:
//
//	go run ./runtime/image/imagetest/mkimage -o busybox.tar
//	pelagos-agent image import busybox.tar
package main

import (
	"flag"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	out := fs.String("o", "busybox.tar", "output path (a directory for -format oci-layout)")
	ref := fs.String("ref", "busybox:1.36", "image reference to record in the archive")
	format := fs.String("format", "docker-archive", "docker-archive, oci-archive or oci-layout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !imagetest.HaveBusybox() {
		return fmt.Errorf("no static busybox at %s: apt-get install busybox-static", imagetest.BusyboxPath)
	}
	img, err := imagetest.BuildBusybox()
	if err != nil {
		return err
	}
	images := map[string]v1.Image{*ref: img}
	switch *format {
	case "docker-archive":
		err = imagetest.WriteDockerArchive(*out, images)
	case "oci-archive":
		err = imagetest.WriteOCIArchive(*out, images)
	case "oci-layout":
		err = imagetest.WriteOCILayout(*out, images)
	default:
		return fmt.Errorf("-format %q: want docker-archive, oci-archive or oci-layout", *format)
	}
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s, %s)\n", *out, *ref, d)
	return nil
}
