package master

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
)

// TestWorkerPasswordByProtocol: a worker whose protocol key names one
// protocol logs in with it only; the refusal on another is logged.
func TestWorkerPasswordByProtocol(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("master.toml", []byte(`
[protocols.grpc]
port = 9999
[protocols.pb]
[protocols.msgpack]
[[workers]]
name = "old"
password = "p1"
protocol = "pb"
[[workers]]
name = "any"
password = "p2"
`))
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	m := New(t.TempDir(), cfg, slog.New(slog.NewTextHandler(&log, nil)))
	for _, tc := range []struct {
		name, protocol string
		ok             bool
	}{
		{"old", config.ProtocolPB, true},
		{"old", config.ProtocolMsgpack, false},
		{"old", config.ProtocolGBB, false},
		{"any", config.ProtocolPB, true},
		{"any", config.ProtocolMsgpack, true},
		{"any", config.ProtocolGBB, true},
		{"nobody", config.ProtocolPB, false},
	} {
		pw, ok := m.workerPasswordFor(tc.name, tc.protocol)
		if ok != tc.ok || ok && pw == "" {
			t.Errorf("%s over %s: %q, %v; want ok %v", tc.name, tc.protocol, pw, ok, tc.ok)
		}
	}
	if _, ok := m.workerPassword("old"); ok {
		t.Error("worker old (protocol pb) may log in on the gRPC port")
	}
	if !strings.Contains(log.String(), "worker refused: its protocol key names another protocol") {
		t.Errorf("no refusal logged:\n%s", log.String())
	}
}

// TestBBRestart: turning a buildbot-worker port on or off, moving it, or
// changing its connection caps needs a restart, as the gRPC port; its
// table moving in the file does not.
func TestBBRestart(t *testing.T) {
	t.Parallel()
	on := config.BBProtocol{Enabled: true, Port: 9989, Line: 3}
	for _, tc := range []struct {
		name     string
		old, cfg config.Protocols
		want     []string
	}{
		{"unchanged", config.Protocols{PB: on}, config.Protocols{PB: on}, nil},
		{"moved in the file", config.Protocols{PB: on}, config.Protocols{PB: config.BBProtocol{Enabled: true, Port: 9989, Line: 7}}, nil},
		{"turned on", config.Protocols{}, config.Protocols{Msgpack: on}, []string{"protocols.msgpack"}},
		{"turned off", config.Protocols{PB: on}, config.Protocols{}, []string{"protocols.pb"}},
		{"another port", config.Protocols{PB: on}, config.Protocols{PB: config.BBProtocol{Enabled: true, Port: 7000}}, []string{"protocols.pb"}},
		{"another interface", config.Protocols{Msgpack: on}, config.Protocols{Msgpack: config.BBProtocol{Enabled: true, Port: 9989, Interface: "127.0.0.1"}}, []string{"protocols.msgpack"}},
		{"other caps", config.Protocols{PB: on}, config.Protocols{PB: config.BBProtocol{Enabled: true, Port: 9989, Limits: config.ConnLimits{MaxConnections: 10}}}, []string{"protocols.pb"}},
	} {
		var got []string
		for _, r := range bbRestart(tc.old, tc.cfg) {
			got = append(got, strings.Fields(r)[0])
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: restart for %v, want %v", tc.name, got, tc.want)
		}
	}
}
