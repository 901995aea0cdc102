package master

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/bbworker"
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

// TestBBPortCaps: [protocols.pb] and [protocols.msgpack] take
// max_connections_per_address, as [protocols.grpc]: one address cannot
// hold more connections than that, so it cannot keep a worker out.
func TestBBPortCaps(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("master.toml", []byte(`
[protocols.grpc]
port = 0
[protocols.pb]
port = 0
interface = "127.0.0.1"
max_connections_per_address = 3
[protocols.msgpack]
port = 0
interface = "127.0.0.1"
max_connections_per_address = 3
`))
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	m := New(t.TempDir(), cfg, slog.New(slog.NewTextHandler(&log, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	bws := &bbWorkers{changed: map[*bbworker.Worker]chan struct{}{}}
	ls, err := m.listenBB(ctx, cfg, nil, bws)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, l := range ls {
		wg.Go(func() { serveBB(ctx, l, m.log) })
	}
	if len(ls) != 2 {
		t.Fatalf("%d buildbot-worker ports", len(ls))
	}
	for _, l := range ls {
		addr := l.ln.Addr().String()
		var conns []net.Conn
		for range 3 {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			conns = append(conns, nc)
		}
		// The fourth from the same address is closed at once, without a
		// byte; the three are still open.
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		if n, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("%s: a 4th connection from one address read %d bytes, %v; want closed", l.name, n, err)
		}
		if l.name == config.ProtocolPB {
			// PB's server speaks first: the three held ones got its offer.
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err != nil {
					t.Errorf("pb: a connection within the cap: %v", err)
				}
			}
		}
	}
	if !strings.Contains(log.String(), "max_connections_per_address=3") {
		t.Errorf("the caps are not logged:\n%s", log.String())
	}
}
