package connlimit

import (
	"container/list"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/internal/logsample"
)

// Config is the caps of a Listener.
type Config struct {
	// Name names the port in log lines ("web port", "worker port").
	Name string
	// Max is the most connections open at once; zero means no cap.
	Max int
	// PerAddress is the most connections open at once from one source
	// address (an IPv4 address, or an IPv6 /64); zero means no cap.
	PerAddress int
	// Logger: nil means discard.
	Logger *slog.Logger
	// LogEvery is the interval of the sampled refusal lines after the
	// first few; zero means 10s.
	LogEvery time.Duration
	// Evict turns Max into a cap on the connections not yet
	// authenticated (see Authenticated), and makes a new connection over
	// it evict one of them instead of being refused: the oldest of the
	// source address holding the most (one of them at random on a tie).
	// So idle connections from a few addresses cannot lock out a client
	// whose handshake takes milliseconds. Authenticated connections do
	// not count against Max (their number is bounded by their owner:
	// the workers of the config). PerAddress still refuses.
	Evict bool
}

// Listener is a net.Listener that closes each accepted connection over a
// cap at once, and logs the refusals sampled. It is safe for concurrent
// use.
type Listener struct {
	net.Listener
	cfg    Config
	log    *slog.Logger
	sample *logsample.Sampler

	mu      sync.Mutex
	total   int                  // guarded by mu; connections open
	byAddr  map[netip.Prefix]int // guarded by mu; connections open by source; no zero entries
	pending int                  // guarded by mu; with Evict, connections open and not authenticated
	// With Evict, the connections not authenticated by source, oldest
	// first, and the sources by how many they hold (no empty sets), the
	// most being top.
	queues  map[netip.Prefix]*list.List       // guarded by mu; of *conn; no empty lists
	buckets map[int]map[netip.Prefix]struct{} // guarded by mu
	top     int                               // guarded by mu
}

// New returns lis with cfg's caps. With both caps zero it still counts.
func New(lis net.Listener, cfg Config) *Listener {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 10 * time.Second
	}
	return &Listener{
		Listener: lis,
		cfg:      cfg,
		log:      log,
		sample:   logsample.New(cfg.LogEvery, 3),
		byAddr:   make(map[netip.Prefix]int),
		queues:   make(map[netip.Prefix]*list.List),
		buckets:  make(map[int]map[netip.Prefix]struct{}),
	}
}

// Source is the key a connection from addr counts under: its IPv4
// address, or the /64 of its IPv6 address (one host's share).
func Source(addr net.Addr) netip.Prefix {
	var ip netip.Addr
	if ta, ok := addr.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
	} else if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// Accept returns the next connection under the caps; the ones over a cap
// are closed (and logged, sampled) without being returned. With Evict, a
// connection over Max closes another instead (logged, sampled).
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := Source(c.RemoteAddr())
		lc := &conn{Conn: c, l: l, src: src}
		var victim *conn
		l.mu.Lock()
		why := ""
		switch {
		case l.cfg.Evict && l.cfg.PerAddress > 0 && l.byAddr[src] >= l.cfg.PerAddress:
			why = "too many connections from this address"
		case l.cfg.Evict:
			if l.cfg.Max > 0 && l.pending >= l.cfg.Max {
				victim = l.victimLocked()
				l.unqueueLocked(victim)
			}
		case l.cfg.Max > 0 && l.total >= l.cfg.Max:
			why = "too many connections"
		case l.cfg.PerAddress > 0 && l.byAddr[src] >= l.cfg.PerAddress:
			why = "too many connections from this address"
		}
		if why == "" {
			l.total++
			l.byAddr[src]++
			if l.cfg.Evict {
				l.queueLocked(lc)
			}
		}
		total, fromAddr, pending := l.total, l.byAddr[src], l.pending
		l.mu.Unlock()
		if victim != nil {
			// Its owner still closes it (and so releases its count).
			victim.Conn.Close()
			l.sample.Log(l.log, slog.LevelWarn, l.cfg.Name+": closed a connection not yet authenticated to make room for a new one",
				"closed_remote", victim.RemoteAddr().String(), "age", time.Since(victim.since).Round(time.Millisecond),
				"new_remote", c.RemoteAddr().String(), "unauthenticated", pending, "max", l.cfg.Max)
		}
		if why == "" {
			return lc, nil
		}
		c.Close()
		l.sample.Log(l.log, slog.LevelWarn, l.cfg.Name+": connection refused: "+why,
			"remote", c.RemoteAddr().String(), "open", total, "open_from_address", fromAddr,
			"max", l.cfg.Max, "max_per_address", l.cfg.PerAddress)
	}
}

// queueLocked adds c to the connections not authenticated.
func (l *Listener) queueLocked(c *conn) {
	c.since = time.Now()
	q := l.queues[c.src]
	if q == nil {
		q = list.New()
		l.queues[c.src] = q
	}
	c.elem = q.PushBack(c)
	l.pending++
	l.rebucketLocked(c.src, q.Len()-1, q.Len())
}

// unqueueLocked removes c from the connections not authenticated, if it
// is there, and says whether it was.
func (l *Listener) unqueueLocked(c *conn) bool {
	if c.elem == nil {
		return false
	}
	q := l.queues[c.src]
	q.Remove(c.elem)
	c.elem = nil
	l.pending--
	l.rebucketLocked(c.src, q.Len()+1, q.Len())
	if q.Len() == 0 {
		delete(l.queues, c.src)
	}
	return true
}

// rebucketLocked moves src from the bucket of sources holding from
// connections not authenticated to the one of those holding to.
func (l *Listener) rebucketLocked(src netip.Prefix, from, to int) {
	if b := l.buckets[from]; b != nil {
		delete(b, src)
		if len(b) == 0 {
			delete(l.buckets, from)
		}
	}
	if to > 0 {
		b := l.buckets[to]
		if b == nil {
			b = make(map[netip.Prefix]struct{})
			l.buckets[to] = b
		}
		b[src] = struct{}{}
		l.top = max(l.top, to)
	}
	for l.top > 0 && l.buckets[l.top] == nil {
		l.top--
	}
}

// victimLocked is the connection to evict: the oldest not authenticated
// of a source holding the most.
func (l *Listener) victimLocked() *conn {
	for src := range l.buckets[l.top] { // a random one of them
		return l.queues[src].Front().Value.(*conn)
	}
	panic("connlimit: no connection to evict with the cap reached")
}

// Authenticated marks c, a connection this package's Listener returned (or
// one wrapping it, through NetConn methods), as authenticated: with
// Evict, it no longer counts against Max and is never evicted. It does
// nothing for other connections.
func Authenticated(c net.Conn) {
	for c != nil {
		if lc, ok := c.(*conn); ok {
			lc.l.mu.Lock()
			lc.l.unqueueLocked(lc)
			lc.l.mu.Unlock()
			return
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = nc.NetConn()
	}
}

// Open returns how many connections are open, in total and from src.
func (l *Listener) Open(src netip.Prefix) (total, fromSrc int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.byAddr[src]
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[c.src]--; l.byAddr[c.src] <= 0 {
		delete(l.byAddr, c.src)
	}
	l.unqueueLocked(c)
}

// conn is an accepted connection, counted until its first Close.
type conn struct {
	net.Conn
	l     *Listener
	src   netip.Prefix
	since time.Time     // when it was accepted, with Evict
	elem  *list.Element // guarded by l.mu; in l.queues while not authenticated, with Evict
	once  sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.release(c) })
	return c.Conn.Close()
}

// CloseWrite shuts down the writing side of a TCP connection, as
// net/http does to let a client read an error before the connection ends.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
