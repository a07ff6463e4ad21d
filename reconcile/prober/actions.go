package prober

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Execer is the one runtime ability exec probes and hooks need;
// runtime.Runtime satisfies it.
type Execer interface {
	Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error)
}

// errDiscard marks an attempt whose result means nothing (the container is
// gone or the worker is stopping): the kubelet throws such results away
// instead of counting them as failures.
var errDiscard = errors.New("probe result discarded")

// Run performs one attempt of the probe's action against t, bounded by the
// probe's timeout, and returns the result with a short human message (the
// bounded output or the reason for failure). A non-nil error means the
// attempt must not count either way.
func Run(ctx context.Context, ex Execer, t *Target, p *Probe) (Result, string, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	switch {
	case p.Exec != nil:
		return runExec(ctx, ex, t, p.Exec, timeout)
	case p.HTTPGet != nil:
		return runHTTP(ctx, t, p.HTTPGet, timeout)
	case p.TCPSocket != nil:
		return runTCP(ctx, t, p.TCPSocket, timeout)
	case p.GRPC != nil:
		return runGRPC(ctx, t, p.GRPC, timeout)
	}
	return Unknown, "", fmt.Errorf("probe of container %s: no action", t.ContainerName)
}

// boundedBuffer keeps the first maxOutput bytes and silently drops the rest,
// so a process writing without end neither blocks nor grows the agent.
type boundedBuffer struct {
	buf       bytes.Buffer
	truncated bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	room := maxOutput - b.buf.Len()
	if room <= 0 {
		b.truncated = true
		return len(p), nil
	}
	if len(p) > room {
		b.buf.Write(p[:room])
		b.truncated = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *boundedBuffer) String() string {
	s := strings.TrimSpace(b.buf.String())
	if b.truncated {
		s += " [truncated]"
	}
	return s
}

func runExec(ctx context.Context, ex Execer, t *Target, a *ExecAction, timeout time.Duration) (Result, string, error) {
	if ex == nil {
		return Unknown, "", fmt.Errorf("exec probe of container %s: no exec runtime", t.ContainerName)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out boundedBuffer
	code, err := ex.Exec(ctx, t.ContainerID, runtime.ExecOptions{
		Cmd: a.Command, Stdout: &out, Stderr: &out, Timeout: timeout,
	})
	if err != nil {
		switch {
		case errors.Is(err, runtime.ErrNotFound):
			return Unknown, "", fmt.Errorf("exec probe of container %s: %w: %w", t.ContainerName, errDiscard, err)
		case ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
			return Failure, fmt.Sprintf("command timed out after %s", timeout), nil
		case ctx.Err() != nil:
			return Unknown, "", fmt.Errorf("exec probe of container %s: %w: %w", t.ContainerName, errDiscard, ctx.Err())
		}
		// The command could not be started (missing binary and the like):
		// as for the kubelet, that is a failing probe, not a broken prober.
		return Failure, fmt.Sprintf("exec %q: %v", a.Command, err), nil
	}
	if code != 0 {
		msg := out.String()
		if msg == "" {
			msg = fmt.Sprintf("command %q exited with %d", a.Command, code)
		}
		return Failure, msg, nil
	}
	return Success, out.String(), nil
}

func hostFor(t *Target, host string) (string, error) {
	if host != "" {
		return host, nil
	}
	if t.PodIP == "" {
		return "", fmt.Errorf("container %s: pod has no IP yet", t.ContainerName)
	}
	return t.PodIP, nil
}

// HTTPRequest builds the GET the kubelet would send for a; exported so the
// lifecycle hooks issue exactly the same request.
func HTTPRequest(ctx context.Context, t *Target, a *HTTPGetAction) (*http.Request, error) {
	port, err := t.resolvePort(a.Port)
	if err != nil {
		return nil, fmt.Errorf("httpGet of container %s: %w", t.ContainerName, err)
	}
	host, err := hostFor(t, a.Host)
	if err != nil {
		return nil, fmt.Errorf("httpGet: %w", err)
	}
	scheme := strings.ToLower(a.Scheme)
	if scheme == "" {
		scheme = "http"
	}
	path := a.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("httpGet of container %s: path %q: %w", t.ContainerName, a.Path, err)
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("httpGet of container %s: %w", t.ContainerName, err)
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	for _, h := range a.Headers {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		// Explicit headers replace the defaults, as in the kubelet.
		if _, set := req.Header[http.CanonicalHeaderKey(h.Name)]; set && (strings.EqualFold(h.Name, "User-Agent") || strings.EqualFold(h.Name, "Accept")) {
			req.Header.Del(h.Name)
		}
		req.Header.Add(h.Name, h.Value)
	}
	return req, nil
}

// httpTransport never reuses connections (a probe is a fresh look), never
// uses a proxy from the agent's environment, and does not verify
// certificates, as the kubelet.
var httpTransport = &http.Transport{
	Proxy:              nil,
	DisableKeepAlives:  true,
	DisableCompression: true,
	TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // Kubernetes semantics: HTTPS probes skip verification.
}

// DoHTTP performs the GET with the kubelet's redirect rule (follow within the
// same host, otherwise take the redirect itself as the answer) and reports
// success for a status in [200,400).
func DoHTTP(ctx context.Context, t *Target, a *HTTPGetAction, timeout time.Duration) (Result, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := HTTPRequest(ctx, t, a)
	if err != nil {
		return Failure, err.Error(), nil
	}
	client := &http.Client{
		Transport: httpTransport,
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if r.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		if parent := ctx.Err(); parent != nil && parent != context.DeadlineExceeded {
			return Unknown, "", fmt.Errorf("httpGet %s: %w: %w", req.URL, errDiscard, parent)
		}
		return Failure, fmt.Sprintf("Get %q: %v", req.URL.String(), unwrapURLError(err)), nil
	}
	defer resp.Body.Close()
	var body boundedBuffer
	_, _ = io.Copy(&body, io.LimitReader(resp.Body, maxOutput+1))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return Success, body.String(), nil
	}
	return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode), nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func runHTTP(ctx context.Context, t *Target, a *HTTPGetAction, timeout time.Duration) (Result, string, error) {
	return DoHTTP(ctx, t, a, timeout)
}

func runTCP(ctx context.Context, t *Target, a *TCPSocketAction, timeout time.Duration) (Result, string, error) {
	port, err := t.resolvePort(a.Port)
	if err != nil {
		return Failure, err.Error(), nil
	}
	host, err := hostFor(t, a.Host)
	if err != nil {
		return Failure, err.Error(), nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return Unknown, "", fmt.Errorf("tcpSocket %s: %w: %w", addr, errDiscard, ctx.Err())
		}
		return Failure, fmt.Sprintf("dial tcp %s: %v", addr, err), nil
	}
	_ = conn.Close()
	return Success, "", nil
}

// gRPC health protocol (grpc.health.v1). The request and response are tiny
// protobuf messages, so they are encoded by hand rather than pulling in
// grpc-go and its generated code.
const (
	grpcHealthPath    = "/grpc.health.v1.Health/Check"
	grpcServing       = 1
	grpcMaxMessage    = 64 << 10
	grpcUnimplemented = "12"
)

var grpcStatusNames = map[uint64]string{0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

// encodeHealthRequest frames HealthCheckRequest{service}: the 5-byte gRPC
// message prefix (uncompressed, big-endian length), then field 1 as bytes.
func encodeHealthRequest(service string) []byte {
	var msg []byte
	if service != "" {
		msg = append(msg, 0x0a)
		msg = binary.AppendUvarint(msg, uint64(len(service)))
		msg = append(msg, service...)
	}
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// decodeHealthResponse reads the status (field 1, varint) of one framed
// HealthCheckResponse, skipping unknown fields as protobuf requires.
func decodeHealthResponse(b []byte) (uint64, error) {
	if len(b) < 5 {
		return 0, fmt.Errorf("short gRPC message (%d bytes)", len(b))
	}
	if b[0] != 0 {
		return 0, errors.New("compressed gRPC message not supported")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(n) > uint64(len(b)-5) {
		return 0, fmt.Errorf("truncated gRPC message: %d of %d bytes", len(b)-5, n)
	}
	msg := b[5 : 5+n]
	var status uint64
	for len(msg) > 0 {
		key, k := binary.Uvarint(msg)
		if k <= 0 {
			return 0, errors.New("bad protobuf tag")
		}
		msg = msg[k:]
		field, wire := key>>3, key&7
		switch wire {
		case 0:
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, errors.New("bad protobuf varint")
			}
			msg = msg[k:]
			if field == 1 {
				status = v
			}
		case 1:
			if len(msg) < 8 {
				return 0, errors.New("bad protobuf fixed64")
			}
			msg = msg[8:]
		case 2:
			l, k := binary.Uvarint(msg)
			if k <= 0 || l > uint64(len(msg)-k) {
				return 0, errors.New("bad protobuf length")
			}
			msg = msg[k+int(l):]
		case 5:
			if len(msg) < 4 {
				return 0, errors.New("bad protobuf fixed32")
			}
			msg = msg[4:]
		default:
			return 0, fmt.Errorf("unsupported protobuf wire type %d", wire)
		}
	}
	return status, nil
}

func runGRPC(ctx context.Context, t *Target, a *GRPCAction, timeout time.Duration) (Result, string, error) {
	host, err := hostFor(t, "")
	if err != nil {
		return Failure, err.Error(), nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(int(a.Port)))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Plain-text HTTP/2 ("h2c" with prior knowledge), as a gRPC client
	// with insecure credentials speaks it; the kubelet's gRPC probe never
	// uses TLS either.
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+grpcHealthPath,
		bytes.NewReader(encodeHealthRequest(a.Service)))
	if err != nil {
		return Failure, err.Error(), nil
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("grpc-timeout", strconv.FormatInt(timeout.Milliseconds(), 10)+"m")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		if parent := ctx.Err(); parent != nil && parent != context.DeadlineExceeded {
			return Unknown, "", fmt.Errorf("grpc probe %s: %w: %w", addr, errDiscard, parent)
		}
		if ctx.Err() == context.DeadlineExceeded {
			return Failure, fmt.Sprintf("timeout: health rpc did not complete within %s", timeout), nil
		}
		return Failure, fmt.Sprintf("failed to connect service %q within %s: %v", addr, timeout, err), nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Failure, fmt.Sprintf("gRPC health check at %s: HTTP status %d", addr, resp.StatusCode), nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return Failure, fmt.Sprintf("gRPC health check at %s: content-type %q is not gRPC", addr, ct), nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, grpcMaxMessage))
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return Failure, fmt.Sprintf("timeout: health rpc did not complete within %s", timeout), nil
		}
		return Failure, fmt.Sprintf("gRPC health check at %s: reading response: %v", addr, err), nil
	}
	// A trailers-only response carries grpc-status in the headers.
	code := resp.Trailer.Get("Grpc-Status")
	msg := resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if code == grpcUnimplemented {
		return Failure, "this server does not implement the grpc health protocol (grpc.health.v1.Health)", nil
	}
	if code != "0" {
		if code == "" {
			code = "missing"
		}
		return Failure, fmt.Sprintf("health rpc failed: grpc-status %s %s", code, msg), nil
	}
	status, err := decodeHealthResponse(body)
	if err != nil {
		return Failure, fmt.Sprintf("gRPC health check at %s: %v", addr, err), nil
	}
	if status != grpcServing {
		name := grpcStatusNames[status]
		if name == "" {
			name = strconv.FormatUint(status, 10)
		}
		return Failure, fmt.Sprintf("service unhealthy (responded with %q)", name), nil
	}
	return Success, "", nil
}
