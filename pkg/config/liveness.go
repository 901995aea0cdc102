package config

import "time"

// Defaults of the worker port's liveness checks: a worker that died, or
// whose network was cut without a word, is found gone within
// DefaultKeepaliveInterval + DefaultKeepaliveTimeout (20s).
const (
	DefaultKeepaliveInterval = 10 * time.Second
	DefaultKeepaliveTimeout  = 10 * time.Second
	// MinKeepalive is the least keepalive_interval and keepalive_timeout:
	// gRPC pings no more often, and a shorter wait takes a loaded machine
	// for a dead one.
	MinKeepalive = time.Second
)

// grpcLiveness reads keepalive_interval and keepalive_timeout of
// [protocols.grpc] into g.
func (d *decoder) grpcLiveness(t *table, g *GRPC) {
	for _, k := range []struct {
		name string
		dst  *time.Duration
	}{{"keepalive_interval", &g.KeepaliveInterval}, {"keepalive_timeout", &g.KeepaliveTimeout}} {
		v, ok := t.duration(k.name)
		if !ok {
			continue
		}
		if v.Duration < MinKeepalive {
			t.errorf(k.name, "%s is too short: at least %s", v.Duration, MinKeepalive)
			continue
		}
		*k.dst = v.Duration
	}
}

// defaultGRPC is [protocols.grpc] when the file sets nothing in it.
func defaultGRPC() GRPC {
	return GRPC{Port: DefaultGRPCPort, KeepaliveInterval: DefaultKeepaliveInterval, KeepaliveTimeout: DefaultKeepaliveTimeout,
		Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWorkerPerAddress}, TLS: GRPCTLS{Mode: TLSOff}}
}
