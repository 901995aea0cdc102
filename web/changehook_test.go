package web

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/changesource/hooks"
	"github.com/gbb-ci/gbb/pkg/store"
)

// The secrets of the test server's change hooks; base has none.
var testHooks = map[string]hooks.Config{
	"github": {Secret: "gh-secret"},
	"gitlab": {Secret: "gl-token"},
	"gitea":  {Secret: "gitea-secret"},
	"base":   {},
}

// TestChangeHookMount: the server mounts the change hooks at POST
// /change_hook/DIALECT behind its origin check; the hooks themselves are
// tested in pkg/changesource/hooks.
func TestChangeHookMount(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	status, reply := f.post(t, "/change_hook/base?codebase=app", "application/json", `{"author": "a", "revision": "r1"}`)
	if ids, _ := reply["changeids"].([]any); status != 200 || len(ids) != 1 {
		t.Fatalf("base hook: %d %v", status, reply)
	}
	status, reply = f.post(t, "/change_hook/bitbucket", "application/json", `{}`)
	if status != 404 || reply["error"] != `change hook dialect "bitbucket" is not enabled` {
		t.Errorf("unknown dialect: %d %v", status, reply)
	}
	req := must(http.NewRequest(http.MethodPost, f.srv.URL+"/change_hook/base", strings.NewReader(`{"author":"x"}`)))(t)
	req.Header.Set("Origin", "http://evil.example.org")
	req.Header.Set("Content-Type", "application/json")
	resp := must(http.DefaultClient.Do(req))(t)
	body := must(io.ReadAll(resp.Body))(t)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "invalid origin http://evil.example.org") {
		t.Errorf("other origin: %d %s, want 403 invalid origin", resp.StatusCode, body)
	}
	if status, body := f.get(t, "/change_hook/github"); status != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d: %v", status, body)
	}
	cs := must(f.db.Changes(store.ChangeFilter{}))(t)
	if len(cs) != 1 || cs[0].Codebase != "app" || cs[0].Author != "a" {
		t.Errorf("changes stored: %+v", cs)
	}
}

// TestChangeHookLimits: the change hooks take bodies up to hooks.MaxBody
// (GitHub's pushes reach 25 MB) through the whole server, where one over
// 1 MiB used to get 413; the controls keep 1 MiB.
func TestChangeHookLimits(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	comments := strings.Repeat("c", 3<<20)
	status, reply := f.post(t, "/change_hook/base", "application/json", `{"author": "a", "revision": "big", "comments": "`+comments+`"}`)
	if ids, _ := reply["changeids"].([]any); status != 200 || len(ids) != 1 {
		t.Fatalf("a 3 MiB change: %d %v", status, reply)
	}
	status, reply = f.post(t, "/api/v2/forceschedulers/force-runtests", "application/json",
		`{"jsonrpc":"2.0","method":"force","id":1,"params":{"reason":"`+comments+`"}}`)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 3 MiB JSON-RPC call: %d %v, want 413", status, reply)
	}
}

// TestChangeHookNoDialect: POST /change_hook and /change_hook/ are the
// base dialect, as buildbot's; they used to be 404 and 405.
func TestChangeHookNoDialect(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	for _, path := range []string{"/change_hook", "/change_hook/"} {
		status, reply := f.post(t, path, "application/x-www-form-urlencoded", "author=a&revision="+path)
		if ids, _ := reply["changeids"].([]any); status != 200 || len(ids) != 1 {
			t.Errorf("POST %s: %d %v", path, status, reply)
		}
	}
	req := must(http.NewRequest(http.MethodPost, f.srv.URL+"/change_hook", strings.NewReader(`author=x`)))(t)
	req.Header.Set("Origin", "http://evil.example.org")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp := must(http.DefaultClient.Do(req))(t)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /change_hook from another origin: %d, want 403", resp.StatusCode)
	}
}
