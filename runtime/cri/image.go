package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// criImage is an image as the CRI shows it: tags and repository digests
// split out of the store's references.
func criImage(img *runtime.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{Id: img.ID, Size: uint64(max(img.Size, 0)), Spec: &runtimeapi.ImageSpec{Image: img.ID}}
	repos := map[string]bool{}
	for _, ref := range img.References {
		if repo, _, ok := strings.Cut(ref, "@"); ok {
			repos[repo] = true
			continue
		}
		out.RepoTags = append(out.RepoTags, ref)
		if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
			repos[ref[:i]] = true
		}
	}
	if img.Digest != "" {
		for repo := range repos {
			out.RepoDigests = append(out.RepoDigests, repo+"@"+img.Digest)
		}
	}
	sort.Strings(out.RepoTags)
	sort.Strings(out.RepoDigests)
	user, _, _ := strings.Cut(img.Config.User, ":")
	if user != "" {
		if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
			out.Uid = &runtimeapi.Int64Value{Value: uid}
		} else {
			out.Username = user
		}
	}
	return out
}

// ListImages implements the CRI.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	out, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

func (s *Server) listImages(ctx context.Context, f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	if ref := f.GetImage().GetImage(); ref != "" {
		img, err := s.images.GetImage(ctx, ref)
		if errors.Is(err, runtime.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*runtimeapi.Image{criImage(img)}, nil
	}
	imgs, err := s.images.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, criImage(img))
	}
	return out, nil
}

// StreamImages implements the CRI's streamed listing.
func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	out, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return grpcError(err)
	}
	return sendChunks(out, func(c []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: c})
	})
}

// ImageStatus implements the CRI: a missing image is no error but an
// empty status.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, grpcError(invalid("image.image", "required"))
	}
	img, err := s.images.GetImage(ctx, ref)
	if errors.Is(err, runtime.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &runtimeapi.ImageStatusResponse{Image: criImage(img)}
	if req.GetVerbose() {
		b, _ := json.Marshal(img)
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// PullImage implements the CRI: always a pull (kubelet applies the pull
// policy), with the credentials kubelet resolved for this image.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, grpcError(invalid("image.image", "required"))
	}
	opts := runtime.PullOptions{Policy: runtime.PullAlways}
	if a := req.GetAuth(); a != nil {
		opts.Auth = []runtime.RegistryAuth{{Registry: a.GetServerAddress(), Username: a.GetUsername(),
			Password: a.GetPassword(), Auth: a.GetAuth(), IdentityToken: a.GetIdentityToken(), RegistryToken: a.GetRegistryToken()}}
	}
	img, err := s.images.EnsureImage(ctx, ref, opts)
	if err != nil {
		if ctx.Err() != nil {
			// A deadline or cancellation shows through whatever the
			// registry client made of it.
			err = fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return nil, grpcError(fmt.Errorf("pull image %s: %w", ref, err))
	}
	return &runtimeapi.PullImageResponse{ImageRef: img.ID}, nil
}

// RemoveImage implements the CRI: the image goes with every tag, whatever
// reference names it; removing a missing image succeeds. An image a
// container uses is refused (FailedPrecondition).
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, grpcError(invalid("image.image", "required"))
	}
	img, err := s.images.GetImage(ctx, ref)
	if errors.Is(err, runtime.ErrNotFound) {
		return &runtimeapi.RemoveImageResponse{}, nil
	}
	if err != nil {
		return nil, grpcError(err)
	}
	if err := s.images.RemoveImage(ctx, img.ID, false); err != nil {
		return nil, grpcError(fmt.Errorf("remove image %s: %w", ref, err))
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// fsInfoCache keeps ImageFsInfo's tree walks to one per fsInfoTTL: kubelet
// asks every few seconds, and a store of many layers is a long walk.
type fsInfoCache struct {
	mu   sync.Mutex
	at   time.Time
	resp *runtimeapi.ImageFsInfoResponse
}

const fsInfoTTL = 10 * time.Second

// ImageFsInfo implements the CRI: the bytes and inodes of the image store
// and of the containers' writable layers.
func (s *Server) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	c := &s.fsInfo
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.resp != nil && time.Since(c.at) < fsInfoTTL {
		return c.resp, nil
	}
	now := time.Now()
	usage := func(dir string) (*runtimeapi.FilesystemUsage, error) {
		u, err := treeUsage(dir)
		if err != nil {
			return nil, err
		}
		return &runtimeapi.FilesystemUsage{Timestamp: now.UnixNano(), FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: dir},
			UsedBytes: &runtimeapi.UInt64Value{Value: u.Bytes}, InodesUsed: &runtimeapi.UInt64Value{Value: u.Inodes}}, nil
	}
	resp := &runtimeapi.ImageFsInfoResponse{}
	if d := s.opts.ImageFSDir; d != "" {
		u, err := usage(d)
		if err != nil {
			return nil, grpcError(fmt.Errorf("image filesystem: %w", err))
		}
		resp.ImageFilesystems = append(resp.ImageFilesystems, u)
	}
	if d := s.opts.ContainerFSDir; d != "" {
		u, err := usage(d)
		if err != nil {
			return nil, grpcError(fmt.Errorf("container filesystem: %w", err))
		}
		resp.ContainerFilesystems = append(resp.ContainerFilesystems, u)
	}
	c.at, c.resp = now, resp
	return resp, nil
}
