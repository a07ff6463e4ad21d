package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

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
// root: every container there, running or exited, holds its image.
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
	var output string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List stored images (REPOSITORY TAG DIGEST SIZE)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := o.open(g)
			if err != nil {
				return err
			}
			imgs, err := s.ListImages(cmd.Context())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(g, imgs)
			case "":
			default:
				return &exitError{code: exitUsage, err: fmt.Errorf("-o: %q is not json", output)}
			}
			if quiet {
				for _, img := range imgs {
					fmt.Fprintln(g.stdout, img.ID)
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tSIZE")
			for _, img := range imgs {
				refs := img.References
				if len(refs) == 0 {
					refs = []string{""}
				}
				for _, ref := range refs {
					repo, tag := "<none>", "<none>"
					if ref != "" {
						repo, tag = image.SplitReference(ref)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", repo, tag, shortDigest(img.Digest), image.HumanBytes(img.Size))
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print image IDs only")
	return cmd
}

func shortDigest(d string) string {
	if len(d) > 7+12 {
		return d[:7+12]
	}
	return d
}

func newImageInspectCommand(g *globalOptions, o *imageOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF...",
		Short: "Show an image's config, references and layers as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			return writeJSON(g, out)
		},
	}
}

func newImageRemoveCommand(g *globalOptions, o *imageOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"remove"},
		Short:   "Remove image references (refused while a container uses the image, unless --force)",
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

func writeJSON(g *globalOptions, v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
