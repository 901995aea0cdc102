package testproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestProxyForwardsThenFreezes: over real loopback connections, the proxy
// forwards both ways, names each connection by the port the upstream
// server sees, and once a connection is frozen drops what either side
// sends without closing it, while its other connections still forward.
// Closing the proxy then closes the frozen connection, and nothing sent
// after the freeze ever arrived.
func TestProxyForwardsThenFreezes(t *testing.T) {
	t.Parallel()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	accepted := make(chan net.Conn, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() { up.Close(); <-done }()

	p := New(t, up.Addr().String())
	dial := func() (client, server net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		select {
		case s := <-accepted:
			t.Cleanup(func() { s.Close() })
			return c, s
		case <-time.After(time.Minute):
			t.Fatal("the proxy did not connect upstream")
		}
		return nil, nil
	}
	roundTrip := func(name string, from, to net.Conn, msg string) {
		t.Helper()
		if _, err := from.Write([]byte(msg)); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		to.SetReadDeadline(time.Now().Add(time.Minute))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(to, got); err != nil || string(got) != msg {
			t.Fatalf("%s: read %q, %v; want %q", name, got, err, msg)
		}
		to.SetReadDeadline(time.Time{})
	}

	c1, s1 := dial()
	c2, s2 := dial()
	port1 := s1.RemoteAddr().(*net.TCPAddr).Port
	if !p.Proxied(port1) || !p.Proxied(s2.RemoteAddr().(*net.TCPAddr).Port) {
		t.Fatalf("the upstream side's ports are not known to the proxy")
	}
	if p.Proxied(c1.LocalAddr().(*net.TCPAddr).Port) {
		t.Errorf("the client's own port is taken for a proxied one")
	}
	roundTrip("c1 to upstream", c1, s1, "hello")
	roundTrip("upstream to c1", s1, c1, "world")

	p.Freeze(t, port1)
	lostUp, lostDown := "lost on the way up", "lost on the way down"
	if _, err := c1.Write([]byte(lostUp)); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Write([]byte(lostDown)); err != nil {
		t.Fatal(err)
	}
	want := int64(len(lostUp) + len(lostDown))
	deadline := time.Now().Add(time.Minute)
	for p.Dropped() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Dropped() = %d, want %d", p.Dropped(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Frozen, not closed: a read waits (and times out) rather than
	// seeing the end of the stream.
	for name, c := range map[string]net.Conn{"client": c1, "upstream": s1} {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := c.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s side of the frozen connection: Read = %d, %v; want a timeout", name, n, err)
		}
		c.SetReadDeadline(time.Time{})
	}
	// The other connection still forwards.
	roundTrip("c2 to upstream", c2, s2, "still")
	roundTrip("upstream to c2", s2, c2, "here")

	p.Close()
	for name, c := range map[string]net.Conn{"client": c1, "upstream": s1} {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		rest, err := io.ReadAll(c)
		if err != nil || len(rest) != 0 {
			t.Errorf("%s side after the proxy closed: read %q, %v; want nothing, then the end", name, rest, err)
		}
	}
}

// TestProxyFreezeAll: FreezeAll freezes the connections through the proxy
// and those it accepts afterwards: nothing sent either way arrives.
func TestProxyFreezeAll(t *testing.T) {
	t.Parallel()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() { up.Close(); <-done }()
	p := New(t, up.Addr().String())
	dial := func() (client, server net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		select {
		case s := <-accepted:
			t.Cleanup(func() { s.Close() })
			return c, s
		case <-time.After(time.Minute):
			t.Fatal("the proxy did not connect upstream")
		}
		return nil, nil
	}
	c1, s1 := dial()
	p.FreezeAll()
	c2, s2 := dial()
	sent := 0
	for _, c := range []net.Conn{c1, s1, c2, s2} {
		n, err := c.Write([]byte("dropped"))
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	deadline := time.Now().Add(time.Minute)
	for p.Dropped() != int64(sent) {
		if time.Now().After(deadline) {
			t.Fatalf("Dropped() = %d, want %d", p.Dropped(), sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, c := range []net.Conn{c1, s1, c2, s2} {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := c.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("side %d: Read = %d, %v; want a timeout", i, n, err)
		}
	}
}
