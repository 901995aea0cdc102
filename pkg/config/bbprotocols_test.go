package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBBProtocols(t *testing.T) {
	t.Parallel()
	defLimits := ConnLimits{MaxConnectionsPerAddress: DefaultWorkerPerAddress}
	tests := []struct {
		name, src   string
		pb, msgpack BBProtocol
	}{
		{"off by default", ``, BBProtocol{}, BBProtocol{}},
		{"defaults in the tables", "[protocols.grpc]\nport = 9999\n[protocols.pb]\n[protocols.msgpack]\n",
			BBProtocol{Enabled: true, Port: 9989, Line: 3, Limits: defLimits}, BBProtocol{Enabled: true, Port: 9990, Line: 4, Limits: defLimits}},
		{"set", "[protocols.pb]\nport = 7001\ninterface = \"127.0.0.1\"\n[protocols.msgpack]\nport = 0\n",
			BBProtocol{Enabled: true, Port: 7001, Interface: "127.0.0.1", Line: 1, Limits: defLimits}, BBProtocol{Enabled: true, Port: 0, Line: 4, Limits: defLimits}},
		{"caps", "[protocols.pb]\nport = 7001\nmax_connections = 100\nmax_connections_per_address = 3\n[protocols.msgpack]\nmax_connections_per_address = 0\n",
			BBProtocol{Enabled: true, Port: 7001, Line: 1, Limits: ConnLimits{MaxConnections: 100, MaxConnectionsPerAddress: 3}},
			BBProtocol{Enabled: true, Port: 9990, Line: 5}},
		{"another interface than grpc's", "[protocols.grpc]\ninterface = \"127.0.0.2\"\n[protocols.pb]\ninterface = \"127.0.0.1\"\n",
			BBProtocol{Enabled: true, Port: 9989, Interface: "127.0.0.1", Line: 3, Limits: defLimits}, BBProtocol{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := mustParse(t, "master.toml", tc.src).Protocols
			if diff := cmp.Diff(tc.pb, p.PB); diff != "" {
				t.Errorf("pb (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.msgpack, p.Msgpack); diff != "" {
				t.Errorf("msgpack (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWorkerProtocol(t *testing.T) {
	t.Parallel()
	src := `
[protocols.grpc]
port = 9999
[protocols.pb]
[[workers]]
name = "old"
password = "x"
protocol = "pb"
[[workers]]
name = "any"
password = "x"
`
	c := mustParse(t, "master.toml", src)
	if c.Workers[0].Protocol != ProtocolPB || c.Workers[1].Protocol != "" {
		t.Fatalf("protocols = %q, %q", c.Workers[0].Protocol, c.Workers[1].Protocol)
	}
	// A builder with a worker of any protocol may ask for any signal: a
	// build there that lands on a buildbot-worker gets buildbot's meaning.
	mustParse(t, "master.toml", src+`
[[builders]]
name = "b"
worker_names = ["old", "any"]
  [[builders.steps]]
  type = "shell"
  command = "make"
  interrupt_signal = "INT"
`)
	for _, tc := range []struct {
		w     Worker
		proto string
		want  bool
	}{
		{c.Workers[0], ProtocolPB, true},
		{c.Workers[0], ProtocolMsgpack, false},
		{c.Workers[0], ProtocolGBB, false},
		{c.Workers[1], ProtocolMsgpack, true},
		{c.Workers[1], ProtocolGBB, true},
	} {
		if got := tc.w.AcceptsProtocol(tc.proto); got != tc.want {
			t.Errorf("%s.AcceptsProtocol(%q) = %v, want %v", tc.w.Name, tc.proto, got, tc.want)
		}
	}
}

func TestBBProtocolErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		want      []string
	}{
		{"pb on grpc's default port", "[protocols.pb]\n", []string{
			`master.toml:1: protocols.pb.port: port 9989 is also protocols.grpc.port (buildbot-workers dial 9989 by default: give [protocols.grpc] another port, e.g. 9999, and tell the gbb-workers)`}},
		{"msgpack on the web port", "[protocols.msgpack]\nport = 8010\n", []string{
			`master.toml:2: protocols.msgpack.port: port 8010 is also www.port`}},
		{"pb and msgpack together", "[protocols.grpc]\nport = 9999\n[protocols.pb]\nport = 7000\n[protocols.msgpack]\nport = 7000\n", []string{
			`master.toml:6: protocols.msgpack.port: port 7000 is also protocols.pb.port`}},
		{"unknown key and bad port", "[protocols.msgpack]\nport = 70000\nurl = \"ws://\"\n", []string{
			`master.toml:2: protocols.msgpack.port: port 70000 out of range (0-65535)`,
			`master.toml:3: protocols.msgpack.url: unknown key`}},
		{"worker on a protocol the master does not open", "[[workers]]\nname = \"w\"\npassword = \"x\"\nprotocol = \"msgpack\"\n", []string{
			`master.toml:4: workers[0].protocol: worker "w" logs in over msgpack, but the config has no [protocols.msgpack]`}},
		{"a signal a buildbot-worker cannot follow with SIGKILL", `
[protocols.grpc]
port = 9999
[protocols.pb]
[protocols.msgpack]
[[workers]]
name = "old"
password = "x"
protocol = "pb"
[[workers]]
name = "older"
password = "x"
protocol = "msgpack"
[[builders]]
name = "b"
worker_names = ["old", "older"]
  [[builders.steps]]
  type = "shell"
  command = "make"
  interrupt_signal = "TERM"
  [[builders.steps]]
  type = "shell"
  command = "make"
  interrupt_signal = "INT"
  sigterm_time = 3
`, []string{
			`master.toml:24: builders[0].steps[1].interrupt_signal: builder "b" runs on buildbot-workers only, which cannot send SIGINT and SIGKILL after it as gbb-workers do: use "KILL" or "TERM" (with sigterm_time), or a gbb-worker`}},
		{"unknown worker protocol", "[[workers]]\nname = \"w\"\npassword = \"x\"\nprotocol = \"amqp\"\n", []string{
			`master.toml:4: workers[0].protocol: unknown worker protocol "amqp" (want "gbb", "pb", "msgpack")`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("master.toml", []byte(tc.src))
			var msgs []string
			for _, e := range Errors(err) {
				msgs = append(msgs, e.Error())
			}
			if diff := cmp.Diff(tc.want, msgs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
