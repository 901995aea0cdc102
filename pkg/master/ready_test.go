package master

import (
	"context"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testpg"
	"github.com/gbb-ci/gbb/pkg/config"
)

// TestReady: the master is not ready before Run listens, ready once it
// does, and not ready again once it stops (a load balancer sends no more
// work); a reconfig that turns the metrics off needs a restart.
func TestReady(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.toml")
	src := "[protocols.grpc]\nport = 0\ninterface = \"127.0.0.1\"\n\n[www]\nport = 0\ninterface = \"127.0.0.1\"\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m := New(dir, cfg, nil)
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("Ready before Run = %v, want starting", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, func(Addrs) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	if err := m.Ready(); err != nil {
		t.Errorf("Ready while running = %v", err)
	}
	if err := os.WriteFile(path, []byte(src+"metrics = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Reconfig(path); err == nil || !strings.Contains(err.Error(), "www.metrics") {
		t.Errorf("Reconfig turning the metrics off = %v, want: needs a restart", err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running 30s after its context ended")
	}
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("Ready after Run = %v, want stopping", err)
	}
}

// TestReadyDatabaseAway: on PostgreSQL, a master whose database does not
// answer is not ready, and ready again once it does; /readyz, which needs
// no login, says so without the database's user, host, port or name (an
// ops probe saw them there), which go to the log instead.
func TestReadyDatabaseAway(t *testing.T) {
	t.Parallel()
	srv, err := testpg.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	url := srv.NewDatabase(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	dir := t.TempDir()
	path := filepath.Join(dir, "master.toml")
	src := fmt.Sprintf("[db]\nurl = %q\n\n[protocols.grpc]\nport = 0\ninterface = \"127.0.0.1\"\n\n[www]\nport = 0\ninterface = \"127.0.0.1\"\n", url)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := New(dir, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, func(Addrs) { close(ready) }) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			t.Error("Run still running 90s after its context ended")
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	_, allow := refuseConnections(t, srv, dbname)
	defer allow()
	waitReady := func(want bool) error {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := m.Ready()
			if (err == nil) == want {
				return err
			}
			if time.Now().After(deadline) {
				t.Fatalf("Ready after 30s: %v, want ready %v", err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	rerr := waitReady(false)
	if !strings.Contains(rerr.Error(), "the database does not answer") {
		t.Errorf("Ready with the database away: %v, want: the database does not answer", rerr)
	}
	for _, secret := range []string{dbname, u.Hostname(), u.Port(), testpg.Superuser} {
		if strings.Contains(rerr.Error(), secret) {
			t.Errorf("Ready's answer %q shows %q", rerr, secret)
		}
	}
	if l := logs.String(); !strings.Contains(l, "not ready: the database does not answer") || !strings.Contains(l, dbname) {
		t.Errorf("the log does not say why the database does not answer:\n%s", l)
	}
	allow()
	waitReady(true)
}
