package protocol

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the brake on password guessing (ServerConfig.LoginBurst and
// LoginRefill) and the size of its address table.
const (
	defaultLoginBurst  = 10
	defaultLoginRefill = 6 * time.Second
	// brakeAddrs bounds the brake's table: past it, addresses whose
	// bucket is full are forgotten (they are as new), and if none is,
	// the addresses not in the table share one bucket.
	brakeAddrs = 4096
)

// loginBrake brakes password guessing on the worker port, per source
// address: each address has a bucket of loginBurst failed logins, refilled
// one per loginRefill; an address with an empty bucket is refused before
// its password is checked until a token is back. A worker from another
// address is not slowed by it.
type loginBrake struct {
	burst  int
	refill time.Duration

	mu       sync.Mutex
	addrs    map[netip.Prefix]*rate.Limiter // guarded by mu; at most brakeAddrs
	overflow *rate.Limiter                  // shared by addresses the table has no room for
}

func newLoginBrake(burst int, refill time.Duration) *loginBrake {
	return &loginBrake{
		burst:    burst,
		refill:   refill,
		addrs:    make(map[netip.Prefix]*rate.Limiter),
		overflow: rate.NewLimiter(rate.Every(refill), burst),
	}
}

// limiter returns src's bucket, making room for it if needed; shared
// reports whether it is the overflow bucket.
func (b *loginBrake) limiter(src netip.Prefix, create bool, now time.Time) (lim *rate.Limiter, shared bool) {
	if l := b.addrs[src]; l != nil {
		return l, false
	}
	if !create {
		return nil, false
	}
	if len(b.addrs) >= brakeAddrs {
		for a, l := range b.addrs {
			if l.TokensAt(now) >= float64(b.burst) {
				delete(b.addrs, a)
			}
		}
	}
	if len(b.addrs) >= brakeAddrs {
		return b.overflow, true
	}
	l := rate.NewLimiter(rate.Every(b.refill), b.burst)
	b.addrs[src] = l
	return l, false
}

// wait reports how long src must wait before its next login is checked;
// zero means now.
func (b *loginBrake) wait(src netip.Prefix) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	l, _ := b.limiter(src, false, now)
	if l == nil && len(b.addrs) >= brakeAddrs {
		l = b.overflow
	}
	if l == nil || l.TokensAt(now) >= 1 {
		return 0
	}
	r := l.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return d
}

// failed records a failed login from src; shared reports whether src
// shares the overflow bucket (the table is full).
func (b *loginBrake) failed(src netip.Prefix) (shared bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	l, shared := b.limiter(src, true, now)
	l.AllowN(now, 1)
	return shared
}
