package web

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
)

// TestTokenLimits: a [[www.auth.tokens]] token limited to some actions or
// builders may do nothing else, even when [www.authz] allows its groups
// everything; a refusal is 403 and says which limit refused. Reading is
// never limited.
func TestTokenLimits(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	token := func(name string, actions, builders []string) (string, config.Token) {
		secret := "secret-of-" + name
		sum := sha256.Sum256([]byte(secret))
		return secret, config.Token{Name: name, SHA256: hex.EncodeToString(sum[:]), Groups: []string{"admins"}, Actions: actions, Builders: builders}
	}
	forcerTok, forcer := token("forcer", []string{"force"}, []string{"run*"})
	readerTok, reader := token("reader", []string{}, nil)
	stopperTok, stopper := token("stopper", []string{"stop"}, nil)
	adminTok, admin := token("admin-bot", nil, nil)
	a := f.cfg
	a.Tokens = append(slices.Clone(a.Tokens), forcer, reader, stopper, admin)
	f.s.SetAccess(a, testAuthz)

	running := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	worker := fmt.Sprintf("/api/v2/workers/%d", f.worker.ID)
	tests := []struct {
		token, path, method string
		want                int
		reason              string
	}{
		{forcerTok, "/api/v2/forceschedulers/force-runtests", "force", 200, ""},
		{forcerTok, "/api/v2/forceschedulers/force-all", "force", 403, "token forcer is limited to actions force on builders run*: it may not force on builder noop"},
		{forcerTok, running, "stop", 403, "token forcer is limited to actions force on builders run*: it may not stop on builder runtests"},
		{forcerTok, worker, "pause", 403, "it may not pause"},
		{readerTok, "/api/v2/forceschedulers/force-runtests", "force", 403, "token reader is limited to no action (read-only): it may not force on builder runtests"},
		{readerTok, running, "rebuild", 403, "read-only"},
		{stopperTok, running, "stop", 200, ""},
		{stopperTok, running, "rebuild", 403, "token stopper is limited to actions stop: it may not rebuild"},
		{stopperTok, worker, "kill", 403, "it may not kill"},
		{adminTok, worker, "pause", 200, ""},
		{adminTok, "/api/v2/forceschedulers/force-all", "force", 200, ""},
	}
	for _, tt := range tests {
		resp, body := f.do(t, "", "POST", tt.path, "application/json", rpcBody(tt.method, "{}"), "Authorization", "Bearer "+tt.token)
		if resp.StatusCode != tt.want || !strings.Contains(body, tt.reason) {
			t.Errorf("%s %s with token %s: %d %s, want %d with %q", tt.method, tt.path, tt.token, resp.StatusCode, body, tt.want, tt.reason)
		}
	}
	// Every token may read.
	for _, tok := range []string{forcerTok, readerTok, stopperTok} {
		resp, body := f.do(t, "", "GET", "/api/v2/builders", "", "", "Authorization", "Bearer "+tok)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "runtests") {
			t.Errorf("GET /api/v2/builders with token %s: %d %s", tok, resp.StatusCode, body)
		}
	}
}
