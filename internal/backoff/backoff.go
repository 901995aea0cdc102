package backoff

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config sets a Limiter's brake.
type Config struct {
	// Burst is how many attempts in a row a key may fail before it must
	// wait; zero means 10.
	Burst int
	// Every is how often one failure is forgiven, and so how often a key
	// that used its burst may try again; zero means 3s.
	Every time.Duration
	// MaxKeys bounds how many keys are tracked at once; zero means 10,000.
	// When the table is full, the key used least recently is forgotten,
	// which gives it a fresh burst (never a longer wait).
	MaxKeys int
}

// Limiter tracks failed attempts by key. It is safe for concurrent use.
type Limiter struct {
	burst   int
	every   time.Duration
	maxKeys int

	mu   sync.Mutex
	keys map[string]*list.Element // guarded by mu; of *entry
	lru  *list.List               // guarded by mu; of *entry, most recently used at the front
}

type entry struct {
	key      string
	lim      *rate.Limiter // a token per failure the key may still make
	inflight int           // attempts begun and not finished, each counted as a failure meanwhile
}

// New returns a Limiter with cfg's brake; it starts no goroutine.
func New(cfg Config) *Limiter {
	l := &Limiter{burst: cfg.Burst, every: cfg.Every, maxKeys: cfg.MaxKeys, keys: map[string]*list.Element{}, lru: list.New()}
	if l.burst <= 0 {
		l.burst = 10
	}
	if l.every <= 0 {
		l.every = 3 * time.Second
	}
	if l.maxKeys <= 0 {
		l.maxKeys = 10_000
	}
	return l
}

// Attempt is an attempt that Begin let through. Until it is finished, by
// Failed or Succeeded, it counts as a failure.
type Attempt struct {
	l *Limiter
	e *entry
}

// Begin starts an attempt by key; the caller must finish it with Failed or
// Succeeded. It returns ok false, and how long key must wait before its
// next attempt, when key has failed too often (attempts still running
// counted as failures): the caller then refuses the attempt without
// checking it.
func (l *Limiter) Begin(key string) (a Attempt, wait time.Duration, ok bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(key)
	short := float64(e.inflight+1) - e.lim.TokensAt(now)
	if short > 0 {
		return Attempt{}, time.Duration(short * float64(l.every)), false
	}
	e.inflight++
	return Attempt{l: l, e: e}, 0, true
}

// Failed counts the attempt as a failure of its key.
func (a Attempt) Failed() {
	if a.l == nil {
		return
	}
	now := time.Now()
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	a.e.inflight--
	// The key's entry may have been pushed out of the table meanwhile:
	// count the failure on the one it has now.
	a.l.entry(a.e.key).lim.ReserveN(now, 1)
}

// Succeeded ends the attempt without counting it. A key with no failures
// left to forgive is forgotten.
func (a Attempt) Succeeded() {
	if a.l == nil {
		return
	}
	now := time.Now()
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	a.e.inflight--
	if el, ok := a.l.keys[a.e.key]; ok {
		if e := el.Value.(*entry); e.inflight == 0 && e.lim.TokensAt(now) >= float64(a.l.burst) {
			a.l.lru.Remove(el)
			delete(a.l.keys, e.key)
		}
	}
}

// entry returns key's entry, made if needed, as the most recently used.
// l.mu must be held.
func (l *Limiter) entry(key string) *entry {
	if el, ok := l.keys[key]; ok {
		l.lru.MoveToFront(el)
		return el.Value.(*entry)
	}
	for l.lru.Len() >= l.maxKeys {
		old := l.lru.Back()
		l.lru.Remove(old)
		delete(l.keys, old.Value.(*entry).key)
	}
	e := &entry{key: key, lim: rate.NewLimiter(rate.Every(l.every), l.burst)}
	l.keys[key] = l.lru.PushFront(e)
	return e
}

// Len returns how many keys the table holds.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// AddrKey returns the key of a client at addr (a host:port such as
// http.Request.RemoteAddr, or a bare IP): its IP address, an IPv4-mapped
// IPv6 address as IPv4, and an IPv6 address as its /64, which one host or
// one site usually holds whole. Anything that is not an IP is its own key.
func AddrKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return addr
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
