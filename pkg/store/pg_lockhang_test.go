package store

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// hangProxy is a TCP proxy on loopback in front of the test's PostgreSQL
// that can freeze one connection: it stops forwarding either way and
// keeps both sides open, as a proxy, NAT entry or firewall that stopped
// passing the connection's packets does. The server sees a session that
// is idle, not gone.
type hangProxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu     sync.Mutex
	pairs  map[int]*proxyPair // by the upstream side's local port, which the server sees as client_port
	closed bool
}

type proxyPair struct {
	client, server net.Conn
	frozen         chan struct{}
	freeze         sync.Once
}

func newHangProxy(t *testing.T, upstream string) *hangProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangProxy{ln: ln, upstream: upstream, pairs: map[int]*proxyPair{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *hangProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		pair := &proxyPair{client: c, server: u, frozen: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.pairs[u.LocalAddr().(*net.TCPAddr).Port] = pair
		p.mu.Unlock()
		p.wg.Go(func() { pair.pump(c, u) })
		p.wg.Go(func() { pair.pump(u, c) })
	}
}

// pump copies from a to b until either ends. Once the pair is frozen it
// drops what it reads and closes nothing: only the proxy's close ends a
// frozen pair.
func (pp *proxyPair) pump(a, b net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := a.Read(buf)
		select {
		case <-pp.frozen:
			if err != nil {
				return
			}
			continue
		default:
		}
		if n > 0 {
			if _, werr := b.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			a.Close()
			b.Close()
			return
		}
	}
}

// freezePort freezes the connection whose server side has local port
// port.
func (p *hangProxy) freezePort(t *testing.T, port int) {
	t.Helper()
	p.mu.Lock()
	pair, ok := p.pairs[port]
	p.mu.Unlock()
	if !ok {
		t.Fatalf("no proxied connection from port %d", port)
	}
	pair.freeze.Do(func() { close(pair.frozen) })
}

func (p *hangProxy) close() {
	p.mu.Lock()
	p.closed = true
	for _, pair := range p.pairs {
		pair.client.Close()
		pair.server.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// TestLockLeaderHangs: master A holds the lock through a proxy that then
// freezes the lock's connection without closing it, so the server still
// sees A's session, idle, holding the lock. A learns that it lost the
// lock, and its store ends that session on the server, so that master B
// takes the lock within seconds rather than never.
func TestLockLeaderHangs(t *testing.T) {
	t.Parallel()
	dbURL := pg.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newHangProxy(t, u.Host)
	viaProxy := *u
	viaProxy.Host = proxy.ln.Addr().String()

	a, err := OpenPG(viaProxy.String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPG(dbURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	la, ok, err := a.Lock("leader")
	if err != nil || !ok {
		t.Fatalf("A's Lock = %v, %v", ok, err)
	}
	if _, ok, err := b.Lock("leader"); err != nil || ok {
		t.Fatalf("B's Lock while A holds it = %v, %v; want not granted", ok, err)
	}

	// Freeze the connection of A's lock's session.
	admin, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	pid := la.(*pgLock).pid
	var port int
	if err := admin.QueryRow(context.Background(), "SELECT client_port FROM pg_stat_activity WHERE pid = $1", pid).Scan(&port); err != nil {
		t.Fatalf("A's lock session (backend %d): %v", pid, err)
	}
	frozeAt := time.Now()
	proxy.freezePort(t, port)

	select {
	case <-la.Lost():
		t.Logf("A lost the lock %s after the freeze", time.Since(frozeAt).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("A's lock not lost 30s after its connection froze")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		lb, ok, err := b.Lock("leader")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Logf("B took the lock %s after the freeze", time.Since(frozeAt).Round(time.Millisecond))
			defer lb.Unlock()
			break
		}
		if time.Now().After(deadline) {
			var n int
			admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
			t.Fatalf("B has not taken the lock %s after A's connection froze (A's session alive on the server: %v)", time.Since(frozeAt), n == 1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A's master stops leading: Unlock after the loss returns, without error.
	if err := la.Unlock(); err != nil {
		t.Errorf("A's Unlock after the loss: %v", err)
	}
}

// TestLockSessionNoticesVanishedClient: the lock's session asks the
// server to notice a vanished client within seconds (keepalives and a
// user timeout), where the system's defaults take hours.
func TestLockSessionNoticesVanishedClient(t *testing.T) {
	t.Parallel()
	st, err := OpenPG(pg.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, ok, err := st.Lock("leader")
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}
	defer l.Unlock()
	conn := l.(*pgLock).conn
	got := map[string]string{}
	for _, k := range []string{"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"} {
		var v string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", k).Scan(&v); err != nil {
			t.Fatal(err)
		}
		got[k] = v
	}
	want := map[string]string{"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
		"tcp_keepalives_count": "3", "tcp_user_timeout": "15000"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lock session's settings = %v, want %v", got, want)
	}
}
