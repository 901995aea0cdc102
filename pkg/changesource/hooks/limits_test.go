package hooks

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/sync/semaphore"

	"github.com/gbb-ci/gbb/internal/teststore"
)

// logBuffer is a log the handler writes while the test reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// loggedServer is newTestServer with hooks and the handler's log in logs.
func loggedServer(t *testing.T, hooks map[string]Config) (*fixture, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	db := teststore.Open(t)
	h := New(StoreSink{DB: db}, hooks, slog.New(slog.NewTextHandler(logs, nil)))
	r := chi.NewRouter()
	r.Post("/change_hook/{dialect}", func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, chi.URLParam(r, "dialect"))
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &fixture{db: db, srv: srv}, logs
}

// bigGitHubPush is a GitHub push of n commits, each with a message of
// msgLen bytes.
func bigGitHubPush(t *testing.T, n, msgLen int) []byte {
	t.Helper()
	type person struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	type commit struct {
		ID        string   `json:"id"`
		Message   string   `json:"message"`
		Timestamp string   `json:"timestamp"`
		URL       string   `json:"url"`
		Distinct  bool     `json:"distinct"`
		Author    person   `json:"author"`
		Committer person   `json:"committer"`
		Added     []string `json:"added"`
	}
	commits := make([]commit, n)
	msg := strings.Repeat("x", msgLen)
	for i := range commits {
		id := fmt.Sprintf("%040x", i+1)
		commits[i] = commit{ID: id, Message: msg, Timestamp: "2015-05-05T19:40:15-04:00",
			URL: "https://github.com/o/r/commit/" + id, Distinct: true,
			Author: person{"A", "a@example.org"}, Committer: person{"C", "c@example.org"}, Added: []string{"f"}}
	}
	last := commits[n-1]
	return must(json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": fmt.Sprintf("%040x", 0xdead), "after": last.ID,
		"repository": map[string]any{"name": "r", "full_name": "o/r", "html_url": "https://github.com/o/r"},
		"commits":    commits, "head_commit": last,
	}))(t)
}

// TestHookLargePush: GitHub sends pushes of up to 25 MB (2048 commits);
// one over 1 MiB used to be refused 413, and nothing logged. It is
// stored whole; a body over MaxBody is refused 413 and the refusal
// logged.
func TestHookLargePush(t *testing.T) {
	t.Parallel()
	f, logs := loggedServer(t, map[string]Config{"github": {Secret: "gh-secret"}})
	body := bigGitHubPush(t, MaxChanges, 3000) // some 6.5 MB
	if len(body) < 5<<20 {
		t.Fatalf("the push is only %d bytes", len(body))
	}
	hdr := map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push",
		"X-Hub-Signature-256": "sha256=" + mac(sha256.New, "gh-secret", body)}
	status, reply := f.hookPost(t, "/change_hook/github", hdr, body)
	if ids, _ := reply["changeids"].([]any); status != 200 || len(ids) != MaxChanges {
		t.Fatalf("a push of %d bytes, %d commits: %d, %d changes: %.300v", len(body), MaxChanges, status, len(ids), reply)
	}

	big := bigGitHubPush(t, MaxChanges, MaxBody/MaxChanges+100) // over MaxBody
	hdr["X-Hub-Signature-256"] = "sha256=" + mac(sha256.New, "gh-secret", big)
	before := countChanges(t, f.db)
	status, reply = f.hookPost(t, "/change_hook/github", hdr, big)
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(fmt.Sprint(reply["error"]), "larger than") {
		t.Errorf("a push of %d bytes: %d %v, want 413", len(big), status, reply)
	}
	if n := countChanges(t, f.db); n != before {
		t.Errorf("the refused push stored %d changes", n-before)
	}
	if l := logs.String(); !strings.Contains(l, "change hook request refused") || !strings.Contains(l, "status=413") {
		t.Errorf("the 413 is not logged; the log:\n%s", l)
	}
}

// TestHookChangeCap: one anonymous POST to the base hook with a JSON list
// of 65,000 changes used to store them all. A request may make at most
// MaxChanges; more is refused 413 with the reason, logged, and nothing
// stored.
func TestHookChangeCap(t *testing.T) {
	t.Parallel()
	f, logs := loggedServer(t, map[string]Config{"base": {}})
	list := func(n int) []byte {
		cs := make([]map[string]string, n)
		for i := range cs {
			cs[i] = map[string]string{"author": "a", "revision": fmt.Sprint(i)}
		}
		return must(json.Marshal(cs))(t)
	}
	hdr := map[string]string{"Content-Type": "application/json"}
	status, reply := f.hookPost(t, "/change_hook/base", hdr, list(MaxChanges+1))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(fmt.Sprint(reply["error"]), fmt.Sprintf("more than the %d", MaxChanges)) {
		t.Errorf("%d changes: %d %.200v, want 413", MaxChanges+1, status, reply)
	}
	if n := countChanges(t, f.db); n != 0 {
		t.Errorf("the refused request stored %d changes", n)
	}
	if l := logs.String(); !strings.Contains(l, "status=413") || !strings.Contains(l, "changes, more than") {
		t.Errorf("the refusal is not logged; the log:\n%s", l)
	}
	status, reply = f.hookPost(t, "/change_hook/base", hdr, list(MaxChanges))
	if ids, _ := reply["changeids"].([]any); status != 200 || len(ids) != MaxChanges {
		t.Errorf("%d changes: %d, %d stored", MaxChanges, status, len(ids))
	}
}

// TestHookReplayAcrossDialects: github and gitea may share a secret; a
// signed request captured from one used to be accepted once more by the
// other (each dialect remembered only its own bodies). The signed bodies
// are remembered across dialects.
func TestHookReplayAcrossDialects(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ first, second string }{{"github", "gitea"}, {"gitea", "github"}} {
		t.Run(tt.first+" then "+tt.second, func(t *testing.T) {
			t.Parallel()
			db := teststore.Open(t)
			srv := hookServerWith(db, map[string]Config{"github": {Secret: "shared"}, "gitea": {Secret: "shared"}})
			t.Cleanup(srv.Close)
			f := &fixture{db: db, srv: srv}
			_, body := signedPush(t, tt.first)
			sig := mac(sha256.New, "shared", body)
			headers := map[string]map[string]string{
				"github": {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sig,
					"X-GitHub-Delivery": "11111111-0000-4000-8000-000000000001"},
				"gitea": {"Content-Type": "application/json", "X-Gitea-Event": "push", "X-Gitea-Signature": sig,
					"X-Gitea-Delivery": "22222222-0000-4000-8000-000000000002"},
			}
			status, reply := f.hookPost(t, "/change_hook/"+tt.first, headers[tt.first], body)
			if ids, _ := reply["changeids"].([]any); status != 200 || len(ids) == 0 {
				t.Fatalf("the delivery to %s: %d %v", tt.first, status, reply)
			}
			stored := countChanges(t, db)
			status, reply = f.hookPost(t, "/change_hook/"+tt.second, headers[tt.second], body)
			ignored, _ := reply["ignored"].(string)
			if status != 200 || countChanges(t, db) != stored || !strings.Contains(ignored, "by the "+tt.first+" hook") {
				t.Errorf("the captured body replayed to %s: %d %v, %d new changes", tt.second, status, reply, countChanges(t, db)-stored)
			}
		})
	}
}

// TestHookLegacyDeliveries: deliveries remembered before they were shared
// across dialects (under change_hook:DIALECT) are still recognized.
func TestHookLegacyDeliveries(t *testing.T) {
	t.Parallel()
	db := teststore.Open(t)
	hdr, body := signedPush(t, "github")
	hdr["X-GitHub-Delivery"] = "33333333-0000-4000-8000-000000000003"
	old := must(json.Marshal([]delivery{{ID: "33333333-0000-4000-8000-000000000003", Sum: bodySum(body), At: time.Now()}}))(t)
	if err := db.SetState("change_hook:github", deliveryStateKey, old); err != nil {
		t.Fatal(err)
	}
	srv := hookServer(db)
	t.Cleanup(srv.Close)
	f := &fixture{db: db, srv: srv}
	for _, id := range []string{"33333333-0000-4000-8000-000000000003", ""} {
		if id == "" {
			delete(hdr, "X-GitHub-Delivery")
		}
		status, reply := f.hookPost(t, "/change_hook/github", hdr, body)
		if status != 200 || countChanges(t, db) != 0 {
			t.Errorf("a delivery recorded before the upgrade, id %q: %d %v", id, status, reply)
		}
	}
	// A new delivery is recorded in the shared record, with the old ones.
	_, gbody := signedPush(t, "gitea")
	ghdr, _ := signedPush(t, "gitea")
	if status, reply := f.hookPost(t, "/change_hook/gitea", ghdr, gbody); status != 200 || countChanges(t, db) == 0 {
		t.Fatalf("a new gitea delivery: %d %v", status, reply)
	}
	raw, found := must2(db.GetState(deliveryObject, deliveryStateKey))(t)
	var list []delivery
	if !found || json.Unmarshal(raw, &list) != nil || len(list) != 2 || list[0].Dialect != "github" || list[1].Dialect != "gitea" {
		t.Errorf("the shared record: %s", raw)
	}
}

func must2[A, B any](a A, b B, err error) func(testing.TB) (A, B) {
	return func(t testing.TB) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// TestHookBodyBudget: the large bodies being read hold at most the
// handler's budget together (MaxBodies; 25 MiB each would let the web
// port's thousands of connections take gigabytes). A large body that does
// not fit within the wait is refused 503 with Retry-After, logged; small
// ones take no share; once the budget is free again, it is taken.
func TestHookBodyBudget(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	db := teststore.Open(t)
	h := New(StoreSink{DB: db}, map[string]Config{"base": {}}, slog.New(slog.NewTextHandler(logs, nil)))
	h.budget, h.budgetSize, h.budgetWait = semaphore.NewWeighted(3<<20), 3<<20, 100*time.Millisecond
	r := chi.NewRouter()
	r.Post("/change_hook/{dialect}", func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, chi.URLParam(r, "dialect"))
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	change := func(size int) string {
		return `{"author": "a", "comments": "` + strings.Repeat("x", size) + `"}`
	}
	post := func(body io.Reader, length int64) *http.Response {
		t.Helper()
		req := must(http.NewRequest(http.MethodPost, srv.URL+"/change_hook/base", body))(t)
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/json")
		resp := must(http.DefaultClient.Do(req))(t)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	// A: 2.5 MiB declared, sent in part, then held.
	big := change(5 << 19)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) }) // before srv.Close, which waits for A
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/change_hook/base", pr)
		req.ContentLength = int64(len(big))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte(big[:1<<20])); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.budget.TryAcquire(1 << 20) { // until A holds its share
		h.budget.Release(1 << 20)
		if time.Now().After(deadline) {
			t.Fatal("the held body never took a share of the budget")
		}
		runtime.Gosched()
	}
	// B: 1.5 MiB does not fit.
	if resp := post(strings.NewReader(change(3<<19)), int64(len(change(3<<19)))); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a large body while the budget is taken: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if l := logs.String(); !strings.Contains(l, "status=503") {
		t.Errorf("the 503 is not logged; the log:\n%s", l)
	}
	// A small body, even undeclared (chunked), takes no share.
	// (MultiReader: the client cannot know the length.)
	if resp := post(io.MultiReader(strings.NewReader(change(100))), -1); resp.StatusCode != 200 {
		t.Errorf("a small chunked body while the budget is taken: %d", resp.StatusCode)
	}
	// A ends; B fits again.
	if _, err := pw.Write([]byte(big[1<<20:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if status := <-first; status != 200 {
		t.Errorf("the held body: %d", status)
	}
	if resp := post(strings.NewReader(change(3<<19)), int64(len(change(3<<19)))); resp.StatusCode != 200 {
		t.Errorf("a large body once the budget is free: %d", resp.StatusCode)
	}
	if n := countChanges(t, db); n != 3 {
		t.Errorf("%d changes stored, want 3", n)
	}
}
