package connlimit

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve accepts on l until it fails, keeping every connection open and
// echoing one byte on each so that a client can tell it was accepted.
func serve(t *testing.T, l net.Listener) {
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 1)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if buf[0] == 'A' { // the client logged in
						Authenticated(c)
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
		}
	})
}

// dial connects from the loopback address src and reports whether the
// server accepted (echoed a byte) rather than closed the connection.
func dial(t *testing.T, addr, src string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, alive(t, c, 1)
}

// alive sends b on c and reports whether the server echoed it rather
// than closed the connection.
func alive(t *testing.T, c net.Conn, b byte) bool {
	t.Helper()
	if _, err := c.Write([]byte{b}); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadFull(c, make([]byte, 1))
	if err != nil && strings.Contains(err.Error(), "timeout") {
		t.Fatalf("no answer and no close from %s within 10s", c.LocalAddr())
	}
	return err == nil
}

func TestCapsRefuseAndRelease(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	l := New(raw, Config{Name: "test port", Max: 8, PerAddress: 5, Logger: slog.New(slog.NewTextHandler(&logs, nil)), LogEvery: time.Hour})
	serve(t, l)
	addr := raw.Addr().String()

	var held []net.Conn
	for i := range 5 {
		c, ok := dial(t, addr, "127.0.0.1")
		if !ok {
			t.Fatalf("connection %d from 127.0.0.1 refused under the per-address cap", i+1)
		}
		held = append(held, c)
	}
	// Past the per-address cap: refused, many times, logged a few times.
	for i := range 20 {
		if _, ok := dial(t, addr, "127.0.0.1"); ok {
			t.Fatalf("connection %d over the per-address cap was accepted", i+1)
		}
	}
	// Another address still gets in, up to the total cap.
	for i := range 3 {
		if _, ok := dial(t, addr, "127.0.0.2"); !ok {
			t.Fatalf("connection %d from 127.0.0.2 refused while under both caps", i+1)
		}
	}
	if _, ok := dial(t, addr, "127.0.0.3"); ok {
		t.Fatal("a connection over the total cap was accepted")
	}
	out := logs.String()
	if n := strings.Count(out, "connection refused"); n != 3 {
		t.Errorf("21 refusals wrote %d log lines, want 3 (the sampler's burst):\n%s", n, out)
	}
	if !strings.Contains(out, "too many connections from this address") || !strings.Contains(out, "remote=127.0.0.1:") {
		t.Errorf("the log does not say why and from where:\n%s", out)
	}

	// Closing one of 127.0.0.1's makes room for one more from it.
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, n := l.Open(Source(held[1].LocalAddr())); n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection was not released")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not waiting on time
	}
	if _, ok := dial(t, addr, "127.0.0.1"); !ok {
		t.Fatal("a connection was refused after another from the same address closed")
	}
}

func TestSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:5", "127.0.0.1/32"},
		{"[::ffff:10.0.0.1]:5", "10.0.0.1/32"},
		{"[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := Source(a).String(); got != tc.want {
			t.Errorf("Source(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

// TestCloseWrite: an accepted connection keeps TCP's half close, which
// net/http uses so that a client reads an error answer before the end.
func TestCloseWrite(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, Config{Max: 1})
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c := dial0(t, raw.Addr().String())
	s := <-accepted
	defer s.Close()
	cw, ok := s.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("an accepted connection has no CloseWrite")
	}
	s.Write([]byte("bye"))
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q, %v; want bye then EOF", got, err)
	}
	// The reading side is still open.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		t.Fatalf("read after CloseWrite: %v", err)
	}
}

func dial0(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEvictUnauthenticated: with Evict, a connection over Max closes the
// oldest not authenticated of the address holding the most, so that a
// flood from one address cannot keep out another's; authenticated
// connections do not count and are never closed; the per-address cap
// still refuses, evicting nothing.
func TestEvictUnauthenticated(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	l := New(raw, Config{Name: "test port", Max: 4, PerAddress: 6, Evict: true, Logger: slog.New(slog.NewTextHandler(&logs, nil)), LogEvery: time.Hour})
	serve(t, l)
	addr := raw.Addr().String()

	var flood []net.Conn
	for i := range 4 {
		c, ok := dial(t, addr, "127.0.0.2")
		if !ok {
			t.Fatalf("flood connection %d refused under the cap", i+1)
		}
		flood = append(flood, c)
	}
	worker, ok := dial(t, addr, "127.0.0.3")
	if !ok {
		t.Fatal("a connection over Max was refused, not let in by evicting")
	}
	if alive(t, flood[0], 1) {
		t.Error("the oldest connection of the address holding the most was not closed")
	}
	if !alive(t, worker, 'A') {
		t.Fatal("the worker's connection was closed")
	}
	// The worker is authenticated; a newcomer is not: neither is
	// evicted by more from the flooding address.
	newcomer, ok := dial(t, addr, "127.0.0.4")
	if !ok {
		t.Fatal("the newcomer was refused")
	}
	for i := range 5 {
		c, ok := dial(t, addr, "127.0.0.2")
		if !ok {
			t.Fatalf("flood connection %d was refused, not let in by evicting", i+5)
		}
		flood = append(flood, c)
	}
	if !alive(t, worker, 1) || !alive(t, newcomer, 1) {
		t.Error("a flood from one address evicted another address's connection")
	}
	// Oldest first: of the flood, only the last three (the cap less the
	// newcomer) are open.
	for i, c := range flood {
		if want := i >= len(flood)-3; alive(t, c, 1) != want {
			t.Errorf("flood connection %d open: %v, want %v", i+1, !want, want)
		}
	}
	// Per address: 127.0.0.5 holds 6 (authenticated: over Max), the 7th
	// is refused and evicts nothing.
	for i := range 6 {
		if c, ok := dial(t, addr, "127.0.0.5"); !ok || !alive(t, c, 'A') {
			t.Fatalf("connection %d from 127.0.0.5 refused", i+1)
		}
	}
	if _, ok := dial(t, addr, "127.0.0.5"); ok {
		t.Error("a connection over the per-address cap was accepted")
	}
	if !alive(t, worker, 1) || !alive(t, newcomer, 1) {
		t.Error("a refused connection evicted another")
	}
	if out := logs.String(); !strings.Contains(out, "closed a connection not yet authenticated to make room for a new one") ||
		!strings.Contains(out, "closed_remote=127.0.0.2:") {
		t.Errorf("the evictions are not logged:\n%s", out)
	}
}
