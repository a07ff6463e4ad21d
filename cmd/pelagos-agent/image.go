package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux"
)

func init() { registerCommand(newImageCommand) }

// imageInUse tells `image rm` and `image prune` which images containers use
// (by image ID). Tests replace it.
var imageInUse = containerImages

// containerImages reads the runtime's container records under the run
// root: every container there, running or exited, holds its image and
// the images it mounts.
func containerImages(ctx context.Context, g *globalOptions) (func(imageID string) bool, error) {
	rt, err := linux.New(g.linuxConfig())
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	defer rt.Close()
	cs, err := rt.ListContainers(ctx, runtime.ContainerFilter{})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	used := map[string]bool{}
	for _, c := range cs {
		used[c.ImageID] = true
		for _, id := range c.MountImageIDs {
			used[id] = true
		}
	}
	return func(id string) bool { return used[id] }, nil
}

type imageOptions struct {
	insecure     []string
	dockerConfig string
}

func (o *imageOptions) open(g *globalOptions) (*image.Store, error) {
	return image.Open(g.withImageCaps(image.Options{
		Root:               g.Root,
		InsecureRegistries: o.insecure,
		DockerConfig:       o.dockerConfig,
		Logger:             g.log,
	}))
}

func newImageCommand(g *globalOptions) *cobra.Command {
	o := &imageOptions{}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage OCI images: pull, import, list, inspect, remove, prune",
		Long: `Manage the node's image store under <root>/images.

Images come from registries (image pull) or from files (image import, or a
file dropped into <root>/images/import, which the running agent imports once
and moves to done/ or failed/).`,
	}
	addLowLevelFlags(cmd, g)
	cmd.PersistentFlags().StringSliceVar(&o.insecure, "insecure-registry", nil,
		"registry (host or host:port) that may be reached over plain HTTP; loopback always may")
	cmd.PersistentFlags().StringVar(&o.dockerConfig, "docker-config", "",
		"Docker config.json with registry credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	cmd.AddCommand(newImagePullCommand(g, o), newImageListCommand(g, o), newImageInspectCommand(g, o),
		newImageRemoveCommand(g, o), newImagePruneCommand(g, o), newImageImportCommand(g, o))
	return cmd
}

func newImagePullCommand(g *globalOptions, o *imageOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry (progress on a terminal, plain lines otherwise)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := o.open(g)
			if err != nil {
				return err
			}
			img, err := s.EnsureImage(cmd.Context(), args[0], runtime.PullOptions{Policy: runtime.PullAlways, Progress: g.stdout})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\n", img.Digest)
			return nil
		},
	}
}

func newImageListCommand(g *globalOptions, o *imageOptions) *cobra.Command {
	lo := &listOptions{}
	var digests bool
	cmd := &cobra.Command{
		Use:     "ls [-o table|json|yaml] [--no-trunc] [--digests] [-q]",
		Aliases: []string{"list"},
		Short:   "List stored images: IMAGE TAG IMAGE ID SIZE",
		Long: `List stored images, as crictl images does. IMAGE ID is the image's ID, the
digest of its config, which pods report as their containers' imageID (the
table shows 13 characters unless --no-trunc); --digests adds the
manifest's digest. -o json and -o yaml print the runtime's fields
(camelCase); -q prints whole IDs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(lo.output); err != nil {
				return err
			}
			s, err := o.open(g)
			if err != nil {
				return err
			}
			imgs, err := s.ListImages(cmd.Context())
			if err != nil {
				return err
			}
			return printImages(g.stdout, imgs, lo, digests)
		},
	}
	addListFlags(cmd, lo)
	cmd.Flags().BoolVar(&digests, "digests", false, "show the manifests' digests")
	return cmd
}

// imageRow is one line of image ls: an image under one of its
// references.
type imageRow struct {
	*runtime.Image
	ref string
}

func printImages(w io.Writer, imgs []*runtime.Image, o *listOptions, digests bool) error {
	if o.output != "table" || o.quiet {
		return printList(w, imgs, o, func(img *runtime.Image) string { return img.ID }, "", nil)
	}
	var rows []imageRow
	for _, img := range imgs {
		if len(img.References) == 0 {
			rows = append(rows, imageRow{img, ""})
		}
		for _, ref := range img.References {
			rows = append(rows, imageRow{img, ref})
		}
	}
	header := "IMAGE\tTAG\tIMAGE ID\tSIZE"
	if digests {
		header = "IMAGE\tTAG\tDIGEST\tIMAGE ID\tSIZE"
	}
	return printList(w, rows, o, nil, header, func(r imageRow) string {
		id, digest := r.ID, r.Digest
		if !o.noTrunc {
			id, digest = shortID(digestHex(id)), shortID(digestHex(digest))
		}
		repo, tag := "<none>", "<none>"
		if r.ref != "" {
			repo, tag = image.SplitReference(r.ref)
		}
		cells := []string{repo, tag, id, image.HumanBytes(r.Size)}
		if digests {
			cells = slices.Insert(cells, 2, digest)
		}
		return strings.Join(cells, "\t")
	})
}

// digestHex is a digest without its algorithm, as crictl's tables show it.
func digestHex(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok {
		return hex
	}
	return d
}

func shortDigest(d string) string {
	if len(d) > 7+12 {
		return d[:7+12]
	}
	return d
}

func newImageInspectCommand(g *globalOptions, o *imageOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "inspect REF...",
		Short:             "Show images' config, references and layers (-o json, yaml or table); one as an object, several as a list",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeImages(g, o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s, err := o.open(g)
			if err != nil {
				return err
			}
			var out []*image.Details
			for _, ref := range args {
				d, err := s.Inspect(cmd.Context(), ref)
				if err != nil {
					return err
				}
				out = append(out, d)
			}
			return printInspected(g.stdout, out, output, imageFields)
		},
	}
	addInspectOutput(cmd, &output)
	return cmd
}

func imageFields(d *image.Details) []field {
	refs := strings.Join(d.References, ",")
	if refs == "" {
		refs = "<none>"
	}
	cmdline := strings.Join(append(append([]string{}, d.Config.Entrypoint...), d.Config.Cmd...), " ")
	return []field{
		{"ID", d.ID}, {"Digest", d.Digest}, {"References", refs}, {"Size", image.HumanBytes(d.Size)},
		{"Platform", d.OS + "/" + d.Architecture}, {"Command", dash(cmdline)}, {"Layers", strconv.Itoa(len(d.Layers))},
		{"Stored", d.StoredAt.UTC().Format(time.RFC3339)},
	}
}

func newImageRemoveCommand(g *globalOptions, o *imageOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:               "rm REF...",
		Aliases:           []string{"remove"},
		ValidArgsFunction: completeImages(g, o),
		Short:             "Remove image references (refused while a container uses the image, unless --force)",
		Long: `Remove image references. A name:tag removes that reference; a digest or
image ID removes the image with all its references. Disk space is freed by
image prune.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := o.open(g)
			if err != nil {
				return err
			}
			inUse, err := imageInUse(cmd.Context(), g)
			if err != nil {
				return err
			}
			s.SetInUse(inUse)
			var errs []error
			for _, ref := range args {
				if _, err := s.GetImage(cmd.Context(), ref); err != nil {
					errs = append(errs, err)
					continue
				}
				if err := s.RemoveImage(cmd.Context(), ref, force); err != nil {
					if errors.Is(err, runtime.ErrConflict) {
						err = fmt.Errorf("%w (use --force to remove it anyway)", err)
					}
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(g.stdout, "Untagged: %s\n", ref)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove even while a container uses the image")
	return cmd
}

func newImagePruneCommand(g *globalOptions, o *imageOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove unreferenced images, layers and blobs; report the bytes freed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := o.open(g)
			if err != nil {
				return err
			}
			inUse, err := imageInUse(cmd.Context(), g)
			if err != nil {
				return err
			}
			s.SetInUse(inUse)
			freed, err := s.Prune(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Total reclaimed space: %s\n", image.HumanBytes(freed))
			return nil
		},
	}
}

func newImageImportCommand(g *globalOptions, o *imageOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE|DIR...",
		Short: "Import images from docker-archive tarballs (docker save), OCI archives or OCI layout directories",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := o.open(g)
			if err != nil {
				return err
			}
			for _, p := range args {
				imgs, err := s.Import(cmd.Context(), p)
				if err != nil {
					return err
				}
				for _, img := range imgs {
					name := img.Digest
					if len(img.References) > 0 {
						name = img.References[0]
					}
					fmt.Fprintf(g.stdout, "Loaded image: %s (%s)\n", name, shortDigest(img.Digest))
				}
			}
			return nil
		},
	}
}
