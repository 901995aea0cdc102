package config

import "time"

// ConnLimits caps the connections of a port ([protocols.grpc],
// [protocols.pb], [protocols.msgpack] and [www]),
// so that idle or half-open connections cannot use up the master's file
// descriptors. A connection over a cap is closed at once and logged
// (sampled). See the README's "Connection caps".
type ConnLimits struct {
	// MaxConnections is max_connections: the most connections open at
	// once on the port. Zero (the default) means derived at start from
	// the master's descriptor limit (RLIMIT_NOFILE): a half of it for the
	// web port, a quarter for the worker port and a sixteenth for each
	// buildbot-worker port, each within bounds (see pkg/master).
	MaxConnections int
	// MaxConnectionsPerAddress is max_connections_per_address: the most
	// connections open at once from one source address (an IPv4 address,
	// an IPv6 /64). Default DefaultWebPerAddress on the web port,
	// DefaultWorkerPerAddress on the worker ports. Zero means no
	// per-address cap: behind a proxy (nginx in the FreeBSD jails) every
	// web connection comes from the proxy's address, so set it to zero
	// there and let the proxy cap each client (nginx's limit_conn).
	MaxConnectionsPerAddress int
}

// Defaults of the per-address caps. A team behind one NAT shares an
// address: on the web port each browser holds a live stream and a few
// requests at once (about 7), so 256 lets some 35 people in; on the worker
// port each worker holds one connection.
const (
	DefaultWebPerAddress    = 256
	DefaultWorkerPerAddress = 64
)

// DefaultIdleTimeout is the default of [www] idle_timeout.
const DefaultIdleTimeout = 60 * time.Second

// connLimits reads max_connections and max_connections_per_address of t
// into l.
func (d *decoder) connLimits(t *table, l *ConnLimits) {
	for _, k := range []struct {
		name string
		dst  *int
	}{{"max_connections", &l.MaxConnections}, {"max_connections_per_address", &l.MaxConnectionsPerAddress}} {
		n, ok := t.integer(k.name)
		if !ok {
			continue
		}
		if n < 0 || n > 1<<24 {
			t.errorf(k.name, "%d is out of range: 0 to %d", n, 1<<24)
			continue
		}
		*k.dst = int(n)
	}
}

// idleTimeout reads [www] idle_timeout into w.
func (d *decoder) idleTimeout(t *table, w *WWW) {
	v, ok := t.duration("idle_timeout")
	if !ok {
		return
	}
	if v.Duration < time.Second {
		t.errorf("idle_timeout", "%s is too short: at least 1s", v.Duration)
		return
	}
	w.IdleTimeout = v.Duration
}
