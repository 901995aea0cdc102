package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConnLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		grpc, www ConnLimits
		idle      time.Duration
	}{
		{"defaults", ``,
			ConnLimits{MaxConnectionsPerAddress: DefaultWorkerPerAddress},
			ConnLimits{MaxConnectionsPerAddress: DefaultWebPerAddress}, DefaultIdleTimeout},
		{"set", "[protocols.grpc]\nmax_connections = 100\nmax_connections_per_address = 3\n" +
			"[www]\nmax_connections = 200\nmax_connections_per_address = 0\nidle_timeout = \"5s\"\n",
			ConnLimits{MaxConnections: 100, MaxConnectionsPerAddress: 3},
			ConnLimits{MaxConnections: 200}, 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, "master.toml", tc.src)
			if diff := cmp.Diff(tc.grpc, c.Protocols.GRPC.Limits); diff != "" {
				t.Errorf("[protocols.grpc] limits (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.www, c.WWW.Limits); diff != "" {
				t.Errorf("[www] limits (-want +got):\n%s", diff)
			}
			if c.WWW.IdleTimeout != tc.idle {
				t.Errorf("idle_timeout = %v, want %v", c.WWW.IdleTimeout, tc.idle)
			}
		})
	}
}

func TestConnLimitsErrors(t *testing.T) {
	t.Parallel()
	src := `[protocols.grpc]
max_connections = -1
max_connections_per_address = "many"
[www]
idle_timeout = "10ms"
[protocols.pb]
port = 7001
max_connections = 16777217
[protocols.msgpack]
max_connections_per_address = -3
`
	_, err := Parse("master.toml", []byte(src))
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	want := []string{
		`master.toml:2: protocols.grpc.max_connections: -1 is out of range: 0 to 16777216`,
		`master.toml:3: protocols.grpc.max_connections_per_address: expected an integer, got string`,
		`master.toml:5: www.idle_timeout: 10ms is too short: at least 1s`,
		`master.toml:8: protocols.pb.max_connections: 16777217 is out of range: 0 to 16777216`,
		`master.toml:10: protocols.msgpack.max_connections_per_address: -3 is out of range: 0 to 16777216`,
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
