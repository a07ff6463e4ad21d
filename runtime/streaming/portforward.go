package streaming

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"golang.org/x/net/websocket"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// tunnelProtocol is SPDY carried in WebSocket binary messages, which
// kubectl port-forward tries first since 1.31.
const tunnelProtocol = portforward.WebsocketsSPDYTunnelingPortForwardV1

// PortForwardHandler serves pods/portforward at
// /api/v1/namespaces/{namespace}/pods/{name}/portforward: each stream the
// client opens reaches a TCP port inside the pod's network namespace.
func PortForwardHandler(rt runtime.Runtime, resolve Resolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pod, err := podFromPath(r.URL.Path)
		if err != nil {
			refuse(w, http.StatusBadRequest, "BadRequest", "%v", err)
			return
		}
		t, err := resolve(r.Context(), pod, "")
		if err != nil {
			refuseErr(w, err)
			return
		}
		ServePortForward(w, r, rt, pod.String(), t.SandboxID)
	})
}

// ServePortForward upgrades r and forwards the client's streams to ports
// of the sandbox until the client closes the connection; podName only
// names the pod in messages. It is the part of PortForwardHandler a
// caller that already knows the sandbox uses (the CRI's streaming server).
func ServePortForward(w http.ResponseWriter, r *http.Request, rt runtime.Runtime, podName, sandboxID string) {
	pf, ok := rt.(runtime.PortForwarder)
	if !ok {
		refuse(w, http.StatusNotImplemented, "NotImplemented", "port-forward to pod %s: the runtime cannot forward ports", podName)
		return
	}
	if !httpstream.IsUpgradeRequest(r) {
		refuse(w, http.StatusBadRequest, "BadRequest", "Upgrade request required: use a WebSocket (%s) or SPDY/3.1 (%s) client such as kubectl", tunnelProtocol, portforward.ProtocolV1Name)
		return
	}
	ctx, cancel, w := watchDisconnect(w, r)
	defer cancel()
	// The library forwards each stream with a background context; the
	// request's own ends the forwards when the client goes.
	fwd := forwarder{ctx: ctx, pf: pf, sandboxID: sandboxID}
	if wsstream.IsWebSocketRequestWithTunnelingProtocol(r) {
		serveTunnel(w, r, fwd, podName)
		return
	}
	// The WebSocket channel form names its ports in the query: "ports" in
	// the API (PodPortForwardOptions), "port" in kubelet's URLs.
	if ports := r.URL.Query()["ports"]; len(ports) > 0 {
		r = r.Clone(r.Context())
		q := r.URL.Query()
		for _, p := range ports {
			q.Add(portforward.PortHeader, p)
		}
		r.URL.RawQuery = q.Encode()
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		refuse(w, http.StatusBadRequest, "BadRequest", "port-forward to pod %s: %v", podName, err)
		return
	}
	portforward.ServePortForward(w, r, fwd, podName, "", opts, IdleTimeout, StreamCreationTimeout, portforward.SupportedProtocols)
}

// forwarder adapts a runtime.PortForwarder to the library's interface.
type forwarder struct {
	ctx       context.Context
	pf        runtime.PortForwarder
	sandboxID string
}

func (f forwarder) PortForward(_ context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	return f.pf.PortForward(f.ctx, f.sandboxID, port, stream)
}

// serveTunnel accepts the WebSocket and serves SPDY port-forward inside
// it, as the API server's tunnelling handler does in front of kubelet.
func serveTunnel(w http.ResponseWriter, r *http.Request, fwd forwarder, podName string) {
	websocket.Server{
		Handshake: func(cfg *websocket.Config, _ *http.Request) error {
			for _, p := range cfg.Protocol {
				if p == tunnelProtocol {
					cfg.Protocol = []string{p}
					return nil
				}
			}
			return fmt.Errorf("port-forward: no supported protocol in %v (want %s)", cfg.Protocol, tunnelProtocol)
		},
		Handler: func(ws *websocket.Conn) {
			ws.PayloadType = websocket.BinaryFrame // the client refuses text messages
			portforward.ServePortForward(&tunnel{conn: ws, header: http.Header{}}, spdyRequest(r), fwd, podName, "",
				&portforward.V4Options{}, IdleTimeout, StreamCreationTimeout, portforward.SupportedProtocols)
		},
	}.ServeHTTP(w, r)
}

// spdyRequest is r as the SPDY upgrade the tunnel carries.
func spdyRequest(r *http.Request) *http.Request {
	c := r.Clone(r.Context())
	c.Method = http.MethodPost
	c.Body = http.NoBody
	for _, h := range []string{"Sec-Websocket-Protocol", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions"} {
		c.Header.Del(h)
	}
	c.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	c.Header.Set(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	c.Header.Set(httpstream.HeaderProtocolVersion, portforward.ProtocolV1Name)
	return c
}

// tunnel is the response writer the SPDY upgrader sees inside the
// WebSocket: its "hijacked connection" is the WebSocket itself, and the
// 101 answer was the WebSocket's.
type tunnel struct {
	conn   net.Conn
	header http.Header
}

func (t *tunnel) Header() http.Header { return t.header }
func (t *tunnel) WriteHeader(int)     {}
func (t *tunnel) Write([]byte) (int, error) {
	return 0, errors.New("port-forward tunnel: no HTTP body can follow the upgrade")
}
func (t *tunnel) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}
