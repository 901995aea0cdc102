package web

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/web/auth"
)

// The outside probe after issue 13: holes in how rules match.

// TestWorkerStopNeedsStopRule: rules that name "stop" (and every other
// control but "graceful") for admins used to leave a worker's JSON-RPC
// stop, which is the action graceful, open to every logged-in user.
func TestWorkerStopNeedsStopRule(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, config.Authz{Rules: []config.Rule{
		{Actions: []string{"stop", "rebuild", "cancel", "pause", "unpause", "kill"}, Roles: []string{"admins"}},
	}})
	worker := fmt.Sprintf("/api/v2/workers/%d", f.worker.ID)
	resp, reply := f.do(t, "bob", "POST", worker, "application/json", rpcBody("stop", `{}`))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(reply, "bob may not stop") {
		t.Errorf("bob's worker stop: %d %s, want 403 naming stop", resp.StatusCode, reply)
	}
	if got := f.calls(); len(got) > 0 {
		t.Fatalf("the refused stop reached the controller: %q", got)
	}
	// "graceful" itself is named by no rule: allowed to logged-in users.
	if resp, reply := f.do(t, "bob", "POST", worker, "application/json", rpcBody("graceful", `{}`)); resp.StatusCode != http.StatusOK {
		t.Errorf("bob's worker graceful: %d %s, want 200 (no rule names graceful)", resp.StatusCode, reply)
	}
	if resp, reply := f.do(t, "root", "POST", worker, "application/json", rpcBody("stop", `{}`)); resp.StatusCode != http.StatusOK {
		t.Errorf("root's worker stop: %d %s, want 200", resp.StatusCode, reply)
	}

	// And the rules for graceful apply to a stop as before.
	g := newAuthServer(t, config.Authz{Rules: []config.Rule{
		{Actions: []string{"graceful"}, Roles: []string{"admins"}},
	}})
	worker = fmt.Sprintf("/api/v2/workers/%d", g.worker.ID)
	resp, reply = g.do(t, "bob", "POST", worker, "application/json", rpcBody("stop", `{}`))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(reply, "bob may not graceful") {
		t.Errorf("bob's worker stop under a graceful rule: %d %s, want 403 naming graceful", resp.StatusCode, reply)
	}
	if got := g.calls(); len(got) > 0 {
		t.Fatalf("the refused stop reached the controller: %q", got)
	}
}

// TestBuilderGlobsMatchSlash: buildbot matches builder names with
// fnmatch, where "*" matches "/"; with path.Match a builder
// "restricted/x" escaped "restricted*" and "*", and a looser later rule
// decided.
func TestBuilderGlobsMatchSlash(t *testing.T) {
	t.Parallel()
	for _, pattern := range []string{"restricted*", "*", "restricted?x", "r*x", "[r]estricted[/]x", "[!a]estricted*"} {
		f := newAuthServer(t, config.Authz{Rules: []config.Rule{
			{Actions: []string{"force"}, Builders: []string{pattern}, Roles: []string{"admins"}},
			{Actions: []string{"force"}, Roles: []string{"devs", "admins"}},
		}})
		bob, root := &auth.User{Name: "bob", Groups: []string{"devs"}}, &auth.User{Name: "root", Groups: []string{"admins"}}
		if auth.Allowed(f.s.acc().authz, bob, "force", "restricted/x", "") {
			t.Errorf("builders = [%q]: bob may force restricted/x, want only admins", pattern)
		}
		if !auth.Allowed(f.s.acc().authz, root, "force", "restricted/x", "") {
			t.Errorf("builders = [%q]: root may not force restricted/x", pattern)
		}
		if !auth.Allowed(f.s.acc().authz, bob, "force", "open/x", "") && pattern != "*" {
			t.Errorf("builders = [%q]: bob may not force open/x, which the pattern does not name", pattern)
		}
	}
}
