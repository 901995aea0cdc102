package config

import (
	"net"
	"strconv"
)

// The ports buildbot's own workers dial, as buildbot's defaults.
const (
	DefaultPBPort      = 9989
	DefaultMsgpackPort = 9990
)

// The worker protocols a [[workers]] table's protocol may name.
const (
	ProtocolGBB     = "gbb"     // gbb-worker, over [protocols.grpc]
	ProtocolPB      = "pb"      // buildbot-worker over Perspective Broker, [protocols.pb]
	ProtocolMsgpack = "msgpack" // buildbot-worker over msgpack_experimental_v7, [protocols.msgpack]
)

// BBProtocol is [protocols.pb] or [protocols.msgpack]: a port buildbot's
// own workers (buildbot-worker, unchanged) log in on. Its liveness checks
// are [protocols.grpc]'s keepalive_interval and keepalive_timeout, so a
// lost buildbot-worker is found gone as fast as a gbb-worker.
type BBProtocol struct {
	// Enabled is set when the file has the table; the master then listens.
	// Without the table, the whole BBProtocol is zero.
	Enabled bool
	// Port is port; default DefaultPBPort (9989) or DefaultMsgpackPort
	// (9990); 0 picks a free port (for tests).
	Port int
	// Interface is interface: the address to listen on; "" (the default)
	// means all addresses.
	Interface string
	// Limits are max_connections and max_connections_per_address, as
	// [protocols.grpc]'s: max_connections caps the connections not yet
	// logged in (zero: derived from the descriptor limit, see
	// pkg/master), max_connections_per_address those of one address
	// (default DefaultWorkerPerAddress; zero: no cap).
	Limits ConnLimits
	Line   int // line of the table, for messages
}

// Addr returns the address to listen on, as net.Listen takes it.
func (p BBProtocol) Addr() string { return net.JoinHostPort(p.Interface, strconv.Itoa(p.Port)) }

// bbProtocol reads [protocols.NAME] for a buildbot-worker protocol.
func (d *decoder) bbProtocol(p *table, name string, port int) BBProtocol {
	t, ok := p.sub(name)
	if !ok {
		return BBProtocol{}
	}
	b := BBProtocol{Enabled: true, Port: port, Line: t.line(),
		Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWorkerPerAddress}}
	t.port("port", &b.Port)
	b.Interface, _ = t.str("interface")
	d.connLimits(t, &b.Limits)
	t.done()
	return b
}

// checkPorts refuses two listeners of the master on one port: [protocols.grpc],
// [protocols.pb], [protocols.msgpack] and [www]. Port 0 (a free port) never
// clashes, nor do two different interfaces.
func (d *decoder) checkPorts(c *Config) {
	type listener struct {
		key   keyPath
		iface string
		port  int
	}
	proto := keyPath{}.key("protocols")
	// The buildbot-worker ports come last: a clash is reported on them.
	ls := []listener{{proto.key("grpc").key("port"), c.Protocols.GRPC.Interface, c.Protocols.GRPC.Port},
		{keyPath{}.key("www").key("port"), c.WWW.Interface, c.WWW.Port}}
	if c.Protocols.PB.Enabled {
		ls = append(ls, listener{proto.key("pb").key("port"), c.Protocols.PB.Interface, c.Protocols.PB.Port})
	}
	if c.Protocols.Msgpack.Enabled {
		ls = append(ls, listener{proto.key("msgpack").key("port"), c.Protocols.Msgpack.Interface, c.Protocols.Msgpack.Port})
	}
	for i, a := range ls {
		for _, b := range ls[:i] {
			if a.port == 0 || a.port != b.port || (a.iface != b.iface && a.iface != "" && b.iface != "") {
				continue
			}
			hint := ""
			if a.key.String() == "protocols.pb.port" && b.key.String() == "protocols.grpc.port" {
				hint = " (buildbot-workers dial 9989 by default: give [protocols.grpc] another port, e.g. 9999, and tell the gbb-workers)"
			}
			d.errorAt(a.key, a.key, "port %d is also %s%s", a.port, b.key, hint)
		}
	}
}

// workerProtocol reads a worker's protocol: the one protocol it may log in
// with; "" (the default) means any.
func (d *decoder) workerProtocol(t *table, w *Worker) {
	if !t.has("protocol") {
		return
	}
	if p, ok := t.oneOf("protocol", "worker protocol", ProtocolGBB, ProtocolPB, ProtocolMsgpack); ok {
		w.Protocol = p
	}
}

// checkWorkerProtocols refuses a worker bound to a buildbot-worker
// protocol whose port the master does not open.
func (d *decoder) checkWorkerProtocols(c *Config) {
	for i, w := range c.Workers {
		var on bool
		switch w.Protocol {
		case ProtocolPB:
			on = c.Protocols.PB.Enabled
		case ProtocolMsgpack:
			on = c.Protocols.Msgpack.Enabled
		default:
			continue
		}
		if !on {
			k := keyPath{}.key("workers").index(i).key("protocol")
			d.errorAt(k, k, "worker %q logs in over %s, but the config has no [protocols.%s]", w.Name, w.Protocol, w.Protocol)
		}
	}
}

// AcceptsProtocol reports whether worker w may log in over protocol
// (ProtocolGBB, ProtocolPB or ProtocolMsgpack).
func (w Worker) AcceptsProtocol(protocol string) bool {
	return w.Protocol == "" || w.Protocol == protocol
}

// runsOnBuildbotWorkersOnly reports whether every worker of b is bound to
// a buildbot-worker protocol (its protocol key is "pb" or "msgpack").
func runsOnBuildbotWorkersOnly(b Builder, protocols map[string]string) bool {
	if len(b.WorkerNames) == 0 {
		return false
	}
	for _, n := range b.WorkerNames {
		if p := protocols[n]; p != ProtocolPB && p != ProtocolMsgpack {
			return false
		}
	}
	return true
}

// checkBuildbotWorkerSteps refuses, in a builder whose workers are all
// buildbot-workers, what they cannot run as gbb defines it. Every gbb
// step type has buildbot remote commands to run it (shell, git as shell
// commands, the transfers, mkdir, rmdir, rmfile); one shell option does
// not: an interrupt_signal other than KILL or TERM, which a gbb-worker
// follows with SIGKILL after sigterm_time (or 5s), while a
// buildbot-worker sends it alone (and with sigterm_time, sends TERM
// before it).
func (d *decoder) checkBuildbotWorkerSteps(c *Config) {
	protocols := map[string]string{}
	for _, w := range c.Workers {
		protocols[w.Name] = w.Protocol
	}
	for i, b := range c.Builders {
		if !runsOnBuildbotWorkersOnly(b, protocols) {
			continue
		}
		for j, s := range b.Steps {
			if sig := s.InterruptSignal; sig != "" && sig != "KILL" && sig != "TERM" {
				k := keyPath{}.key("builders").index(i).key("steps").index(j).key("interrupt_signal")
				d.errorAt(k, k, "builder %q runs on buildbot-workers only, which cannot send SIG%s and SIGKILL after it as gbb-workers do: use \"KILL\" or \"TERM\" (with sigterm_time), or a gbb-worker", b.Name, sig)
			}
		}
	}
}
