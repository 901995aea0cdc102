package master

import (
	"bufio"
	"context"
	"encoding/base64"
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

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// A poller whose config changes while it hangs in a fetch is cancelled
// without holding apply up, and its successor, which shares its state,
// polls only once it has returned.
func TestPollersReplaceHungPoller(t *testing.T) {
	t.Parallel()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Check(); err != nil {
			t.Error(err)
		}
		st.Close()
	}()

	// A remote that reads requests and never answers. It signals each
	// request, not each connection: an HTTP client may dial for a request
	// that is cancelled before it is sent, then send the next request
	// (the successor's) on that connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requested := make(chan struct{}, 10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn // guarded by mu
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "GET ") || strings.HasPrefix(line, "POST ") {
						requested <- struct{}{}
					}
				}
			})
		}
	})
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()

	basedir := t.TempDir()
	p := newPollers(basedir, st, nil, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		p.stop()
	}()
	cs := config.ChangeSource{Type: "git_poller", Name: "hung", RepoURL: "http://" + ln.Addr().String() + "/repo.git",
		Branches: []string{"main"}, PollInterval: config.Duration{Duration: time.Hour}, PollAtLaunch: true}
	p.apply(ctx, []config.ChangeSource{cs})
	select {
	case <-requested:
	case <-time.After(30 * time.Second):
		t.Fatal("the poller never asked its remote")
	}
	p.mu.Lock()
	old := p.running["hung"]
	p.mu.Unlock()

	changed := cs
	changed.PollInterval.Duration = 2 * time.Hour
	start := time.Now()
	p.apply(ctx, []config.ChangeSource{changed})
	if took := time.Since(start); took > time.Second {
		t.Errorf("apply took %v with a poller hung in its fetch", took)
	}
	select {
	case <-requested: // the successor polls
	case <-time.After(30 * time.Second):
		t.Fatal("the changed poller never polled")
	}
	select {
	case <-old.done:
	default:
		t.Error("the successor polled while its predecessor was still running")
	}
}

// The pollers read an http password from the master's secrets providers:
// the remote sees it in the poller's first request.
func TestPollersHTTPPasswordFromSecrets(t *testing.T) {
	t.Parallel()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sec, err := secretsChain([]config.SecretsProvider{{Type: "file", Dirname: dir}})
	if err != nil {
		t.Fatal(err)
	}
	auth := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Get("Authorization")
		http.Error(w, "no repository here", http.StatusNotFound)
	}))
	defer srv.Close()

	p := newPollers(t.TempDir(), st, nil, sec, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		p.stop()
	}()
	p.apply(ctx, []config.ChangeSource{{Type: "git_poller", Name: "private", RepoURL: srv.URL + "/repo.git",
		PollInterval: config.Duration{Duration: time.Hour}, PollAtLaunch: true,
		HTTPUsername: "ci", HTTPPasswordSecret: "token"}})
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	select {
	case got := <-auth:
		if got != want {
			t.Errorf("Authorization %q, want %q", got, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the poller never asked its remote")
	}
}
