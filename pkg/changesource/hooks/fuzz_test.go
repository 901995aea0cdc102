package hooks

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hookDialectNames are the dialects FuzzHooks picks from, in a fixed order.
var hookDialectNames = []string{"base", "github", "gitlab", "gitea"}

// FuzzHooks: every webhook dialect turns any body, with any event and
// content type, and with or without a secret, into changes, a note, or an
// error a client is told about (a hookError, or a plain error sent as 400);
// never a panic. A dialect with a secret never accepts a body without its
// signature or token.
func FuzzHooks(f *testing.F) {
	events := map[string]string{
		"github": "push", "gitlab": "Push Hook", "gitea": "push",
	}
	files, _ := filepath.Glob("testdata/hooks/*.json")
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		name := filepath.Base(file)
		dialect, event, _ := strings.Cut(strings.TrimSuffix(name, ".json"), "_")
		switch event {
		case "push", "tag", "push_delete":
			event = events[dialect]
		case "merge_request":
			event = "Merge Request Hook"
		}
		for i, d := range hookDialectNames {
			if d == dialect {
				f.Add(uint8(i), event, "application/json", body, false)
			}
		}
	}
	f.Add(uint8(0), "", "application/x-www-form-urlencoded", []byte("author=me&revision=abc&files=%5B%22a%22%5D&when_timestamp=1&properties=%7B%7D"), false)
	f.Add(uint8(0), "", "application/json", []byte(`{"author":"me","revision":"abc","files":["a"],"when_timestamp":1700000000}`), false)
	f.Add(uint8(1), "push", "application/x-www-form-urlencoded", []byte("payload=%7B%7D"), false)
	f.Add(uint8(1), "pull_request", "application/json", []byte(`{"action":"opened","pull_request":{}}`), true)
	f.Add(uint8(2), "Tag Push Hook", "application/json", []byte(`{"object_kind":"tag_push","ref":"refs/tags/v1","commits":null}`), false)
	f.Add(uint8(3), "pull_request", "application/json", []byte(`{"pull_request":{"head":null}}`), false)
	f.Fuzz(func(t *testing.T, which uint8, event, contentType string, body []byte, withSecret bool) {
		name := hookDialectNames[int(which)%len(hookDialectNames)]
		h := http.Header{}
		h.Set("Content-Type", contentType)
		for _, k := range []string{"X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event"} {
			h.Set(k, event)
		}
		req := hookRequest{header: h, body: body}
		if withSecret {
			req.secret = "s3cret"
		}
		changes, note, err := dialects[name](req)
		if err != nil {
			if he, ok := errors.AsType[*hookError](err); ok && he.status != http.StatusBadRequest && he.status != http.StatusForbidden {
				t.Fatalf("%s: status %d for a bad request: %v", name, he.status, err)
			}
			return
		}
		if withSecret {
			t.Fatalf("%s accepted an unsigned request with a secret set: %d changes, note %q", name, len(changes), note)
		}
	})
}
