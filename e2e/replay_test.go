package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestWebhookReplay: the master remembers the GitHub deliveries it took,
// across a restart: the same delivery again makes no change and no build
// request, nor does the same signed push under another delivery id (a
// captured request replayed with a new header); a new push does.
func TestWebhookReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(hookConfig)
	e.startMaster()

	push := func(rev string) string {
		return `{"ref":"refs/heads/main","after":"` + rev + `",
"repository":{"name":"hello","full_name":"me/hello","html_url":"https://github.com/me/hello"},
"commits":[{"id":"` + rev + `","message":"fix","timestamp":"2026-11-28T10:00:00Z",
"author":{"name":"Me","email":"me@example.com"}}]}`
	}
	body := push("3333333333333333333333333333333333333333")
	deliver := func(id string) []int64 {
		t.Helper()
		mac := hmac.New(sha256.New, []byte("s3cret"))
		mac.Write([]byte(body))
		sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		req, _ := http.NewRequest("POST", e.url("/change_hook/github"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", id)
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var reply struct{ ChangeIDs []int64 }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &reply) != nil {
			t.Fatalf("delivery %s: %d %s", id, resp.StatusCode, data)
		}
		return reply.ChangeIDs
	}
	changes := func() int {
		t.Helper()
		var v struct{ Meta struct{ Total int } }
		if code := e.get("/api/v2/changes", &v); code != 200 {
			t.Fatalf("GET changes: %d", code)
		}
		return v.Meta.Total
	}

	const id = "9e1f0a2c-cc78-11e3-81ab-4c9367dc0958"
	if got := deliver(id); len(got) != 1 {
		t.Fatalf("first delivery made changes %v, want one", got)
	}
	if got := deliver(id); len(got) != 0 {
		t.Errorf("the delivery again made changes %v", got)
	}
	e.stopMaster()
	e.startMaster()
	if got := deliver(id); len(got) != 0 {
		t.Errorf("the delivery after a restart made changes %v", got)
	}
	if n := changes(); n != 1 {
		t.Errorf("%d changes stored, want 1", n)
	}
	if got := deliver(id + "-2"); len(got) != 0 {
		t.Errorf("the same signed push under a new delivery id made changes %v", got)
	}
	body = push("4444444444444444444444444444444444444444")
	if got := deliver(id + "-3"); len(got) != 1 {
		t.Errorf("a new push made changes %v, want one", got)
	}
}
