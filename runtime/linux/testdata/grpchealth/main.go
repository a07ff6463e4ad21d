// Command grpchealth is a minimal gRPC health server (grpc.health.v1 over
// plain-text HTTP/2) for the probe root tests: it answers SERVING, or
// NOT_SERVING while the file named by -down exists.
package main

import (
	"encoding/binary"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("listen", ":50051", "address")
	down := flag.String("down", "/tmp/notserving", "while this file exists, report NOT_SERVING")
	flag.Parse()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		if r.URL.Path != "/grpc.health.v1.Health/Check" {
			w.Header().Set("Grpc-Status", "12")
			w.WriteHeader(http.StatusOK)
			return
		}
		status := uint64(1) // SERVING
		if _, err := os.Stat(*down); err == nil {
			status = 2 // NOT_SERVING
		}
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		msg := binary.AppendUvarint([]byte{0x08}, status)
		frame := make([]byte, 5, 5+len(msg))
		binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
		_, _ = w.Write(append(frame, msg...))
		w.Header().Set("Grpc-Status", "0")
	})
	srv := &http.Server{Addr: *addr, Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	log.Fatal(srv.ListenAndServe())
}
