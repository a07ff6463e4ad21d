package prober

import (
	"context"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"
)

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkProbeVsDial measures one attempt of each network probe against a
// loopback server, interleaved with the floor it cannot beat (a bare TCP
// connect and close), and reports medians and the ratio to that floor.
func BenchmarkProbeVsDial(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &healthServer{}
	hs.status.Store(grpcServing)
	mux := http.NewServeMux()
	mux.Handle("/grpc.health.v1.Health/", hs)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	defer srv.Close()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	target := &Target{ContainerName: "bench", PodIP: "127.0.0.1"}
	probes := map[string]*Probe{
		"tcp":  {TCPSocket: &TCPSocketAction{Port: Port{Number: port}}, Timeout: time.Second},
		"http": {HTTPGet: &HTTPGetAction{Path: "/healthz", Port: Port{Number: port}}, Timeout: time.Second},
		"grpc": {GRPC: &GRPCAction{Port: port}, Timeout: time.Second},
	}
	for _, name := range []string{"tcp", "http", "grpc"} {
		b.Run(name, func(b *testing.B) {
			var dial, probe []time.Duration
			for b.Loop() {
				t0 := time.Now()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
				dial = append(dial, time.Since(t0))
				t0 = time.Now()
				if res, msg, err := Run(context.Background(), nil, target, probes[name]); res != Success || err != nil {
					b.Fatalf("%s probe: %v %v %s", name, res, err, msg)
				}
				probe = append(probe, time.Since(t0))
			}
			mp, md := median(probe), median(dial)
			b.ReportMetric(float64(mp.Microseconds()), "median-µs")
			b.ReportMetric(float64(md.Microseconds()), "dial-median-µs")
			b.ReportMetric(float64(mp)/float64(md), "x-dial")
		})
	}
}
