package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/metrics"
	"github.com/gbb-ci/gbb/pkg/store"
)

// metricsFixture is a store whose events feed a master's metrics, served
// by a Server.
type metricsFixture struct {
	db       *store.DB
	srv      *httptest.Server
	master   store.Master
	runtests store.Builder
	worker   store.Worker
	notReady atomic.Pointer[string] // what Ready says; nil: ready
}

// newMetricsServer serves a store fed to metrics as the master wires them
// (metrics.Tap on the store's events, its commit and log hooks);
// with off, there are no metrics ([www] metrics = false).
func newMetricsServer(t testing.TB, off bool, authn config.Auth, authz config.Authz) *metricsFixture {
	t.Helper()
	f := &metricsFixture{}
	var met *metrics.Metrics
	if !off {
		met = metrics.New(metrics.Config{
			Pending:   func() (int, time.Time, error) { return f.db.PendingStats() },
			StoreSize: func() (int64, error) { return f.db.Size() },
			Builder: func(id int64) (string, bool) {
				b, err := f.db.Builder(id)
				return b.Name, err == nil
			},
			Workers: func() []metrics.WorkerState {
				return []metrics.WorkerState{{Name: "w1", Connected: true, Busy: true}, {Name: "w2"}}
			},
		})
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{Events: met.Tap(nil), OnCommit: met.Commit, OnLog: met.LogBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("store check: %v", err)
		}
		db.Close()
	})
	f.db = db
	f.master = must(db.EnsureMaster("master-1"))(t)
	f.runtests = must(db.EnsureBuilder("runtests"))(t)
	f.worker = must(db.EnsureWorker("w1"))(t)
	s := New(Config{Store: db, MasterID: f.master.ID, MasterName: "master-1", Metrics: met, Auth: authn, Authz: authz,
		Ready: func() error {
			if r := f.notReady.Load(); r != nil {
				return errors.New(*r)
			}
			return nil
		}})
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// build runs one build of runtests through the store, as the engine
// does: a request submitted wait before, claimed, a step with a log, the
// build finished with results; unfinished leaves it pending.
func (f *metricsFixture) build(t testing.TB, results int, wait time.Duration, unfinished bool) {
	t.Helper()
	now := time.Now()
	_, brids, err := f.db.AddBuildset(store.NewBuildset{Reason: "test", BuilderIDs: []int64{f.runtests.ID},
		SourceStamps: []store.SourceStamp{{Branch: "main"}}, SubmittedAt: now.Add(-wait)})
	check(t, err)
	if unfinished {
		return
	}
	brid := brids[f.runtests.ID]
	check(t, f.db.ClaimBuildRequest(brid, f.master.ID, now))
	b := must(f.db.AddBuild(store.NewBuild{BuilderID: f.runtests.ID, BuildRequestID: brid, WorkerID: f.worker.ID, MasterID: f.master.ID, StartedAt: now}))(t)
	st := must(f.db.StartNewStep(b.ID, "test", now))(t)
	l := must(f.db.AddLog(st.ID, "stdio", "s"))(t)
	must(f.db.AppendLog(l.ID, "hello\n"))(t)
	check(t, f.db.FinishLog(l.ID))
	check(t, f.db.FinishStep(st.ID, results, now.Add(time.Second)))
	check(t, f.db.FinishBuild(b.ID, results, now.Add(2*time.Second)))
	check(t, f.db.CompleteBuildRequest(brid, results, now.Add(2*time.Second)))
}

// scrape reads /metrics with Prometheus's own text parser.
func scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp := must(http.Get(url + "/metrics"))(t)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of family name with labels
// (name=value pairs), and whether it exists.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	fam := fams[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		ok := len(got) == len(labels)/2
		for i := 0; ok && i+1 < len(labels); i += 2 {
			ok = got[labels[i]] == labels[i+1]
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// series counts the series of the gbb_ families (the Go runtime's and the
// process's are the library's).
func series(fams map[string]*dto.MetricFamily) int {
	n := 0
	for name, fam := range fams {
		if strings.HasPrefix(name, "gbb_") {
			n += len(fam.Metric)
		}
	}
	return n
}

// TestMetricsExposition: /metrics, parsed with Prometheus's text parser,
// counts the builds the store finished by builder and result, their
// steps, their wait and their log bytes, shows the pending requests and
// the oldest one's age, the configured workers, the store, and the HTTP
// requests by route pattern: an unknown builder's name or a build number
// in a URL makes no label.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	f := newMetricsServer(t, false, config.Auth{}, config.Authz{})
	for range 3 {
		f.build(t, store.Success, 5*time.Second, false)
	}
	f.build(t, store.Failure, 0, false)
	f.build(t, store.Success, time.Hour, true) // pending for an hour
	for _, p := range []string{"/api/v2/builders/runtests/builds/2", "/api/v2/builders/no-such-builder-xyz/builds/12345", "/api/v2/builds/3", "/no/such/path/777"} {
		resp := must(http.Get(f.srv.URL + p))(t)
		resp.Body.Close()
	}
	fams := scrape(t, f.srv.URL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"gbb_builds_started_total", []string{"builder", "runtests"}, 4},
		{"gbb_builds_finished_total", []string{"builder", "runtests", "result", "success"}, 3},
		{"gbb_builds_finished_total", []string{"builder", "runtests", "result", "failure"}, 1},
		{"gbb_build_duration_seconds", []string{"builder", "runtests"}, 4},
		{"gbb_step_duration_seconds", []string{"builder", "runtests"}, 4},
		{"gbb_buildrequest_wait_seconds", []string{"builder", "runtests"}, 4},
		{"gbb_log_bytes_total", nil, 4 * float64(len("hello\n"))},
		{"gbb_buildrequests_pending", nil, 1},
		{"gbb_worker_connected", []string{"worker", "w1"}, 1},
		{"gbb_worker_busy", []string{"worker", "w1"}, 1},
		{"gbb_worker_connected", []string{"worker", "w2"}, 0},
		{"gbb_worker_paused", []string{"worker", "w2"}, 0},
		{"gbb_http_requests_total", []string{"route", "/api/v2/builds/{buildid}", "method", "GET", "code", "200"}, 1},
	} {
		got, ok := value(fams, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if age, _ := value(fams, "gbb_buildrequest_oldest_pending_age_seconds"); age < 3600 || age > 7200 {
		t.Errorf("oldest pending age = %vs, want about an hour", age)
	}
	if n, _ := value(fams, "gbb_store_size_bytes"); n <= 0 {
		t.Errorf("store size = %v", n)
	}
	if n, _ := value(fams, "gbb_store_commit_duration_seconds"); n == 0 {
		t.Error("no store commit observed")
	}
	for _, m := range fams["gbb_http_requests_total"].Metric {
		for _, lp := range m.Label {
			if v := lp.GetValue(); strings.Contains(v, "no-such-builder") || strings.Contains(v, "12345") || strings.Contains(v, "777") {
				t.Errorf("a label carries the request's path: %s=%q", lp.GetName(), v)
			}
		}
	}
	if _, ok := value(fams, "gbb_http_requests_total", "route", "unmatched", "method", "GET", "code", "404"); !ok {
		t.Errorf("no unmatched 404 counted: %v", fams["gbb_http_requests_total"])
	}
}

// TestMetricsCardinality: the number of series stays the same from 10
// builds to 1,000: no build number, request id or time becomes a label.
func TestMetricsCardinality(t *testing.T) {
	t.Parallel()
	f := newMetricsServer(t, false, config.Auth{}, config.Authz{})
	results := []int{store.Success, store.Warnings, store.Failure, store.Exception}
	run := func(n int) {
		for i := range n {
			f.build(t, results[i%len(results)], time.Duration(i)*time.Second, false)
			if i%97 == 0 {
				resp := must(http.Get(fmt.Sprintf("%s/api/v2/builds/%d", f.srv.URL, i+1)))(t)
				resp.Body.Close()
			}
		}
	}
	run(10)
	scrape(t, f.srv.URL) // counts GET /metrics itself, as every later scrape
	before := scrape(t, f.srv.URL)
	run(990)
	after := scrape(t, f.srv.URL)
	if got, _ := value(after, "gbb_builds_started_total", "builder", "runtests"); got != 1000 {
		t.Fatalf("builds started = %v, want 1000", got)
	}
	if b, a := series(before), series(after); a != b {
		t.Errorf("series: %d after 10 builds, %d after 1,000", b, a)
		for name, fam := range after {
			if bf := before[name]; bf == nil || len(bf.Metric) != len(fam.Metric) {
				t.Logf("%s: %d series", name, len(fam.Metric))
			}
		}
	}
}

// TestMetricsOff: [www] metrics = false answers /metrics 404; health stays.
func TestMetricsOff(t *testing.T) {
	t.Parallel()
	f := newMetricsServer(t, true, config.Auth{}, config.Authz{})
	f.build(t, store.Success, 0, false)
	resp := must(http.Get(f.srv.URL + "/metrics"))(t)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics with metrics = false: %s, want 404", resp.Status)
	}
	resp = must(http.Get(f.srv.URL + "/healthz"))(t)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s", resp.Status)
	}
}

// TestMetricsRole: a [[www.authz.rules]] naming "metrics" lets only its
// roles read them (anonymous 401, another role 403); "*" does not name
// it; without such a rule the metrics follow allow_anonymous_view.
func TestMetricsRole(t *testing.T) {
	t.Parallel()
	users := []config.User{}
	for _, u := range []struct{ name, group string }{{"alice", "devs"}, {"prom", "monitoring"}} {
		users = append(users, config.User{Username: u.name, PasswordHash: string(must(bcrypt.GenerateFromPassword([]byte("pw-"+u.name), bcrypt.MinCost))(t)), Groups: []string{u.group}})
	}
	authn := config.Auth{Type: "users", Users: users, SessionTimeout: config.DefaultSessionTimeout}
	tests := []struct {
		name  string
		authz config.Authz
		want  map[string]int // who → status
	}{
		{"rule", config.Authz{Rules: []config.Rule{
			{Actions: []string{"*"}, Roles: []string{"admins"}},
			{Actions: []string{"metrics"}, Roles: []string{"monitoring"}},
		}}, map[string]int{"": 401, "alice": 403, "prom": 200}},
		{"star only", config.Authz{Rules: []config.Rule{{Actions: []string{"*"}, Roles: []string{"admins"}}}},
			map[string]int{"": 200, "alice": 200}},
		{"no anonymous view", config.Authz{NoAnonymousView: true}, map[string]int{"": 401, "alice": 200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newMetricsServer(t, false, authn, tc.authz)
			for who, want := range tc.want {
				req := must(http.NewRequest("GET", f.srv.URL+"/metrics", nil))(t)
				if who != "" {
					req.SetBasicAuth(who, "pw-"+who)
				}
				resp := must(http.DefaultClient.Do(req))(t)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("GET /metrics as %q: %s, want %d", who, resp.Status, want)
				}
			}
			// Health is for service managers: never behind a login.
			for _, p := range []string{"/healthz", "/readyz"} {
				resp := must(http.Get(f.srv.URL + p))(t)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET %s anonymously: %s", p, resp.Status)
				}
			}
		})
	}
}

// TestHealthReady: /healthz answers while the process does; /readyz 200
// while ready, 503 with the reason otherwise (starting, stopping).
func TestHealthReady(t *testing.T) {
	t.Parallel()
	f := newMetricsServer(t, false, config.Auth{}, config.Authz{})
	get := func(p string) (int, string) {
		resp := must(http.Get(f.srv.URL + p))(t)
		defer resp.Body.Close()
		return resp.StatusCode, string(must(io.ReadAll(resp.Body))(t))
	}
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz when ready: %d %q", code, body)
	}
	reason := "stopping"
	f.notReady.Store(&reason)
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "stopping") {
		t.Errorf("/readyz when stopping: %d %q, want 503 and the reason", code, body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz when stopping: %d %q", code, body)
	}
}
