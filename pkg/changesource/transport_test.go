package changesource

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/gbb-ci/gbb/internal/testsshd"
	"github.com/gbb-ci/gbb/pkg/secrets"
	"github.com/gbb-ci/gbb/pkg/store"
)

// secretsDir is a secrets provider's directory (secrets.File, as the master
// reads [[secrets_providers]] of type "file") holding name = value.
func secretsDir(t *testing.T, name, value string) (dir string, sec *secrets.File) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, sec
}

// TestPollHTTPCredentials polls git http-backend behind basic
// authentication: the password is a secret, read at each poll, so a
// changed one is used at the next poll; a wrong or missing one fails the
// poll with a clear error and stores nothing.
func TestPollHTTPCredentials(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	backend := gitBackend(t, r)
	var mu sync.Mutex
	password := "s3cret token"
	var refused int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		want := password
		mu.Unlock()
		if u, p, ok := req.BasicAuth(); !ok || u != "ci" || p != want {
			mu.Lock()
			refused++
			mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte("<!DOCTYPE html>\n<html><head><title>401</title></head>\n<body><h1>Who are you?</h1></body></html>\n"))
			return
		}
		backend.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	repoURL := srv.URL + "/" + filepath.Base(r.dir)
	dir, sec := secretsDir(t, "gitpoller-token", password)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))

	// No credentials: refused.
	p, _ := newTestPoller(t, GitPollerConfig{RepoURL: repoURL}, db)
	if err := p.Poll(t.Context()); err == nil || err.Error() != "poll "+repoURL+": list refs: "+repoURL+" requires credentials: set http_username and http_password_secret" ||
		!errors.Is(err, transport.ErrAuthenticationRequired) {
		t.Fatalf("Poll without credentials: %v", err)
	}
	// A secret that is not there: said before reaching the remote.
	p, _ = newTestPoller(t, GitPollerConfig{RepoURL: repoURL, HTTPUsername: "ci", HTTPPasswordSecret: "nope", Secrets: sec}, db)
	if err := p.Poll(t.Context()); err == nil || !strings.Contains(err.Error(), `http password: secrets: no such secret "nope"`) {
		t.Fatalf("Poll with a missing secret: %v", err)
	}
	p, _ = newTestPoller(t, GitPollerConfig{RepoURL: repoURL, HTTPUsername: "ci", HTTPPasswordSecret: "nope"}, db)
	if err := p.Poll(t.Context()); err == nil || !strings.Contains(err.Error(), "no secrets provider") {
		t.Fatalf("Poll with a secret and no provider: %v", err)
	}
	if v, found, _ := db.GetState("GitPoller:"+repoURL, "lastRev"); found {
		t.Fatalf("a failed poll stored state %s", v)
	}

	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: repoURL, HTTPUsername: "ci", HTTPPasswordSecret: "gitpoller-token", Secrets: sec}, db)
	poll(t, p)
	c1 := r.commit("one", "a", "1\n")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c1, "one"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}

	// The token is rotated on the server: the poll fails until the
	// secret's file has the new one, then goes on without a restart.
	mu.Lock()
	password = "rotated"
	mu.Unlock()
	c2 := r.commit("two", "a", "2\n")
	// Said in one line, naming the user and the secret, without the
	// server's page.
	if err := p.Poll(t.Context()); err == nil || err.Error() != "poll "+repoURL+`: list refs: credentials refused by `+repoURL+` (http_username "ci", secret gitpoller-token)` {
		t.Fatalf("Poll with the old token: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gitpoller-token"), []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c2, "two"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced after the rotation (-want +got):\n%s", diff)
	}
	all, err := db.Changes(store.ChangeFilter{})
	if err != nil || len(all) != 2 {
		t.Errorf("stored %d changes (%v), want 2", len(all), err)
	}
}

// forwardProxy is an HTTP proxy on loopback that sends every request,
// whatever its host, to backend, and counts them by host.
type forwardProxy struct {
	backend http.Handler
	mu      sync.Mutex
	hosts   map[string]int
	auth    []string
}

func (fp *forwardProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !req.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	fp.mu.Lock()
	fp.hosts[req.URL.Host]++
	fp.auth = append(fp.auth, req.Header.Get("Proxy-Authorization"))
	fp.mu.Unlock()
	req.Header.Del("Proxy-Authorization")
	req.RequestURI = req.URL.RequestURI()
	fp.backend.ServeHTTP(w, req)
}

// loopbackName returns a name /etc/hosts gives a loopback address, other
// than "localhost" (which is never proxied): a request that the proxy
// should have taken but did not goes to loopback, never to a DNS server.
func loopbackName(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(strings.SplitN(line, "#", 2)[0])
		if len(f) < 2 || !strings.HasPrefix(f[0], "127.") {
			continue
		}
		for _, name := range f[1:] {
			if name != "localhost" && !strings.HasSuffix(name, ".localhost") {
				return name
			}
		}
	}
	t.Fatal("this test needs a name other than localhost for 127.0.0.1 in /etc/hosts (add '127.0.0.1 gbb-proxy-test')")
	return ""
}

// TestPollHTTPProxy polls a remote through the proxy of http_proxy, with
// the proxy's credentials from the variable, and no_proxy read too.
func TestPollHTTPProxy(t *testing.T) {
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	fp := &forwardProxy{backend: gitBackend(t, r), hosts: map[string]int{}}
	// A poll before the variables are set: net/http reads them once per
	// process, at its first request; the poller reads them at each poll.
	for _, v := range []string{"http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"} {
		t.Setenv(v, "")
	}
	direct := httptest.NewServer(fp.backend)
	t.Cleanup(direct.Close)
	first, _ := newTestPoller(t, GitPollerConfig{RepoURL: direct.URL + "/" + filepath.Base(r.dir)}, openStore(t, filepath.Join(t.TempDir(), "state.db")))
	poll(t, first)

	proxy := httptest.NewServer(fp)
	t.Cleanup(proxy.Close)
	pu, _ := url.Parse(proxy.URL)
	pu.User = url.UserPassword("proxyuser", "proxypass")
	t.Setenv("http_proxy", pu.String())
	t.Setenv("HTTP_PROXY", "")
	t.Setenv("no_proxy", "elsewhere.example")
	t.Setenv("NO_PROXY", "")
	host := loopbackName(t)
	repoURL := "http://" + host + "/" + filepath.Base(r.dir)

	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: repoURL}, db)
	poll(t, p)
	c1 := r.commit("one", "a", "1\n")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c1, "one"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if fp.hosts[host] < 3 { // list, list, fetch: all through the proxy
		t.Errorf("the proxy saw %v", fp.hosts)
	}
	for _, a := range fp.auth {
		if a != "Basic cHJveHl1c2VyOnByb3h5cGFzcw==" {
			t.Errorf("Proxy-Authorization %q", a)
		}
	}
}

// TestProxyFor reads the proxy variables as curl and git do, at each call.
func TestProxyFor(t *testing.T) {
	t.Setenv("http_proxy", "http://127.0.0.1:3128")
	t.Setenv("https_proxy", "http://u:p@127.0.0.1:3129")
	t.Setenv("no_proxy", ".internal.example,direct.example")
	for _, v := range []string{"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUEST_METHOD"} {
		t.Setenv(v, "")
	}
	for _, tc := range []struct{ url, proxy, user, password string }{
		{"http://git.example/r.git", "http://127.0.0.1:3128", "", ""},
		{"https://git.example/r.git", "http://127.0.0.1:3129", "u", "p"},
		{"https://git.internal.example/r.git", "", "", ""},
		{"http://direct.example:8080/r.git", "", "", ""},
		{"http://127.0.0.1:8080/r.git", "", "", ""}, // loopback: never proxied
	} {
		p := NewGitPoller(GitPollerConfig{RepoURL: tc.url}, nil, nil, nil)
		r, err := p.remote()
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if r.proxy.URL != tc.proxy || r.proxy.Username != tc.user || r.proxy.Password != tc.password {
			t.Errorf("%s: proxy %+v, want %s (%s:%s)", tc.url, r.proxy, tc.proxy, tc.user, tc.password)
		}
	}
	t.Setenv("https_proxy", "")
	p := NewGitPoller(GitPollerConfig{RepoURL: "https://git.example/r.git"}, nil, nil, nil)
	if r, err := p.remote(); err != nil || r.proxy.URL != "" {
		t.Errorf("https_proxy unset: %+v %v", r, err)
	}
}

// TestPollSSHKeyWithPassphrase: a key protected by a passphrase is refused
// with an error that says so, before any connection (the remote here is a
// listener that would never answer).
func TestPollSSHKeyWithPassphrase(t *testing.T) {
	t.Parallel()
	sl := testsshd.StartFrozen(t)
	_, known := testsshd.ClientFiles(t, t.TempDir(), sl.Addr)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("open sesame"))
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, _ := newTestPoller(t, GitPollerConfig{RepoURL: "ssh://git@" + sl.Addr + "/src.git", SSHKeyFile: key, SSHKnownHostsFile: known}, db)
	err = p.Poll(t.Context())
	want := "ssh key " + key + " is protected by a passphrase: keys with a passphrase are not supported"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Poll with a key protected by a passphrase: %v, want an error saying %q", err, want)
	}
	select {
	case <-sl.Accepted:
		t.Error("the poll connected to the remote")
	default:
	}
}
