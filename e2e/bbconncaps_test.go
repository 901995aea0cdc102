package e2e

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBBWorkerConnCaps: on each buildbot-worker port, a flood of silent
// connections from one address (127.0.0.3) is capped by
// max_connections_per_address (default 64); a second flood from another
// address (127.0.0.4) past max_connections connections not logged in
// closes the oldest of the address holding the most; a real
// buildbot-worker from a third address (127.0.0.1) then logs in, and
// master.log has the caps and the refusals (issue 20,
// probe item 3).
func TestBBWorkerConnCaps(t *testing.T) {
	t.Parallel()
	for _, p := range bbProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			e := newBBEnv(t, p.name)
			cfg := e.holdConfig(false)
			port := fmt.Sprintf("port = %d\n", e.BBPort)
			if !strings.Contains(cfg, port) {
				t.Fatalf("the config has no %q:\n%s", port, cfg)
			}
			cfg = strings.Replace(cfg, port, port+"max_connections = 100\n", 1)
			e.writeConfig(cfg)
			e.startMaster()
			e.waitLog(p.name+" port: connection caps", 1)
			if caps := regexp.MustCompile(p.name + ` port: connection caps"? max_connections=(\d+) max_connections_per_address=(\d+)`).FindStringSubmatch(e.masterLog()); caps == nil || caps[1] != "100" || caps[2] != "64" {
				t.Errorf("master.log's caps of the %s port: %q, want max_connections=100 max_connections_per_address=64", p.name, caps)
			}
			addr := fmt.Sprintf("127.0.0.1:%d", e.BBPort)
			flood := func(from string, n int) []net.Conn {
				conns := make([]net.Conn, n)
				for i := range conns {
					conns[i] = dialFrom(t, from, addr)
				}
				return conns
			}
			// ended returns the connections of conns the master closes
			// at once, and the others.
			ended := func(conns []net.Conn) (closed, open []net.Conn) {
				gone := make([]bool, len(conns))
				var wg sync.WaitGroup
				for i, c := range conns {
					wg.Go(func() { gone[i] = endedByPeer(c, 2*time.Second) })
				}
				wg.Wait()
				for i, c := range conns {
					if gone[i] {
						closed = append(closed, c)
					} else {
						open = append(open, c)
					}
				}
				return closed, open
			}

			// 100 from one address: 64 are let in.
			closed, open3 := ended(flood("127.0.0.3", 100))
			if len(closed) != 36 {
				t.Errorf("%d of 100 silent connections from one address were closed at once, want 36 (over max_connections_per_address)", len(closed))
			}
			// 50 from another: 114 not logged in, over max_connections
			// (100): the oldest 14 of 127.0.0.3's are closed, none of
			// 127.0.0.4's.
			conns4 := flood("127.0.0.4", 50)
			var wg sync.WaitGroup
			var closed3, closed4 []net.Conn
			wg.Go(func() { closed3, _ = ended(open3) })
			wg.Go(func() { closed4, _ = ended(conns4) })
			wg.Wait()
			if len(closed3) != 14 || len(closed4) != 0 {
				t.Errorf("past max_connections, %d of 127.0.0.3's %d and %d of 127.0.0.4's 50 were closed, want 14 and 0",
					len(closed3), len(open3), len(closed4))
			}

			// The floods still hold their 100: a real buildbot-worker
			// from another address logs in.
			e.startBBWorker("bb", "bbpass")
			waitFor(t, "bb connected during the flood", 60*time.Second, func() bool { return e.connected("bb") })

			// The port's log lines are sampled together (a few, then
			// one per 10 s): the refusals came first.
			log := e.masterLog()
			if line := p.name + " port: connection refused: too many connections from this address"; !regexp.MustCompile(regexp.QuoteMeta(line) + `"? remote=127\.0\.0\.3:`).MatchString(log) {
				t.Errorf("master.log has no %q naming 127.0.0.3", line)
			}
			if t.Failed() {
				for _, l := range strings.Split(log, "\n") {
					if strings.Contains(l, "port") {
						t.Log(l)
					}
				}
			}
		})
	}
}

// endedByPeer reports whether the peer closes c within d, after what it
// sends first (the PB port greets a connection), rather than leaving it
// open.
func endedByPeer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !errors.As(err, &ne) || !ne.Timeout()
	}
}
