package changesource

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// silentListener accepts TCP connections on loopback and never writes to
// them, as a remote whose sshd is frozen. Each accepted connection is sent
// on accepted; closed gets one value per connection the other side closed.
type silentListener struct {
	addr     string
	accepted chan struct{}
	closed   chan struct{}
}

func listenSilent(t *testing.T) *silentListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := &silentListener{addr: ln.Addr().String(), accepted: make(chan struct{}, 100), closed: make(chan struct{}, 100)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			sl.accepted <- struct{}{}
			wg.Go(func() {
				io.Copy(io.Discard, c) // returns when the poller closes it
				sl.closed <- struct{}{}
			})
		}
	})
	return sl
}

// sshFiles writes an unencrypted ed25519 key and a known_hosts file for
// addr (whose key is never checked: the remote never gets that far).
func sshFiles(t *testing.T, addr string) (key, knownHosts string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	knownHosts = filepath.Join(dir, "known_hosts")
	line := "[" + host + "]:" + port + " " + string(ssh.MarshalAuthorizedKey(pub))
	if err := os.WriteFile(knownHosts, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return key, knownHosts
}

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
	sl := listenSilent(t)
	key, known := sshFiles(t, sl.addr)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, _ := newTestPoller(t, GitPollerConfig{
		RepoURL: "ssh://git@" + sl.addr + "/src.git", SSHKeyFile: key, SSHKnownHostsFile: known,
	}, db)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Poll(ctx) }()
	within(t, sl.accepted, time.Minute, "the poll's connection")
	cancel()
	err := within(t, done, 10*time.Second, "Poll returning after its context was cancelled")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled Poll returned %v, want context.Canceled", err)
	}
	within(t, sl.closed, 10*time.Second, "the remote seeing its connection closed")
}

// TestRunTimesOutSilentSSH runs a poller of an ssh remote that never sends
// its greeting: each poll is cut at PollTimeout, logged as such, and the
// poller polls again at the next interval.
func TestRunTimesOutSilentSSH(t *testing.T) {
	t.Parallel()
	sl := listenSilent(t)
	key, known := sshFiles(t, sl.addr)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	logs := make(logSignal, 100)
	p := NewGitPoller(GitPollerConfig{
		RepoURL: "ssh://git@" + sl.addr + "/src.git", SSHKeyFile: key, SSHKnownHostsFile: known,
		Workdir:      filepath.Join(t.TempDir(), "w"),
		PollAtLaunch: true, PollInterval: 10 * time.Millisecond, PollTimeout: 300 * time.Millisecond,
	}, db, nil, slog.New(logs))
	runTimesOut(t, p, logs, sl.accepted)
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
