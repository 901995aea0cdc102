package testproxy

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards each connection accepted on its loopback address to
// upstream, over a connection of its own. Connections are named by the
// local port of that upstream side: the port the server sees the client
// at (PostgreSQL's pg_stat_activity.client_port).
type Proxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
	dropped  atomic.Int64

	mu     sync.Mutex
	pairs  map[int]*pair // guarded by mu; by the upstream side's local port
	closed bool          // guarded by mu
	all    bool          // guarded by mu; FreezeAll was called
}

type pair struct {
	client, server net.Conn
	frozen         chan struct{} // closed by Freeze
	freeze         sync.Once
}

// ForURL starts a proxy to the host of rawURL (a database's URL, say) as
// New does, and returns it with rawURL naming the proxy instead.
func ForURL(t testing.TB, rawURL string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p := New(t, u.Host)
	via := *u
	via.Host = p.Addr()
	return p, via.String()
}

// New starts a proxy to upstream ("host:port") on 127.0.0.1, closed when
// the test ends (or by Close).
func New(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, upstream: upstream, pairs: map[int]*pair{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address, "127.0.0.1:port": connect there instead of
// to upstream.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Freeze freezes the connection whose upstream side has local port port:
// from now on what either side sends is read and dropped, and neither
// side is closed until the proxy is. It fails the test when no connection
// through the proxy has that port.
func (p *Proxy) Freeze(t testing.TB, port int) {
	t.Helper()
	p.mu.Lock()
	pp, ok := p.pairs[port]
	p.mu.Unlock()
	if !ok {
		t.Fatalf("testproxy: no proxied connection from port %d", port)
	}
	pp.freeze.Do(func() { close(pp.frozen) })
}

// FreezeAll freezes every connection through the proxy, as Freeze does,
// and every connection it accepts from now on: as a firewall that drops
// every packet between the client and the server (a new connection gets
// no answer either).
func (p *Proxy) FreezeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.all = true
	for _, pp := range p.pairs {
		pp.freeze.Do(func() { close(pp.frozen) })
	}
}

// Proxied says whether the connection the server sees from port port
// came through the proxy.
func (p *Proxy) Proxied(port int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.pairs[port]
	return ok
}

// Dropped is the number of bytes that frozen connections have read and
// not forwarded.
func (p *Proxy) Dropped() int64 { return p.dropped.Load() }

// Close closes the listener and every connection, frozen or not, and
// returns once the proxy's goroutines have ended. It may be called more
// than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for _, pp := range p.pairs {
		pp.client.Close()
		pp.server.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
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
		pp := &pair{client: c, server: u, frozen: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.pairs[u.LocalAddr().(*net.TCPAddr).Port] = pp
		if p.all {
			close(pp.frozen)
		}
		p.mu.Unlock()
		p.wg.Go(func() { p.pump(pp, c, u) })
		p.wg.Go(func() { p.pump(pp, u, c) })
	}
}

// pump copies from a to b until either ends. Once the pair is frozen it
// drops what it reads and closes nothing: only Close ends a frozen pair.
func (p *Proxy) pump(pp *pair, a, b net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := a.Read(buf)
		select {
		case <-pp.frozen:
			p.dropped.Add(int64(n))
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
