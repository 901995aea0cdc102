package protocol

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/connlimit"
)

// TestFloodDoesNotLockOutWorkers: idle connections from 20 addresses, 30
// each, reopened as soon as the master drops them, fill the worker port's
// max_connections (300) for as long as they last; a real worker still
// attaches within seconds (the probe's took 40.7 s) and stays attached
// while the flood goes on, because a connection over the cap closes an
// idle one not logged in, of the address holding the most.
func TestFloodDoesNotLockOutWorkers(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	const maxConns, perAddr, addrs, perFlooder = 300, 64, 20, 30
	lis := connlimit.New(raw, connlimit.Config{Name: "worker port", Max: maxConns, PerAddress: perAddr, Evict: true, Logger: log})
	attach := make(chan *WorkerConn, 1)
	s := NewServer(ServerConfig{
		Password: func(string) (string, bool) { return "pw", true },
		Attach:   func(c *WorkerConn) { attach <- c },
		Logger:   log,
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := raw.Addr().String()

	// The flood: each connection idles until the master closes it, then
	// is opened again at once.
	var flood sync.WaitGroup
	var opened atomic.Int64
	var mu sync.Mutex
	open := map[net.Conn]bool{} // guarded by mu; to close them at the end
	stopped := false            // guarded by mu
	floodStart := time.Now()
	for a := range addrs {
		src := fmt.Sprintf("127.0.1.%d", a+1)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		for range perFlooder {
			flood.Go(func() {
				for {
					c, err := d.Dial("tcp", addr)
					mu.Lock()
					if stopped {
						mu.Unlock()
						if err == nil {
							c.Close()
						}
						return
					}
					if err != nil {
						mu.Unlock()
						continue
					}
					opened.Add(1)
					open[c] = true
					mu.Unlock()
					_, _ = io.Copy(io.Discard, c) // until the master closes it, or the test
					c.Close()
					mu.Lock()
					delete(open, c)
					mu.Unlock()
				}
			})
		}
	}
	defer func() {
		mu.Lock()
		stopped = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		flood.Wait()
	}()

	// Wait for the flood to fill the cap.
	deadline := time.Now().Add(30 * time.Second)
	for total, _ := lis.Open(netip0); total < maxConns; total, _ = lis.Open(netip0) {
		if time.Now().After(deadline) {
			t.Fatalf("the flood holds %d connections after 30s, want %d", total, maxConns)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}

	// A real worker, with a real worker's backoff (1s, doubling).
	start := time.Now()
	attempts := make(chan error, 100)
	w := NewClient(ClientConfig{Master: addr, Name: "w1", Password: "pw", Executor: newTestExecutor(),
		OnAttempt: func(err error) {
			select {
			case attempts <- err:
			default:
			}
		}})
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	defer func() { wcancel(); <-wdone }()
	var c *WorkerConn
	select {
	case c = <-attach:
	case <-time.After(30 * time.Second): // generous: the flood and a loaded machine share two cores
		t.Fatalf("the worker did not attach within 30s of flood (%d flood connections opened; its attempts: %d)", opened.Load(), len(attempts))
	}
	t.Logf("the worker attached in %s during the flood (%d flood connections opened so far)", time.Since(start).Round(time.Millisecond), opened.Load())

	// It stays attached while the flood goes on: wait until the flood
	// has lasted 10s and opened another 2,000 connections, then run a
	// command.
	for n := opened.Load() + 2000; opened.Load() < n || time.Since(floodStart) < 10*time.Second; {
		select {
		case <-c.Done():
			t.Fatalf("the worker was cut during the flood: %v", c.Err())
		case <-time.After(10 * time.Millisecond): // polling a condition
		}
	}
	t.Logf("after %s of flood (%d connections opened), the worker is still attached", time.Since(floodStart).Round(time.Millisecond), opened.Load())
	rctx, rcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer rcancel()
	res, err := c.Run(rctx, shell("echo", "still", "here"), nil)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("a command on the worker during the flood: %+v, %v", res, err)
	}
}

// netip0 is any source, for Listener.Open's total.
var netip0 = connlimit.Source(&net.TCPAddr{IP: net.IPv4zero})
