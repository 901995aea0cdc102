package hooks

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// signedPush returns a push of dialect from the fixtures, with the headers
// that sign it with the test server's secret.
func signedPush(t *testing.T, dialect string) (map[string]string, []byte) {
	t.Helper()
	switch dialect {
	case "github":
		body := fixtureFile(t, "github_push.json")
		return map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push",
			"X-Hub-Signature-256": "sha256=" + mac(sha256.New, "gh-secret", body)}, body
	case "gitlab":
		return map[string]string{"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "gl-token"},
			fixtureFile(t, "gitlab_push.json")
	case "gitea":
		body := fixtureFile(t, "gitea_push.json")
		return map[string]string{"Content-Type": "application/json", "X-Gitea-Event": "push",
			"X-Gitea-Signature": mac(sha256.New, "gitea-secret", body)}, body
	}
	t.Fatalf("no push for %s", dialect)
	return nil, nil
}

func countChanges(t *testing.T, db *store.DB) int {
	t.Helper()
	return len(must(db.Changes(store.ChangeFilter{}))(t))
}

// TestHookReplay: the same delivery sent again, by its forge's retry or by
// someone who captured it, is answered 200 and makes no new change; a new
// delivery with the same body (another id) does only where the body is
// not signed.
func TestHookReplay(t *testing.T) {
	t.Parallel()
	for i, tt := range []struct{ dialect, header string }{
		{"github", "X-GitHub-Delivery"},
		{"gitlab", "Idempotency-Key"},
		{"gitlab", "X-Gitlab-Event-UUID"},
		{"gitea", "X-Gitea-Delivery"},
		{"gitea", "X-Forgejo-Delivery"},
	} {
		t.Run(tt.header, func(t *testing.T) {
			// Not parallel: the test counts the changes stored. A store of
			// its own: the same signed body is a replay across headers.
			f := newTestServer(t)
			hdr, body := signedPush(t, tt.dialect)
			post := func(id string) (int, map[string]any, int) {
				t.Helper()
				h := map[string]string{tt.header: id}
				for k, v := range hdr {
					h[k] = v
				}
				before := countChanges(t, f.db)
				status, reply := f.hookPost(t, "/change_hook/"+tt.dialect, h, body)
				return status, reply, countChanges(t, f.db) - before
			}
			id := fmt.Sprintf("72d3162e-cc78-11e3-81ab-4c9367dc095%d", i)
			status, reply, made := post(id)
			if status != 200 || made == 0 || len(reply["changeids"].([]any)) != made {
				t.Fatalf("first delivery: %d, %d changes: %v", status, made, reply)
			}
			first := made
			for range 3 {
				status, reply, made = post(id)
				ignored, _ := reply["ignored"].(string)
				if status != 200 || made != 0 || len(reply["changeids"].([]any)) != 0 || !strings.Contains(ignored, "delivery "+id+" was received at") {
					t.Errorf("replay: %d, %d new changes: %v", status, made, reply)
				}
			}
			// The id compares without case.
			status, reply, made = post(strings.ToUpper(id))
			if status != 200 || made != 0 {
				t.Errorf("replay with the id in upper case: %d, %d new changes: %v", status, made, reply)
			}
			// Another id with the same body: a new event for a dialect
			// that signs no body (gitlab), a replay for one that does.
			status, reply, made = post(id + "-b")
			want := first
			if signedHooks[tt.dialect] {
				want = 0
			}
			if status != 200 || made != want {
				t.Errorf("another delivery of the same body: %d, %d changes, want %d: %v", status, made, want, reply)
			}
		})
	}
}

// The same delivery sent many times at once makes its changes once.
func TestHookReplayConcurrent(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	hdr, body := signedPush(t, "github")
	hdr["X-GitHub-Delivery"] = "b3c4d5e6-0000-4000-8000-000000000001"
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if status, reply := f.hookPost(t, "/change_hook/github", hdr, body); status != 200 {
				t.Errorf("delivery: %d %v", status, reply)
			}
		})
	}
	wg.Wait()
	if n := countChanges(t, f.db); n != 3 {
		t.Errorf("10 copies of a 3-commit delivery at once made %d changes, want 3", n)
	}
}

// Deliveries are remembered across a restart: a new server on the store,
// reopened, still knows them.
func TestHookReplayAfterRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	hdr, body := signedPush(t, "gitea")
	hdr["X-Gitea-Delivery"] = "0b5f8a7e-1b2c-4d3e-9f00-aabbccddeeff"
	serve := func() (*fixture, func()) {
		db := must(store.Open(path, store.Options{}))(t)
		srv := hookServer(db)
		return &fixture{db: db, srv: srv}, func() {
			srv.Close()
			if err := db.Check(); err != nil {
				t.Errorf("store check: %v", err)
			}
			db.Close()
		}
	}
	f, stop := serve()
	if status, reply := f.hookPost(t, "/change_hook/gitea", hdr, body); status != 200 || len(reply["changeids"].([]any)) != 2 {
		t.Fatalf("delivery: %d %v", status, reply)
	}
	stop()

	f, stop = serve()
	defer stop()
	status, reply := f.hookPost(t, "/change_hook/gitea", hdr, body)
	if status != 200 || len(reply["changeids"].([]any)) != 0 || countChanges(t, f.db) != 2 {
		t.Errorf("the delivery again after a restart: %d %v, %d changes stored", status, reply, countChanges(t, f.db))
	}
	// Its body is remembered too.
	delete(hdr, "X-Gitea-Delivery")
	status, reply = f.hookPost(t, "/change_hook/gitea", hdr, body)
	if status != 200 || len(reply["changeids"].([]any)) != 0 || countChanges(t, f.db) != 2 {
		t.Errorf("the body again without its id after a restart: %d %v, %d changes stored", status, reply, countChanges(t, f.db))
	}
}

// A delivery id that no forge would send is refused, with nothing stored.
func TestHookBadDeliveryID(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	for _, id := range []string{strings.Repeat("a", maxDeliveryID+1), "a b", "caf\u00e9"} {
		hdr, body := signedPush(t, "github")
		hdr["X-GitHub-Delivery"] = id
		status, reply := f.hookPost(t, "/change_hook/github", hdr, body)
		if status != 400 || !strings.Contains(fmt.Sprint(reply["error"]), "X-GitHub-Delivery") || countChanges(t, f.db) != 0 {
			t.Errorf("delivery id %q: %d %v", id, status, reply)
		}
	}
}

// The log keeps the last maxDeliveries deliveries of the last deliveryTTL.
func TestDeliveryLogBounds(t *testing.T) {
	t.Parallel()
	var l deliveryLog
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxDeliveries + 50 {
		l.list = l.with(delivery{ID: fmt.Sprint(i), Sum: fmt.Sprint("sum", i)}, t0.Add(time.Duration(i)*time.Second))
	}
	now := t0.Add((maxDeliveries + 50) * time.Second)
	if len(l.list) != maxDeliveries || l.list[0].ID != "50" {
		t.Fatalf("log of %d deliveries starts at %q, want %d from 50", len(l.list), l.list[0].ID, maxDeliveries)
	}
	if _, ok := l.seen("", "49", "sum49", now); ok {
		t.Error("delivery 49, pushed out, is still remembered")
	}
	if _, ok := l.seen("", "50", "", now); !ok {
		t.Error("delivery 50 is forgotten")
	}
	if _, ok := l.seen("", "", "sum50", now); !ok {
		t.Error("the body of delivery 50 is forgotten")
	}
	// A week later, only the new one is kept.
	later := now.Add(deliveryTTL)
	if _, ok := l.seen("", fmt.Sprint(maxDeliveries+49), fmt.Sprint("sum", maxDeliveries+49), later); ok {
		t.Error("a delivery older than deliveryTTL is remembered")
	}
	if l.list = l.with(delivery{ID: "new"}, later); len(l.list) != 1 || l.list[0].ID != "new" {
		t.Errorf("after deliveryTTL: %v", l.list)
	}
}

// TestHookReplaySignedBody: the delivery id is not under the signature, so
// a captured signed push replayed with the id changed, removed or in
// another case used to make new changes. A known signed body is answered
// 200 with no change; another signed body is a new event.
func TestHookReplaySignedBody(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ dialect, header, secret, sigHeader, prefix string }{
		{"github", "X-GitHub-Delivery", "gh-secret", "X-Hub-Signature-256", "sha256="},
		{"gitea", "X-Gitea-Delivery", "gitea-secret", "X-Gitea-Signature", ""},
	} {
		t.Run(tt.dialect, func(t *testing.T) {
			t.Parallel()
			f := newTestServer(t)
			hdr, body := signedPush(t, tt.dialect)
			post := func(id string, body []byte) (int, map[string]any, int) {
				t.Helper()
				h := map[string]string{}
				for k, v := range hdr {
					h[k] = v
				}
				h[tt.sigHeader] = tt.prefix + mac(sha256.New, tt.secret, body)
				if id != "" {
					h[tt.header] = id
				}
				before := countChanges(t, f.db)
				status, reply := f.hookPost(t, "/change_hook/"+tt.dialect, h, body)
				return status, reply, countChanges(t, f.db) - before
			}
			status, reply, made := post("6f1c2a00-0000-4000-8000-000000000001", body)
			if status != 200 || made == 0 {
				t.Fatalf("first delivery: %d, %d changes: %v", status, made, reply)
			}
			for _, id := range []string{"6f1c2a00-0000-4000-8000-000000000002", "", "6F1C2A00-0000-4000-8000-000000000001", "x"} {
				status, reply, made := post(id, body)
				ignored, _ := reply["ignored"].(string)
				if status != 200 || made != 0 || !strings.Contains(ignored, "was received at") {
					t.Errorf("the signed body again with delivery id %q: %d, %d new changes: %v", id, status, made, reply)
				}
			}
			// Another push (another after SHA), signed: a new event, with
			// or without an id.
			other := []byte(strings.Replace(string(body), `"after"`, `"after_was"`, 1))
			other = []byte(strings.Replace(string(other), `"before"`, `"after":"0123456789abcdef0123456789abcdef01234567","before"`, 1))
			if string(other) == string(body) {
				t.Fatal("the fixture has no after SHA to change")
			}
			if status, reply, made := post("", other); status != 200 || made == 0 {
				t.Errorf("another signed push without an id: %d, %d changes: %v", status, made, reply)
			}
		})
	}
}
