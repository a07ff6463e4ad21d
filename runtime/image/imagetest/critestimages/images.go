// Package critestimages builds the images critest (the Kubernetes CRI
// conformance suite, sigs.k8s.io/cri-tools) pulls, under the repository
// names and tags it pulls them by, from the host's static busybox and two
// small Go programs: served from a loopback registry that stands in (as a
// mirror) for the registries critest names, they let it run offline.
//
// What the real images do that critest looks at is reproduced: nginx and
// httpd serve a page on port 80 and write their pid file, hostnet-nginx
// serves on 12003, nonewprivs is setuid root and prints its effective
// UID, the user images carry the USER settings and /etc/passwd entries
// critest checks, and tags that name one image or three differ as they do
// upstream. Images pinned by digest upstream cannot be rebuilt here.
package critestimages

import (
	"fmt"
	"os/exec"
	"path/filepath"
	goruntime "runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
)

// Registries are the registries critest pulls from; each gets the loopback
// registry as its mirror.
var Registries = []string{"registry.k8s.io", "gcr.io", "k8s.gcr.io"}

const (
	e2e      = "e2e-test-images/"
	criTools = "k8s-staging-cri-tools/"
	pkgPath  = "github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest/critestimages/"
)

// BuildHelpers compiles the static helper programs into dir and returns
// their paths by name. It runs the go command, so it needs the module.
func BuildHelpers(dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, name := range []string{"webserver", "nonewprivs", "tools"} {
		bin := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkgPath+name)
		cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %v\n%s", name, err, b)
		}
		out[name] = bin
	}
	return out, nil
}

// Build returns every image by "repository:tag" (no registry), built on
// busybox with the helpers from BuildHelpers.
func Build(helpers map[string]string) (map[string]v1.Image, error) {
	bb, err := imagetest.BuildBusybox()
	if err != nil {
		return nil, err
	}
	out := map[string]v1.Image{}
	var errs []error
	add := func(ref string, base v1.Image, change func(*v1.Config), files ...imagetest.HostFile) v1.Image {
		img := base
		var err error
		if len(files) > 0 {
			if img, err = imagetest.AddFiles(img, files...); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ref, err))
				return nil
			}
		}
		if change != nil {
			cf, err := img.ConfigFile()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ref, err))
				return nil
			}
			cfg := *cf.Config.DeepCopy()
			change(&cfg)
			if img, err = mutate.Config(img, cfg); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ref, err))
				return nil
			}
		}
		out[ref] = img
		return img
	}
	entrypoint := func(args ...string) func(*v1.Config) {
		return func(c *v1.Config) { c.Entrypoint, c.Cmd = args, nil }
	}
	marker := func(s string) imagetest.HostFile {
		return imagetest.HostFile{Path: "/etc/critest-image", Data: []byte(s + "\n")}
	}
	runDir := imagetest.HostFile{Path: "/var/run/.keep", Data: nil}
	server := func(path string) imagetest.HostFile {
		return imagetest.HostFile{Path: path, From: helpers["webserver"]}
	}

	// Debian's busybox-static lacks pgrep and ipcs, which critest runs
	// in this image.
	bbTools, err := imagetest.AddFiles(bb, imagetest.HostFile{Path: "/usr/bin/pgrep", From: helpers["tools"]},
		imagetest.HostFile{Path: "/usr/bin/ipcs", From: helpers["tools"]})
	if err != nil {
		return nil, err
	}
	add(e2e+"busybox:1.29-2", bbTools, nil)
	add(e2e+"nginx:1.14-2", bb, entrypoint("/usr/sbin/nginx"), server("/usr/sbin/nginx"), runDir)
	add(e2e+"httpd:2.4.39-4", bb, entrypoint("/usr/local/apache2/bin/httpd"), server("/usr/local/apache2/bin/httpd"), runDir)
	add(criTools+"hostnet-nginx-"+goruntime.GOARCH+":latest", bb, entrypoint("/usr/sbin/nginx", "-port", "12003"),
		server("/usr/sbin/nginx"), runDir)
	add(e2e+"nonewprivs:1.3", bb, entrypoint("/usr/local/bin/nonewprivs"),
		imagetest.HostFile{Path: "/usr/local/bin/nonewprivs", From: helpers["nonewprivs"], Mode: 0o4755})
	add("pause:3.9", bb, entrypoint("/bin/sleep", "infinity"))

	add(criTools+"test-image-latest:latest", bb, nil, marker("latest"))
	add(criTools+"test-image-tag:test", bb, nil, marker("tag:test"))
	add(criTools+"test-image-tag:all", bb, nil, marker("tag:all"))
	for i := 1; i <= 3; i++ {
		add(fmt.Sprintf("%stest-image-%d:latest", criTools, i), bb, nil, marker(fmt.Sprintf("image %d", i)))
	}
	if same := add(criTools+"test-image-tags:1", bb, nil, marker("tags")); same != nil {
		out[criTools+"test-image-tags:2"], out[criTools+"test-image-tags:3"] = same, same
	}

	passwd := func(lines string) imagetest.HostFile {
		return imagetest.HostFile{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\n" + lines +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")}
	}
	wwwData := passwd("www-data:x:33:33:www-data:/var/www:/bin/false\n")
	user := func(u string) func(*v1.Config) { return func(c *v1.Config) { c.User = u } }
	add(criTools+"test-image-user-uid:latest", bb, user("1002"), wwwData)
	add(criTools+"test-image-user-username:latest", bb, user("www-data"), wwwData)
	add(criTools+"test-image-user-uid-group:latest", bb, user("1003:1003"), wwwData)
	add(criTools+"test-image-user-username-group:latest", bb, user("www-data:www-data"), wwwData,
		imagetest.HostFile{Path: "/etc/group", Data: []byte("root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n")})
	add(criTools+"test-image-predefined-group:latest", bb, user("default-user"),
		passwd("default-user:x:1000:1000:default-user:/home/default-user:/bin/sh\n"),
		imagetest.HostFile{Path: "/etc/group", Data: []byte("root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n")})
	if len(errs) > 0 {
		return nil, fmt.Errorf("critest images: %v", errs)
	}
	return out, nil
}
