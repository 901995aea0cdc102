package connlimit

import (
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
}

// Listener is a net.Listener that closes each accepted connection over a
// cap at once, and logs the refusals sampled. It is safe for concurrent
// use.
type Listener struct {
	net.Listener
	cfg    Config
	log    *slog.Logger
	sample *logsample.Sampler

	mu     sync.Mutex
	total  int                  // guarded by mu; connections open
	byAddr map[netip.Prefix]int // guarded by mu; connections open by source; no zero entries
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
// are closed (and logged, sampled) without being returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := Source(c.RemoteAddr())
		l.mu.Lock()
		why := ""
		switch {
		case l.cfg.Max > 0 && l.total >= l.cfg.Max:
			why = "too many connections"
		case l.cfg.PerAddress > 0 && l.byAddr[src] >= l.cfg.PerAddress:
			why = "too many connections from this address"
		default:
			l.total++
			l.byAddr[src]++
		}
		total, fromAddr := l.total, l.byAddr[src]
		l.mu.Unlock()
		if why == "" {
			return &conn{Conn: c, l: l, src: src}, nil
		}
		c.Close()
		l.sample.Log(l.log, slog.LevelWarn, l.cfg.Name+": connection refused: "+why,
			"remote", c.RemoteAddr().String(), "open", total, "open_from_address", fromAddr,
			"max", l.cfg.Max, "max_per_address", l.cfg.PerAddress)
	}
}

// Open returns how many connections are open, in total and from src.
func (l *Listener) Open(src netip.Prefix) (total, fromSrc int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.byAddr[src]
}

func (l *Listener) release(src netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[src]--; l.byAddr[src] <= 0 {
		delete(l.byAddr, src)
	}
}

// conn is an accepted connection, counted until its first Close.
type conn struct {
	net.Conn
	l    *Listener
	src  netip.Prefix
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.release(c.src) })
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
