package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGRPCLiveness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src         string
		interval, timeout time.Duration
	}{
		{"defaults", ``, 10 * time.Second, 10 * time.Second},
		{"defaults in the table", "[protocols.grpc]\nport = 1\n", 10 * time.Second, 10 * time.Second},
		{"set", "[protocols.grpc]\nkeepalive_interval = \"2s\"\nkeepalive_timeout = 3\n", 2 * time.Second, 3 * time.Second},
		{"the floor", "[protocols.grpc]\nkeepalive_interval = \"1s\"\nkeepalive_timeout = \"1000ms\"\n", time.Second, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := mustParse(t, "master.toml", tc.src).Protocols.GRPC
			if g.KeepaliveInterval != tc.interval || g.KeepaliveTimeout != tc.timeout {
				t.Errorf("keepalive = %v, %v; want %v, %v", g.KeepaliveInterval, g.KeepaliveTimeout, tc.interval, tc.timeout)
			}
		})
	}
}

func TestGRPCLivenessErrors(t *testing.T) {
	t.Parallel()
	src := `title = "x"
[protocols.grpc]
keepalive_interval = "500ms"
keepalive_timeout = "soon"
keepalive = "10s"
`
	_, err := Parse("master.toml", []byte(src))
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	want := []string{
		`master.toml:3: protocols.grpc.keepalive_interval: 500ms is too short: at least 1s`,
		`master.toml:4: protocols.grpc.keepalive_timeout: invalid duration "soon" (want e.g. "300s", "5m", "1h30m" or an integer number of seconds)`,
		`master.toml:5: protocols.grpc.keepalive: unknown key`,
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
