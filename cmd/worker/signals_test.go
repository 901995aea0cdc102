package main

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitUntil polls cond until it holds, or fails the test after 30s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer is a log destination safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStopSignals: the first signal drains, the second interrupts, the
// third exits with code 3; each is logged.
func TestStopSignals(t *testing.T) {
	t.Parallel()
	exited := make(chan int, 1)
	s := newStopSignals(func(code int) { exited <- code })
	var log logBuffer
	s.setLogger(slog.New(slog.NewTextHandler(&log, nil)))
	sigs := make(chan os.Signal)
	var watcher sync.WaitGroup
	watcher.Go(func() { s.watch(sigs) })
	defer watcher.Wait()
	defer close(sigs)

	sigs <- syscall.SIGTERM
	waitUntil(t, "drain", func() bool {
		select {
		case <-s.drain:
			return true
		default:
			return false
		}
	})
	if s.interrupt.Err() != nil {
		t.Fatal("the first signal interrupted the commands")
	}
	sigs <- syscall.SIGINT
	waitUntil(t, "interrupt", func() bool { return s.interrupt.Err() != nil })
	select {
	case code := <-exited:
		t.Fatalf("the second signal exited with %d", code)
	default:
	}
	sigs <- syscall.SIGTERM
	select {
	case code := <-exited:
		if code != 3 {
			t.Errorf("exit code %d at the third signal, want 3", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the third signal did not exit")
	}
	for _, want := range []string{"stop signal: finishing the running commands", "second stop signal: interrupting", "third stop signal: exiting at once"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}
