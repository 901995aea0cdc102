package master

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
