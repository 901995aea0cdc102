package master

import (
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"syscall"

	"github.com/gbb-ci/gbb/internal/connlimit"
	"github.com/gbb-ci/gbb/pkg/config"
)

// Bounds of the derived max_connections of each port: a share of the
// descriptor limit (RLIMIT_NOFILE; Go raises the soft limit to the hard
// one at start), within bounds. What is left of the limit serves the
// store, logs, git pollers and outgoing reporters: with every port on,
// the shares sum to 7/8 of the limit (at 20,000: 10,000 + 5,000 + 1,250
// + 1,250).
const (
	webShare, workerShare = 2, 4 // web: a half of the limit; worker: a quarter
	webMin, webMax        = 64, 10000
	workerMin, workerMax  = 16, 5000
	bbShare               = 16 // each buildbot-worker port (pb, msgpack): a sixteenth
	bbMin, bbMax          = 16, 5000
)

// descriptorLimit is the process's RLIMIT_NOFILE, or 1024 when it cannot
// be read.
func descriptorLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || uint64(rl.Cur) == 0 {
		return 1024
	}
	return uint64(rl.Cur)
}

// derivedMax is a port's max_connections when the config leaves it zero.
func derivedMax(nofile uint64, share, lo, hi int) int {
	return int(min(max(nofile/uint64(share), uint64(lo)), uint64(hi)))
}

// listen listens on addr for the port called name, with l's caps; with
// evict (the worker port), max_connections caps the connections not yet
// logged in, and a new one over it closes one of them (connlimit's Evict).
func listen(name, addr string, l config.ConnLimits, share, lo, hi int, evict bool, log *slog.Logger) (*connlimit.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	total := l.MaxConnections
	if total == 0 {
		total = derivedMax(descriptorLimit(), share, lo, hi)
	}
	log.Info(name+": connection caps", "max_connections", total, "max_connections_per_address", l.MaxConnectionsPerAddress)
	return connlimit.New(lis, connlimit.Config{
		Name: name, Max: total, PerAddress: l.MaxConnectionsPerAddress, Logger: log, Evict: evict,
	}), nil
}

// grpcRestart says why going from old to cfg needs a restart, or "": the
// port, its address, caps and liveness, and whether it speaks TLS. A
// reconfig reloads the certificate, key and client CA files, applies new
// tls_names (tls = "auto" issues a new certificate), and moves between
// tls = "auto" and tls_cert_file (TLS stays on; the certificate's source
// changes).
func grpcRestart(old, cfg config.GRPC) string {
	if old.TLS.Enabled() != cfg.TLS.Enabled() {
		return "turning the worker port's TLS on or off"
	}
	old.TLS, cfg.TLS = config.GRPCTLS{}, config.GRPCTLS{}
	if !reflect.DeepEqual(old, cfg) {
		return "protocols.grpc (its port, interface, limits or keepalive)"
	}
	return ""
}
