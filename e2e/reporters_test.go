package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// hookToken is the bearer token of the reporter: a secret that must reach
// the endpoint and nothing else (store, log, API, pages).
const hookToken = "hook-t0k3n-s3cr3t-e2e"

// reportersBase is a master with one builder, forced, and file secrets:
// the reporter tests add their [[reporters]] to it.
const reportersBase = loopback + workerW1 + `
[[secrets_providers]]
type = "file"
dirname = "{{.Dir}}/secrets"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["runtests"]

[[builders]]
name = "runtests"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo hello"
`

const reportersConfig = reportersBase + `
[[reporters]]
type = "http_status_push"
url = "{{.Hook}}/status"
bearer_token = "%(secret:hooktoken)s"
`

// hookServer is the reporters' endpoint, in the test: down (503) until
// up is set, then it records each build event it is sent.
type hookServer struct {
	*httptest.Server
	mu    sync.Mutex
	up    bool     // guarded by mu
	tries int      // guarded by mu
	got   []string // guarded by mu; "event:buildid"
	auth  []string // guarded by mu; the Authorization headers received
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.tries++
		if !h.up {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var b struct {
			Event   string `json:"event"`
			BuildID int64  `json:"buildid"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.got = append(h.got, fmt.Sprintf("%s:%d", b.Event, b.BuildID))
		h.auth = append(h.auth, r.Header.Get("Authorization"))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) state() (tries int, got, auth []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tries, append([]string(nil), h.got...), append([]string(nil), h.auth...)
}

type apiReport struct {
	Reporter  string  `json:"reporter"`
	Event     string  `json:"event"`
	State     string  `json:"state"`
	Attempts  int     `json:"attempts"`
	LastError *string `json:"last_error"`
}

// TestReportsSurviveKill: with the endpoint down, two builds run and
// their reports are retried; the master is SIGKILLed with the deliveries
// pending; once the endpoint is up and the master restarted, every
// build's end arrives once (each build's reports in order), with the token from the secret, and
// the token is in neither the store's file, nor master.log, nor the API.
func TestReportsSurviveKill(t *testing.T) {
	t.Parallel()
	hook := newHookServer(t)
	e := newEnv(t)
	secrets := filepath.Join(e.Dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "hooktoken"), []byte(hookToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.writeConfigData(reportersConfig, struct {
		*env
		Hook string
	}{e, hook.URL})
	e.startMaster()
	e.startWorker("w1", "secret")
	b1 := e.waitBuild(e.force("force", 1, "first"), 60*time.Second)
	b2 := e.waitBuild(e.force("force", 1, "second"), 60*time.Second)
	reports := func(id int64) []apiReport {
		var r struct{ Reports []apiReport }
		if st := e.get(fmt.Sprintf("/api/v2/builds/%d/reports", id), &r); st != 200 {
			t.Fatalf("reports of build %d: %d", id, st)
		}
		return r.Reports
	}
	waitFor(t, "a retried report", 60*time.Second, func() bool {
		rs := reports(b1.BuildID)
		return len(rs) > 0 && rs[len(rs)-1].Attempts >= 2
	})
	rs := reports(b1.BuildID)
	last := rs[len(rs)-1]
	if last.State != "pending" || last.LastError == nil || !strings.Contains(*last.LastError, "503") {
		t.Errorf("a report retried while the endpoint is down: %+v", last)
	}

	data, err := os.ReadFile(filepath.Join(e.masterDir, "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	mpid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(mpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 10*time.Second, mpid)
	if err := os.Remove(filepath.Join(e.masterDir, "master.pid")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	_, got, _ := hook.state()
	if len(got) != 0 {
		t.Fatalf("reports accepted while the endpoint was down: %v", got)
	}
	hook.mu.Lock()
	hook.up = true
	hook.mu.Unlock()
	mustRun(t, e.master, "start", e.masterDir)

	want := []string{fmt.Sprintf("finished:%d", b1.BuildID), fmt.Sprintf("finished:%d", b2.BuildID)}
	waitFor(t, "the reports after the restart", 90*time.Second, func() bool {
		_, got, _ := hook.state()
		return len(got) >= len(want)
	})
	waitFor(t, "the deliveries recorded", 30*time.Second, func() bool {
		for _, b := range []apiBuild{b1, b2} {
			rs := reports(b.BuildID)
			if len(rs) == 0 || rs[len(rs)-1].State != "delivered" {
				return false
			}
		}
		return true
	})
	_, got, auth := hook.state()
	// A Started sent before its build's end is allowed; never one after.
	var ends []string
	for i, g := range got {
		if strings.HasPrefix(g, "finished:") {
			ends = append(ends, g)
			continue
		}
		for _, later := range got[:i] {
			if later == "finished:"+strings.TrimPrefix(g, "started:") {
				t.Errorf("%s arrived after its build's end: %v", g, got)
			}
		}
	}
	// Order holds per key (for http_status_push, per build): the two
	// builds' ends go independently, each once.
	slices.Sort(ends)
	slices.Sort(want)
	if fmt.Sprint(ends) != fmt.Sprint(want) {
		t.Errorf("ends received: %v, want %v once each", ends, want)
	}
	for _, a := range auth {
		if a != "Bearer "+hookToken {
			t.Errorf("Authorization %q, want the secret's bearer token", a)
		}
	}
	for _, b := range []apiBuild{b1, b2} {
		for _, r := range reports(b.BuildID) {
			if r.State != "delivered" && r.State != "superseded" {
				t.Errorf("build %d: %+v", b.BuildID, r)
			}
		}
	}
	page := e.getText(fmt.Sprintf("/builders/%d/builds/%d", b1.BuilderID, b1.Number))
	if !strings.Contains(page, `<td class="report-state">delivered</td>`) {
		t.Errorf("the build page does not show the delivery")
	}
	for _, path := range []string{
		fmt.Sprintf("/api/v2/builds/%d/reports", b1.BuildID), fmt.Sprintf("/api/v2/builds/%d", b1.BuildID),
		fmt.Sprintf("/builders/%d/builds/%d", b1.BuilderID, b1.Number), "/",
	} {
		if body := e.getText(path); strings.Contains(body, hookToken) || strings.Contains(body, hook.URL+"/status") {
			t.Errorf("%s shows the reporter's token or URL", path)
		}
	}

	e.stopMaster()
	for _, f := range []string{"state.db", "master.log"} {
		data, err := os.ReadFile(filepath.Join(e.masterDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), hookToken) {
			t.Errorf("%s holds the reporter's token", f)
		}
		if f == "master.log" && strings.Contains(string(data), hook.URL+"/status") {
			t.Errorf("master.log holds the reporter's URL")
		}
	}
}

const reportersReconfigBase = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["runtests"]

[[builders]]
name = "runtests"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "exit 1"
`

// TestReportersReconfig: a chat_webhook added by a reconfig reports the
// builds that end from then on (a Slack-compatible message with the
// build's link), none before; removed, it reports no more.
func TestReportersReconfig(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var msgs []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(msgs)
	}
	e := newEnv(t)
	e.writeConfig(reportersReconfigBase)
	e.startMaster()
	e.startWorker("w1", "secret")
	b1 := e.waitBuild(e.force("force", 1, "before"), 60*time.Second)

	withChat := reportersReconfigBase + fmt.Sprintf(`
[[reporters]]
type = "chat_webhook"
url = %q
mode = "failing"
channel = "#ci"
`, hook.URL+"/hooks/abc")
	if err := os.WriteFile(filepath.Join(e.masterDir, "master.toml"), []byte(tmplEnv(t, withChat, e)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, e.master, "reconfig", e.masterDir)
	b2 := e.waitBuild(e.force("force", 1, "after"), 60*time.Second)
	waitFor(t, "the chat message", 60*time.Second, func() bool { return count() >= 1 })
	mu.Lock()
	m := msgs[0]
	mu.Unlock()
	wantLink := fmt.Sprintf("http://127.0.0.1:%d/builders/%d/builds/%d", e.WebPort, b2.BuilderID, b2.Number)
	if text, _ := m["text"].(string); !strings.Contains(text, "<"+wantLink+"|runtests #2> finished: failure") || m["channel"] != "#ci" {
		t.Errorf("message: %v", m)
	}
	var r struct{ Reports []apiReport }
	e.get(fmt.Sprintf("/api/v2/builds/%d/reports", b1.BuildID), &r)
	if len(r.Reports) != 0 {
		t.Errorf("the build before the reconfig was reported: %+v", r.Reports)
	}

	if err := os.WriteFile(filepath.Join(e.masterDir, "master.toml"), []byte(tmplEnv(t, reportersReconfigBase, e)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, e.master, "reconfig", e.masterDir)
	b3 := e.waitBuild(e.force("force", 1, "removed"), 60*time.Second)
	e.get(fmt.Sprintf("/api/v2/builds/%d/reports", b3.BuildID), &r)
	if len(r.Reports) != 0 || count() != 1 {
		t.Errorf("a removed reporter reported: %+v, %d messages", r.Reports, count())
	}
}

// tmplEnv renders a config template with e's ports.
func tmplEnv(t *testing.T, tmpl string, e *env) string {
	var b strings.Builder
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&b, e); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
