package changesource

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testsshd"
)

// within waits for ch until d has passed, then fails the test with what.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s: not within %s", what, d)
		panic("unreachable")
	}
}

// TestPollCancelClosesSilentSSH polls an ssh remote that accepts the TCP
// connection and never sends its greeting: cancelling the poll returns it
// at once, and the connection is closed.
func TestPollCancelClosesSilentSSH(t *testing.T) {
	t.Parallel()
	sl := testsshd.StartFrozen(t)
	key, known := testsshd.ClientFiles(t, t.TempDir(), sl.Addr)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, _ := newTestPoller(t, GitPollerConfig{
		RepoURL: "ssh://git@" + sl.Addr + "/src.git", SSHKeyFile: key, SSHKnownHostsFile: known,
	}, db)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Poll(ctx) }()
	within(t, sl.Accepted, time.Minute, "the poll's connection")
	cancel()
	err := within(t, done, 10*time.Second, "Poll returning after its context was cancelled")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled Poll returned %v, want context.Canceled", err)
	}
	within(t, sl.Closed, 10*time.Second, "the remote seeing its connection closed")
}

// TestRunTimesOutSilentSSH runs a poller of an ssh remote that never sends
// its greeting: each poll is cut at PollTimeout, logged as such, and the
// poller polls again at the next interval.
func TestRunTimesOutSilentSSH(t *testing.T) {
	t.Parallel()
	sl := testsshd.StartFrozen(t)
	key, known := testsshd.ClientFiles(t, t.TempDir(), sl.Addr)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	logs := make(logSignal, 100)
	p := NewGitPoller(GitPollerConfig{
		RepoURL: "ssh://git@" + sl.Addr + "/src.git", SSHKeyFile: key, SSHKnownHostsFile: known,
		Workdir:      filepath.Join(t.TempDir(), "w"),
		PollAtLaunch: true, PollInterval: 10 * time.Millisecond, PollTimeout: 300 * time.Millisecond,
	}, db, nil, slog.New(logs))
	runTimesOut(t, p, logs, sl.Accepted)
}

// runTimesOut runs p until two polls have reached the remote (accepted)
// and timed out, then stops it.
func runTimesOut(t *testing.T, p *GitPoller, logs logSignal, accepted <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	timedOut := make(chan struct{}, 10)
	go func() {
		for msg := range logs {
			if strings.HasPrefix(msg, "poll timed out") {
				timedOut <- struct{}{}
			}
		}
	}()
	for i := range 2 {
		within(t, accepted, time.Minute, "a poll reaching the remote")
		within(t, timedOut, time.Minute, "a poll timing out: "+string(rune('1'+i)))
	}
	cancel()
	if err := within(t, done, 10*time.Second, "Run returning after its context was cancelled"); err != nil {
		t.Errorf("Run: %v", err)
	}
	close(logs)
}

// TestRunTimesOutStalledFetch runs a poller of an http remote that lists
// its refs, then stalls in the middle of sending the pack: the poll is cut
// at PollTimeout, logged, and tried again.
func TestRunTimesOutStalledFetch(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	backend := gitBackend(t, r)
	stalled := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/git-upload-pack") && fetchRequest(t, req) {
			w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("0008NAK\n"))
			w.(http.Flusher).Flush()
			stalled <- struct{}{}
			<-req.Context().Done()
			return
		}
		backend.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	logs := make(logSignal, 100)
	p := NewGitPoller(GitPollerConfig{
		RepoURL: srv.URL + "/" + filepath.Base(r.dir), Workdir: filepath.Join(t.TempDir(), "w"),
		PollAtLaunch: true, PollInterval: 10 * time.Millisecond, PollTimeout: 500 * time.Millisecond,
	}, db, nil, slog.New(logs))
	runTimesOut(t, p, logs, stalled)
	if _, found, _ := db.GetState(p.Name(), "lastRev"); found {
		t.Error("a poll cut short stored state")
	}
}
