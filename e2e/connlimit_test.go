package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// connCapsConfig lowers the caps so that a few hundred connections reach
// them.
const connCapsConfig = `
buildbot_url = "http://127.0.0.1:{{.WebPort}}/"

[protocols.grpc]
port = {{.WorkerPort}}
interface = "127.0.0.1"
max_connections = 200
max_connections_per_address = 20

[www]
port = {{.WebPort}}
interface = "127.0.0.1"
max_connections = 400
max_connections_per_address = 100
idle_timeout = "3s"
` + workerW1

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// keepAliveRequest sends one keep-alive GET on c and reports whether an
// answer came (false: the master closed the connection instead).
func keepAliveRequest(c net.Conn, port int) bool {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET /api/v2/masters HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// closedByPeer reports whether the peer closes c within d (a read returns
// EOF or a reset), rather than leaving it open.
func closedByPeer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		return false
	}
	return true
}

// TestConnectionCaps: an attacker holding idle connections on both ports
// from one address is capped there, the refusals are logged sampled, the
// API and a real worker from another address get through, and idle
// keep-alive connections are closed after idle_timeout.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(connCapsConfig)
	e.startMaster()
	webAddr := fmt.Sprintf("127.0.0.1:%d", e.WebPort)
	workerAddr := fmt.Sprintf("127.0.0.1:%d", e.WorkerPort)
	const attacker = "127.0.0.3"

	// The web port: 150 keep-alive connections left idle after one
	// request each; 100 get their answer, the others are closed.
	conns := make([]net.Conn, 150)
	answered := make([]bool, len(conns))
	var wg sync.WaitGroup
	for i := range conns {
		conns[i] = dialFrom(t, attacker, webAddr)
	}
	for i, c := range conns {
		wg.Go(func() { answered[i] = keepAliveRequest(c, e.WebPort) })
	}
	wg.Wait()
	n := 0
	for _, ok := range answered {
		if ok {
			n++
		}
	}
	if n != 100 {
		t.Errorf("%d of 150 idle connections from one address were served, want 100 (the per-address cap)", n)
	}

	// The worker port: 50 connections that never speak; 30 are closed at
	// once, 20 wait for their hello window.
	var workerConns []net.Conn
	for range 50 {
		workerConns = append(workerConns, dialFrom(t, attacker, workerAddr))
	}
	refused := 0
	for _, c := range workerConns {
		if closedByPeer(c, 500*time.Millisecond) {
			refused++
		}
	}
	if refused != 30 {
		t.Errorf("%d of 50 silent connections to the worker port were closed at once, want 30 (over the per-address cap of 20)", refused)
	}

	// During the attack, the API answers another address at once, and a
	// real worker connects.
	start := time.Now()
	var masters struct {
		Masters []any `json:"masters"`
	}
	if code := e.get("/api/v2/masters", &masters); code != 200 || len(masters.Masters) != 1 {
		t.Errorf("GET /api/v2/masters during the attack: %d %v", code, masters)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the API took %s to answer during the attack", d)
	} else {
		t.Logf("GET /api/v2/masters during the attack: %s", d)
	}
	e.startWorker("w1", "secret")
	waitFor(t, "w1 connected during the attack", 30*time.Second, func() bool { return e.workerConnected("w1") })

	// Idle keep-alive connections are closed after idle_timeout (3s),
	// which frees their places.
	for i, c := range conns {
		if answered[i] && !closedByPeer(c, 20*time.Second) {
			t.Fatalf("an idle keep-alive connection is still open 20s after its answer (idle_timeout 3s)")
		}
	}
	waitFor(t, "a new connection from the attacker's address served again", 10*time.Second, func() bool {
		c := dialFrom(t, attacker, webAddr)
		defer c.Close()
		return keepAliveRequest(c, e.WebPort)
	})

	// Refusals are logged, sampled: 80 refusals, a few lines.
	log, err := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []string{"web port", "worker port"} {
		line := port + ": connection refused: too many connections from this address"
		if k := strings.Count(string(log), line); k < 1 || k > 3 {
			t.Errorf("%q logged %d times, want 1 to 3 (sampled)", line, k)
		}
	}
	if !strings.Contains(string(log), "remote="+attacker+":") {
		t.Errorf("the refusals do not name the attacker's address")
	}
}
