package reporter

import (
	"encoding/base64"
	"strconv"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestChatWebhook: a chat_webhook posts one Slack-compatible message per
// finished build its modes want, with its username, channel, a link to
// the build and an attachment colored by the result.
func TestChatWebhook(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	f.start([]config.Reporter{{Type: "chat_webhook", Name: "chat", URL: ep.srv.URL, Mode: []string{"failing"},
		Username: "gbb", Channel: "#ci", RetryFor: time.Hour, VerifySSL: true}}, nil)
	ok := f.build("runtests", "main")
	f.finish(ok, store.Success)
	bad := f.build("runtests", "main")
	f.finish(bad, store.Failure)
	ep.wait(t, 1)
	f.stop()
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if len(ep.got) != 1 {
		t.Fatalf("%d messages, want 1 (the failure): %v", len(ep.got), ep.got)
	}
	m := ep.got[0]
	url := "http://ci.example.org/builders/" + itoa(bad.BuilderID) + "/builds/2"
	if m["text"] != "Build <"+url+"|runtests #2> finished: failure" || m["username"] != "gbb" || m["channel"] != "#ci" {
		t.Errorf("message: %v", m)
	}
	att, _ := m["attachments"].([]any)
	if len(att) != 1 || att[0].(map[string]any)["color"] != "danger" || att[0].(map[string]any)["title_link"] != url {
		t.Errorf("attachments: %v", m["attachments"])
	}
}

// TestHTTPStatusPushBasicAuth: http_status_push sends basic auth with a
// password from a secret, and the build as buildbot's data API names it.
func TestHTTPStatusPushBasicAuth(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	rc := push("push", ep.srv.URL)
	rc.ReportStart = false
	rc.User, rc.Password = "ci", "%(secret:pw)s"
	// buildnumber is set after the build starts: a report read before
	// has it all the same, as a number.
	rc.Headers = map[string]string{"X-Build": "%(prop:buildername)s-%(prop:buildnumber)s"}
	f.start([]config.Reporter{rc}, map[string]string{"pw": "hunter22"})
	b := f.build("docs", "main")
	f.finish(b, store.Warnings)
	ep.wait(t, 1)
	f.stop()
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if got, want := ep.headers[0].Get("Authorization"), "Basic "+base64.StdEncoding.EncodeToString([]byte("ci:hunter22")); got != want {
		t.Errorf("Authorization %q, want %q", got, want)
	}
	if got := ep.headers[0].Get("X-Build"); got != "docs-1" {
		t.Errorf("X-Build %q, want docs-1", got)
	}
	m := ep.got[0]
	if m["results"] != float64(store.Warnings) || m["complete"] != true || m["number"] != float64(1) || m["state_string"] != "done" {
		t.Errorf("build: %v", m)
	}
	if bl := m["builder"].(map[string]any); bl["name"] != "docs" {
		t.Errorf("builder: %v", bl)
	}
	props := m["properties"].(map[string]any)
	if p, _ := props["branch"].([]any); len(p) != 2 || p[0] != "main" || p[1] != "test" {
		t.Errorf("properties: %v", props)
	}
	ss := m["buildset"].(map[string]any)["sourcestamps"].([]any)
	if len(ss) != 1 || ss[0].(map[string]any)["revision"] != "abc123" {
		t.Errorf("sourcestamps: %v", ss)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
