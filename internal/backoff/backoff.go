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
	// which gives it a fresh burst (never a longer wait); but see
	// ShareOverflow.
	MaxKeys int
	// ShareOverflow changes what a full table does with a new key: it
	// forgets the keys that have nothing left to forgive (as good as new;
	// it looks for them at most once per Every), and when none has, the
	// new key shares one bucket with every other key the table has no
	// room for, instead of pushing a key out. An attacker with more
	// addresses than MaxKeys is then braked as one, rather than given a
	// fresh burst for each address it recycles; the price is that while
	// the table is full of failing keys, a new key waits with the
	// attacker. False never makes a key wait for another key's failures.
	// Keys that succeeded lately (see Succeeded) are spared that wait: a
	// full table makes room for them by forgetting the key used least
	// recently.
	ShareOverflow bool
	// MaxSucceeded bounds how many keys that succeeded lately are
	// remembered for ShareOverflow; zero means MaxKeys/4.
	MaxSucceeded int
}

// Limiter tracks failed attempts by key. It is safe for concurrent use.
type Limiter struct {
	burst   int
	every   time.Duration
	maxKeys int
	share   bool // Config.ShareOverflow

	mu       sync.Mutex
	keys     map[string]*list.Element // guarded by mu; of *entry
	lru      *list.List               // guarded by mu; of *entry, most recently used at the front
	overflow *entry                   // guarded by mu; with share, of the keys a full table has no room for
	swept    time.Time                // guarded by mu; with share, when a full table was last swept of idle keys
	// With share, the keys that succeeded lately, most recent at the
	// front, at most maxGood.
	good    map[string]*list.Element // guarded by mu; of string
	goodLRU *list.List               // guarded by mu
	maxGood int
}

type entry struct {
	key      string
	lim      *rate.Limiter // a token per failure the key may still make
	inflight int           // attempts begun and not finished, each counted as a failure meanwhile
}

// New returns a Limiter with cfg's brake; it starts no goroutine.
func New(cfg Config) *Limiter {
	l := &Limiter{burst: cfg.Burst, every: cfg.Every, maxKeys: cfg.MaxKeys, share: cfg.ShareOverflow, keys: map[string]*list.Element{}, lru: list.New()}
	if l.burst <= 0 {
		l.burst = 10
	}
	if l.every <= 0 {
		l.every = 3 * time.Second
	}
	if l.maxKeys <= 0 {
		l.maxKeys = 10_000
	}
	l.overflow = l.newEntry("")
	l.good, l.goodLRU, l.maxGood = map[string]*list.Element{}, list.New(), cfg.MaxSucceeded
	if l.maxGood <= 0 {
		l.maxGood = max(1, l.maxKeys/4)
	}
	return l
}

// Attempt is an attempt that Begin let through. Until it is finished, by
// Failed or Succeeded, it counts as a failure.
type Attempt struct {
	l   *Limiter
	key string
	e   *entry // key's entry when the attempt began
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
	e := l.entry(key, now)
	short := float64(e.inflight+1) - e.lim.TokensAt(now)
	if short > 0 {
		return Attempt{}, time.Duration(short * float64(l.every)), false
	}
	e.inflight++
	return Attempt{l: l, key: key, e: e}, 0, true
}

// Failed counts the attempt as a failure of its key. It reports whether
// the failure was counted on the bucket shared by the keys a full table
// has no room for (only with Config.ShareOverflow).
func (a Attempt) Failed() (shared bool) {
	if a.l == nil {
		return false
	}
	now := time.Now()
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	a.e.inflight--
	// The key's entry may have been pushed out of the table meanwhile:
	// count the failure on the one it has now.
	e := a.l.entry(a.key, now)
	e.lim.ReserveN(now, 1)
	return e == a.l.overflow
}

// Succeeded ends the attempt without counting it. A key with no failures
// left to forgive is forgotten; with ShareOverflow, the key is remembered
// as one that succeeded.
func (a Attempt) Succeeded() {
	if a.l == nil {
		return
	}
	now := time.Now()
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	a.e.inflight--
	if a.l.share && a.key != "" {
		if el, ok := a.l.good[a.key]; ok {
			a.l.goodLRU.MoveToFront(el)
		} else {
			a.l.good[a.key] = a.l.goodLRU.PushFront(a.key)
			for a.l.goodLRU.Len() > a.l.maxGood {
				delete(a.l.good, a.l.goodLRU.Remove(a.l.goodLRU.Back()).(string))
			}
		}
	}
	if el, ok := a.l.keys[a.key]; ok && a.l.idle(el.Value.(*entry), now) {
		a.l.forget(el)
	}
}

// entry returns key's entry, made if needed, as the most recently used;
// or, with share and a full table, the overflow entry. l.mu must be held.
func (l *Limiter) entry(key string, now time.Time) *entry {
	if el, ok := l.keys[key]; ok {
		l.lru.MoveToFront(el)
		return el.Value.(*entry)
	}
	if l.share && l.lru.Len() >= l.maxKeys {
		if now.Sub(l.swept) >= l.every {
			l.swept = now
			for el := l.lru.Back(); el != nil; {
				prev := el.Prev()
				if l.idle(el.Value.(*entry), now) {
					l.forget(el)
				}
				el = prev
			}
		}
		if _, good := l.good[key]; !good && l.lru.Len() >= l.maxKeys {
			return l.overflow
		}
	}
	for l.lru.Len() >= l.maxKeys {
		l.forget(l.lru.Back())
	}
	e := l.newEntry(key)
	l.keys[key] = l.lru.PushFront(e)
	return e
}

func (l *Limiter) newEntry(key string) *entry {
	return &entry{key: key, lim: rate.NewLimiter(rate.Every(l.every), l.burst)}
}

// idle reports whether e has nothing to forgive and nothing running, so
// that forgetting it changes nothing. l.mu must be held.
func (l *Limiter) idle(e *entry, now time.Time) bool {
	return e.inflight == 0 && e.lim.TokensAt(now) >= float64(l.burst)
}

// forget drops el's key from the table. l.mu must be held.
func (l *Limiter) forget(el *list.Element) {
	l.lru.Remove(el)
	delete(l.keys, el.Value.(*entry).key)
}

// Len returns how many keys the table holds (the shared bucket of
// ShareOverflow is not one).
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
