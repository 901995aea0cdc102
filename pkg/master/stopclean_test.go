package master

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
)

// syncBuffer is a bytes.Buffer safe for the logger's and the test's use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer // guarded by mu
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStopCleanIdle: a clean stop of a master with no build running makes
// Run return nil at once, saying so in the log; a second StopClean is a
// no-op that says a clean stop is under way.
func TestStopCleanIdle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	toml := `
[protocols.grpc]
port = 0
interface = "127.0.0.1"

[www]
port = 0
interface = "127.0.0.1"

[[workers]]
name = "w1"
password = "pw"

[[builders]]
name = "b"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "true"
`
	path := filepath.Join(dir, "master.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := New(dir, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- m.Run(t.Context(), func(Addrs) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	if !m.StopClean() {
		t.Error("first StopClean reported a clean stop already under way")
	}
	if m.StopClean() {
		t.Error("second StopClean reported starting a clean stop")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after a clean stop = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running 30s after a clean stop with no build")
	}
	if !strings.Contains(logs.String(), MsgCleanDone) {
		t.Errorf("log lacks %q:\n%s", MsgCleanDone, logs.String())
	}
}
