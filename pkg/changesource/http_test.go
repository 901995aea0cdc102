package changesource

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// serveHTTP serves r over HTTP with git http-backend until the test ends,
// and returns its URL and the server (closing it makes the remote
// unreachable: its loopback port refuses connections).
func serveHTTP(t *testing.T, r *repo) (string, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(gitBackend(t, r))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(r.dir), srv
}

// gitBackend is git http-backend serving r.
func gitBackend(t *testing.T, r *repo) http.Handler {
	t.Helper()
	r.git("config", "http.receivepack", "false")
	backend := filepath.Join(r.git("--exec-path"), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git-http-backend (Debian's git package) is needed to serve the test remote: %v", err)
	}
	return &cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.dir), "GIT_HTTP_EXPORT_ALL=1", "PATH=" + fixturePath},
	}
}

// TestPollHTTPRemote polls a repository served over HTTP by git
// http-backend, the path an https remote takes (git-remote-http, the smart
// protocol).
func TestPollHTTPRemote(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	url, _ := serveHTTP(t, r)

	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: url}, db)
	poll(t, p)
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("first poll announced %v", got)
	}
	rev1 := r.commit("one", "a", "1\n")
	rev2 := r.commit("two", "a", "2\n")
	poll(t, p)
	got := rec.take()
	if len(got) != 2 || got[0].Revision != rev1 || got[1].Revision != rev2 || got[1].Repository != url || got[1].Branch != "main" {
		t.Errorf("announced over HTTP: %+v", got)
	}
}
