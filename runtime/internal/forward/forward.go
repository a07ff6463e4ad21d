// Package forward joins a port-forward stream to a TCP connection made
// inside a pod, with the half-close rules port-forward clients rely on.
package forward

import (
	"context"
	"errors"
	"io"
	"net"
)

// Join dials the port in the pod and copies between stream (the client's
// side of a port-forward) and that connection until the pod's side is
// done, either side fails, or ctx ends. It closes both before returning,
// the stream also when the dial fails.
//
// The client ending its input half-closes conn instead of ending the
// forward, so a client that sends a request and then closes its side
// still gets the answer. The pod's side ending does end the forward: a
// client such as kubectl waits for the forward to finish before it closes
// its own side, so waiting for the client there would never finish.
func Join(ctx context.Context, stream io.ReadWriteCloser, dial func() (net.Conn, error)) error {
	defer stream.Close()
	conn, err := dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	fromClient := make(chan error, 1)
	fromPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		if err == nil {
			if hc, ok := conn.(interface{ CloseWrite() error }); ok {
				err = hc.CloseWrite()
			}
		}
		fromClient <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		fromPod <- err
	}()
	for {
		select {
		case err := <-fromPod:
			return ignoreClosed(err)
		case err := <-fromClient:
			if err != nil {
				return ignoreClosed(err)
			}
			fromClient = nil // half-closed: wait for the pod's side
		case <-ctx.Done():
			return nil
		}
	}
}

// ignoreClosed treats a connection torn down by the other direction's
// close as the normal end it is.
func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}
