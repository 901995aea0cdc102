package reporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// endpoint is a webhook receiver on loopback: the remote peer, speaking
// real HTTP. While down it answers as fail says; up, it records each body
// and answers 200.
type endpoint struct {
	srv *httptest.Server

	mu       sync.Mutex
	fail     func(w http.ResponseWriter, r *http.Request) bool // guarded by mu; nil: up
	got      []map[string]any                                  // guarded by mu
	paths    []string                                          // guarded by mu; of got
	tries    []time.Time                                       // guarded by mu
	headers  []http.Header                                     // guarded by mu
	arrived  chan struct{}                                     // receives after each recorded body
	attempts chan struct{}                                     // receives after each request
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{arrived: make(chan struct{}, 1000), attempts: make(chan struct{}, 1000)}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.tries = append(e.tries, time.Now())
		fail := e.fail
		e.mu.Unlock()
		defer func() { e.attempts <- struct{}{} }()
		if fail != nil && fail(w, r) {
			return
		}
		var body map[string]any
		if err := json.Unmarshal(data, &body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		e.got = append(e.got, body)
		e.paths = append(e.paths, strings.TrimPrefix(r.URL.Path, "/"))
		e.headers = append(e.headers, r.Header.Clone())
		e.mu.Unlock()
		e.arrived <- struct{}{}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) setFail(f func(w http.ResponseWriter, r *http.Request) bool) {
	e.mu.Lock()
	e.fail = f
	e.mu.Unlock()
}

// wait waits for n more recorded bodies.
func (e *endpoint) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case <-e.arrived:
		case <-timeout:
			t.Fatalf("timed out waiting for reports; got %v", e.events())
		}
	}
}

// waitTries waits for n more requests, answered or not.
func (e *endpoint) waitTries(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case <-e.attempts:
		case <-timeout:
			t.Fatalf("timed out waiting for %d tries", n)
		}
	}
}

// events lists the recorded bodies as "event:buildid".
func (e *endpoint) events() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, b := range e.got {
		out = append(out, fmt.Sprintf("%v:%v", b["event"], b["buildid"]))
	}
	return out
}

// byPath lists the recorded bodies by path, as "event:builder#number".
func (e *endpoint) byPath() map[string][]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string][]string{}
	for i, b := range e.got {
		name := "?"
		if bl, ok := b["builder"].(map[string]any); ok {
			name = fmt.Sprint(bl["name"])
		}
		out[e.paths[i]] = append(out[e.paths[i]], fmt.Sprintf("%v:%s#%v", b["event"], name, b["number"]))
	}
	return out
}

// down503 answers 503 without Retry-After.
func down503(w http.ResponseWriter, r *http.Request) bool {
	http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	return true
}

// dropConn closes the connection without an answer.
func dropConn(w http.ResponseWriter, r *http.Request) bool {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
	return true
}

// fixture is a real store with builders and a running dispatcher.
type fixture struct {
	t    *testing.T
	path string
	db   *store.DB
	d    *Dispatcher
	stop func()
	m    store.Master
	bld  map[string]store.Builder
	wk   store.Worker
	// timeout is the dispatcher's Timeout (5s unless a test sets it).
	timeout time.Duration
	log     *slog.Logger                     // the dispatcher's, nil for none
	onTry   func(reporter string, err error) // the dispatcher's OnTry, nil for none
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "state.db"), bld: map[string]store.Builder{}, timeout: 5 * time.Second}
	f.open()
	t.Cleanup(f.close)
	return f
}

func (f *fixture) open() {
	t := f.t
	t.Helper()
	db, err := store.Open(f.path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.db = db
	if f.m, err = db.EnsureMaster("m"); err != nil {
		t.Fatal(err)
	}
	for name, tags := range map[string][]string{"runtests": {"ci"}, "docs": {"doc"}, "release": nil} {
		b, err := db.EnsureBuilder(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.UpdateBuilder(b.ID, "", tags, []int64{f.m.ID}); err != nil {
			t.Fatal(err)
		}
		b.Tags = tags
		f.bld[name] = b
	}
	if f.wk, err = db.EnsureWorker("w1"); err != nil {
		t.Fatal(err)
	}
}

// start runs a dispatcher with the reporters rs.
func (f *fixture) start(rs []config.Reporter, secrets map[string]string) {
	f.t.Helper()
	f.d = New(Config{
		Store: f.db,
		Secrets: func(name string) (string, error) {
			if v, ok := secrets[name]; ok {
				return v, nil
			}
			return "", fmt.Errorf("no secret %q", name)
		},
		Log:        f.log,
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 40 * time.Millisecond,
		Timeout:    f.timeout,
		OnTry:      f.onTry,
	})
	if err := f.d.SetConfig(rs, []config.Worker{{Name: "w1", NotifyOnMissing: []string{"admin@example.org"}, MissingTimeout: time.Hour}}, "http://ci.example.org/"); err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.d.Run(ctx) }()
	f.stop = func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("dispatcher: %v", err)
		}
		f.stop = nil
	}
}

func (f *fixture) close() {
	if f.stop != nil {
		f.stop()
	}
	if f.db != nil {
		if err := f.db.Check(); err != nil {
			f.t.Errorf("store check: %v", err)
		}
		f.db.Close()
		f.db = nil
	}
}

// build starts a build of builder on branch; finish ends it.
func (f *fixture) build(builder, branch string) store.Build {
	f.t.Helper()
	b := f.bld[builder]
	_, brids, err := f.db.AddBuildset(store.NewBuildset{
		Reason: "test", BuilderIDs: []int64{b.ID},
		SourceStamps: []store.SourceStamp{{Branch: branch, Revision: "abc123", Repository: "https://github.com/o/r.git"}},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	prop := func(v any) store.Property {
		data, _ := json.Marshal(v)
		return store.Property{Value: data, Source: "test"}
	}
	bld, err := f.db.AddBuild(store.NewBuild{BuilderID: b.ID, BuildRequestID: brids[b.ID], WorkerID: f.wk.ID, MasterID: f.m.ID,
		Properties: store.Properties{"buildername": prop(builder), "branch": prop(branch)}})
	if err != nil {
		f.t.Fatal(err)
	}
	return bld
}

func (f *fixture) finish(b store.Build, results int) {
	f.t.Helper()
	if err := f.db.EndBuild(b.ID, "done", results, time.Time{}); err != nil {
		f.t.Fatal(err)
	}
}

// deliveries waits until build id's deliveries satisfy ok, and returns them.
func (f *fixture) deliveries(id int64, ok func([]store.Delivery) bool) []store.Delivery {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds, err := f.db.Deliveries(id)
		if err != nil {
			f.t.Fatal(err)
		}
		if ok(ds) {
			return ds
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("deliveries of build %d: %+v", id, ds)
		}
		time.Sleep(5 * time.Millisecond) // polls the store: the condition is the store's state
	}
}

func push(name, url string) config.Reporter {
	return config.Reporter{Type: "http_status_push", Name: name, URL: url, RetryFor: time.Hour, VerifySSL: true, ReportStart: true}
}

func states(ds []store.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Event+":"+d.State)
	}
	return out
}

// TestEndpointDownThenUp: the endpoint refuses and drops connections for
// a while; once it is up every report arrives once, in outbox order, and
// the builds' Started reports that their Finished overtook while it was
// down are superseded, never sent after them.
func TestEndpointDownThenUp(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	var n atomic.Int64 // lanes deliver at once: the handler runs concurrently
	ep.setFail(func(w http.ResponseWriter, r *http.Request) bool {
		if n.Add(1)%2 == 0 {
			return dropConn(w, r)
		}
		return down503(w, r)
	})
	f.start([]config.Reporter{push("push", ep.srv.URL)}, nil)

	b1 := f.build("runtests", "main")
	ep.waitTries(t, 3) // the first report is being retried
	f.finish(b1, store.Success)
	b2 := f.build("runtests", "main")
	f.finish(b2, store.Failure)
	b3 := f.build("docs", "main")
	ep.waitTries(t, 3)
	ep.setFail(nil)
	ep.wait(t, 3)
	f.finish(b3, store.Warnings)
	ep.wait(t, 1)

	// Order matters per key (for http_status_push, per build): builds
	// are delivered independently, each build's reports in order.
	want := map[string][]string{
		itoa(b1.ID): {"finished"},
		itoa(b2.ID): {"finished"},
		itoa(b3.ID): {"started", "finished"},
	}
	got := map[string][]string{}
	for _, ev := range ep.events() {
		event, id, _ := strings.Cut(ev, ":")
		got[id] = append(got[id], event)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reports received by build (-want +got):\n%s", diff)
	}
	ds := f.deliveries(b1.ID, func(ds []store.Delivery) bool { return len(ds) == 2 })
	if diff := cmp.Diff([]string{"started:superseded", "finished:delivered"}, states(ds)); diff != "" {
		t.Errorf("deliveries of build 1 (-want +got):\n%s", diff)
	}
	if ds[0].Attempts < 3 || ds[0].LastError == "" {
		t.Errorf("the superseded start's tries are not recorded: %+v", ds[0])
	}
	if ds[1].DeliveredAt.IsZero() {
		t.Errorf("delivered without a time: %+v", ds[1])
	}
	// Nothing more comes: every report arrived once.
	f.stop()
	if got := len(ep.events()); got != 4 {
		t.Errorf("%d reports received, want 4: %v", got, ep.events())
	}
}

// TestRetryAfter: a 429 with Retry-After: 1 is retried no sooner than a
// second later, although the backoff alone would retry in milliseconds.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	first := true
	ep.setFail(func(w http.ResponseWriter, r *http.Request) bool {
		if !first {
			return false
		}
		first = false
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return true
	})
	rc := push("push", ep.srv.URL)
	rc.ReportStart = false
	f.start([]config.Reporter{rc}, nil)
	b := f.build("runtests", "main")
	f.finish(b, store.Success)
	ep.wait(t, 1)
	ep.mu.Lock()
	tries := ep.tries
	ep.mu.Unlock()
	if len(tries) != 2 {
		t.Fatalf("%d tries, want 2", len(tries))
	}
	if gap := tries[1].Sub(tries[0]); gap < time.Second {
		t.Errorf("retried %s after a Retry-After of 1s", gap)
	}
	ds := f.deliveries(b.ID, func(ds []store.Delivery) bool { return len(ds) == 1 && ds[0].State == store.DeliveryDelivered })
	if ds[0].Attempts != 2 {
		t.Errorf("attempts: %d, want 2", ds[0].Attempts)
	}
}

// TestGiveUp: a delivery still failing after retry_for is given up with
// its last error, and the next report goes on; a 4xx is given up at once.
func TestGiveUp(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	ep.setFail(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "bad") {
			http.Error(w, "no such hook", http.StatusNotFound)
			return true
		}
		http.Error(w, "boom", http.StatusInternalServerError)
		return true
	})
	rc := push("push", ep.srv.URL)
	rc.ReportStart = false
	rc.RetryFor = 150 * time.Millisecond
	bad := push("bad", ep.srv.URL+"/bad")
	bad.ReportStart = false
	f.start([]config.Reporter{rc, bad}, nil)
	b1 := f.build("runtests", "main")
	f.finish(b1, store.Success)
	ds := f.deliveries(b1.ID, func(ds []store.Delivery) bool {
		return len(ds) == 2 && ds[0].State == store.DeliveryFailed && ds[1].State == store.DeliveryFailed
	})
	for _, d := range ds {
		switch d.Reporter {
		case "bad":
			if d.Attempts != 1 || !strings.Contains(d.LastError, "404") {
				t.Errorf("a 404 was not given up at once: %+v", d)
			}
		case "push":
			if d.Attempts < 2 || !strings.Contains(d.LastError, "gave up") || !strings.Contains(d.LastError, "500") {
				t.Errorf("retry_for ran out without its last error: %+v", d)
			}
		}
	}
	if n, err := f.db.FailedDeliveries(); err != nil || n != 2 {
		t.Errorf("failed deliveries: %d %v", n, err)
	}
	ep.setFail(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "bad") {
			http.Error(w, "no such hook", http.StatusNotFound)
			return true
		}
		return false
	})
	b2 := f.build("runtests", "main")
	f.finish(b2, store.Success)
	ep.wait(t, 1)
	if diff := cmp.Diff([]string{fmt.Sprintf("finished:%d", b2.ID)}, ep.events()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestSlowReporter: a reporter whose endpoint hangs neither slows the
// builds nor another reporter.
func TestSlowReporter(t *testing.T) {
	t.Parallel()
	fast := newEndpoint(t)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	f := newFixture(t)
	f.start([]config.Reporter{push("slow", slow.URL), push("fast", fast.srv.URL)}, nil)
	start := time.Now()
	var ids []int64
	for range 5 {
		b := f.build("runtests", "main")
		f.finish(b, store.Success)
		ids = append(ids, b.ID)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("5 builds took %s with a hanging reporter", d)
	}
	// The hanging first try shows, pending, before it ends.
	f.deliveries(ids[0], func(ds []store.Delivery) bool {
		for _, d := range ds {
			if d.Reporter == "slow" && d.State == store.DeliveryPending && d.Attempts == 0 {
				return true
			}
		}
		return false
	})
	// Each build's Finished arrives once (builds are delivered
	// independently); a Started arrives only before its build's Finished
	// (or is superseded by it).
	var want []string
	for _, id := range ids {
		want = append(want, fmt.Sprintf("finished:%d", id))
	}
	slices.Sort(want)
	for {
		fast.wait(t, 1)
		got := fast.events()
		n := 0
		for _, e := range got {
			if strings.HasPrefix(e, "finished:") {
				n++
			}
		}
		if n < len(want) {
			continue
		}
		var fin []string
		for i, e := range got {
			if strings.HasPrefix(e, "finished:") {
				fin = append(fin, e)
			} else if !slices.Contains(got[i:], "finished:"+strings.TrimPrefix(e, "started:")) {
				t.Errorf("%s arrived after its build's end: %v", e, got)
			}
		}
		slices.Sort(fin)
		if diff := cmp.Diff(want, fin); diff != "" {
			t.Errorf("fast reporter (-want +got):\n%s", diff)
		}
		break
	}
}

// TestResume: a dispatcher stopped with a delivery pending (the master
// stopping, or killed) delivers it after the store is reopened.
func TestResume(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	ep.setFail(down503)
	rc := push("push", ep.srv.URL)
	f.start([]config.Reporter{rc}, nil)
	b := f.build("runtests", "main")
	ep.waitTries(t, 2)
	f.close()

	f.open()
	f.start([]config.Reporter{rc}, nil)
	ep.setFail(nil)
	ep.wait(t, 1)
	ds := f.deliveries(b.ID, func(ds []store.Delivery) bool { return len(ds) == 1 && ds[0].State == store.DeliveryDelivered })
	if ds[0].Attempts < 2 {
		t.Errorf("the tries before the restart are forgotten: %+v", ds[0])
	}
	if diff := cmp.Diff([]string{fmt.Sprintf("started:%d", b.ID)}, ep.events()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestSecretsNeverStored: a bearer token and a URL path from secrets
// reach the endpoint, and neither the store's file nor a delivery's
// error holds them, even when the endpoint echoes them back.
func TestSecretsNeverStored(t *testing.T) {
	t.Parallel()
	const token, hookPath, literalToken = "tok-SECRET-4242", "hook-SECRET-7777", "literal-SECRET-9999"
	ep := newEndpoint(t)
	f := newFixture(t)
	fails := 0
	ep.setFail(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/literal" {
			http.Error(w, "bad: "+r.Header.Get("Authorization"), http.StatusInternalServerError)
			return true
		}
		fails++
		if fails > 2 {
			return false
		}
		http.Error(w, "bad: "+r.Header.Get("Authorization")+" at "+r.URL.Path, http.StatusInternalServerError)
		return true
	})
	rc := push("push", ep.srv.URL+"/%(secret:hook)s")
	rc.BearerToken = "%(secret:token)s"
	rc.Headers = map[string]string{"X-Builder": "%(prop:buildername)s"}
	// A second reporter whose URL, with the secret in it, refuses
	// connections: the client's error would name the URL.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	gone := push("gone", deadURL+"/%(secret:hook)s")
	gone.RetryFor = 100 * time.Millisecond
	// A third with its token written in the config as it is.
	literal := push("literal", ep.srv.URL+"/literal")
	literal.BearerToken = literalToken
	literal.RetryFor = 100 * time.Millisecond
	f.start([]config.Reporter{rc, gone, literal}, map[string]string{"token": token, "hook": hookPath})
	b := f.build("runtests", "main")
	ep.wait(t, 1)
	ep.mu.Lock()
	h := ep.headers[0]
	ep.mu.Unlock()
	if h.Get("Authorization") != "Bearer "+token || h.Get("X-Builder") != "runtests" {
		t.Errorf("headers sent: %v", h)
	}
	ds := f.deliveries(b.ID, func(ds []store.Delivery) bool {
		states := map[string]string{}
		for _, d := range ds {
			states[d.Reporter] = d.State
		}
		return states["gone"] == store.DeliveryFailed && states["push"] == store.DeliveryDelivered && states["literal"] == store.DeliveryFailed
	})
	for _, d := range ds {
		if d.LastError == "" {
			t.Errorf("no last error recorded: %+v", d)
		}
		if strings.Contains(d.LastError, token) || strings.Contains(d.LastError, hookPath) || strings.Contains(d.LastError, literalToken) {
			t.Errorf("a secret in a delivery's error: %q", d.LastError)
		}
	}
	f.close()
	data, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{token, hookPath, literalToken} {
		if strings.Contains(string(data), s) {
			t.Errorf("the store's file holds the secret %q", s)
		}
	}
}

// TestFiltersAndModes: builders, tags and branches filters, report_start,
// and buildbot's modes decide which reports a reporter gets.
func TestFiltersAndModes(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	mk := func(name string, fn func(*config.Reporter)) config.Reporter {
		rc := push(name, ep.srv.URL+"/"+name)
		rc.ReportStart = false
		fn(&rc)
		return rc
	}
	rs := []config.Reporter{
		mk("builders", func(r *config.Reporter) { r.Builders = []string{"run*"} }),
		mk("tags", func(r *config.Reporter) { r.Tags = []string{"doc"} }),
		mk("branches", func(r *config.Reporter) { r.Branches = []string{"release/*"} }),
		mk("start", func(r *config.Reporter) { r.ReportStart = true; r.Builders = []string{"release"} }),
		mk("failing", func(r *config.Reporter) { r.Mode = []string{"failing"} }),
		mk("problem", func(r *config.Reporter) { r.Mode = []string{"problem"} }),
		mk("change", func(r *config.Reporter) { r.Mode = []string{"change"} }),
		mk("default", func(r *config.Reporter) { r.Mode = config.DefaultReporterModes }),
	}
	f.start(rs, nil)
	// runtests #1 success, #2 failure, #3 failure, #4 retry, #5 success;
	// docs #1 exception on main; release #1 success on release/1.0.
	results := []int{store.Success, store.Failure, store.Failure, store.Retry, store.Success}
	for _, r := range results {
		f.finish(f.build("runtests", "main"), r)
	}
	f.finish(f.build("docs", "main"), store.Exception)
	rel := f.build("release", "release/1.0")
	// The release's start arrives before it finishes (else its Finished
	// would supersede it).
	arrived := 0
	for !slices.Contains(ep.byPath()["start"], "started:release#1") {
		ep.wait(t, 1)
		arrived++
	}
	f.finish(rel, store.Success)
	want := map[string][]string{
		"builders": {"finished:runtests#1", "finished:runtests#2", "finished:runtests#3", "finished:runtests#4", "finished:runtests#5"},
		"tags":     {"finished:docs#1"},
		"branches": {"finished:release#1"},
		"start":    {"started:release#1", "finished:release#1"},
		"failing":  {"finished:runtests#2", "finished:runtests#3"},
		// #3 fails after a failure: no problem; #4's RETRY is skipped as
		// buildbot's previous build.
		"problem": {"finished:runtests#2"},
		// #2 differs from #1, #5 from #3 (the RETRY #4 is skipped), #4
		// (retry) differs from #3 (failure).
		"change":  {"finished:runtests#2", "finished:runtests#4", "finished:runtests#5"},
		"default": {"finished:runtests#1", "finished:runtests#2", "finished:runtests#3", "finished:runtests#5", "finished:release#1"},
	}
	total := 0
	for _, v := range want {
		total += len(v)
	}
	ep.wait(t, total-arrived)
	f.stop()
	// Reports of different builds go in lanes of their own, so only a
	// build's own reports (start's) keep their order.
	got := ep.byPath()
	for name := range want {
		if name != "start" {
			slices.Sort(want[name])
			slices.Sort(got[name])
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reports per reporter (-want +got):\n%s", diff)
	}
}

// TestReconfig: a reporter added later reports what happens from then on;
// one removed stops.
func TestReconfig(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	a := push("a", ep.srv.URL+"/a")
	a.ReportStart = false
	f.start([]config.Reporter{a}, nil)
	b1 := f.build("runtests", "main")
	f.finish(b1, store.Success)
	ep.wait(t, 1)
	b := push("b", ep.srv.URL+"/b")
	b.ReportStart = false
	if err := f.d.SetConfig([]config.Reporter{b}, nil, "http://ci.example.org/"); err != nil {
		t.Fatal(err)
	}
	b2 := f.build("runtests", "main")
	f.finish(b2, store.Success)
	ep.wait(t, 1)
	f.deliveries(b2.ID, func(ds []store.Delivery) bool {
		return len(ds) == 1 && ds[0].Reporter == "b" && ds[0].State == store.DeliveryDelivered
	})
	f.stop()
	if ds, _ := f.db.Deliveries(b1.ID); len(ds) > 1 || len(ds) == 1 && ds[0].Reporter != "a" {
		t.Errorf("deliveries of the build before the reconfig: %+v", ds)
	}
	if got := len(ep.events()); got != 2 {
		t.Errorf("%d reports, want 2: %v", got, ep.events())
	}
}

// TestVerifySSLAndTimeout: verify_ssl = false delivers to an endpoint
// whose certificate nobody signed; verify_ssl = true refuses it, and the
// refusal is recorded and retried; a try that hangs past the timeout is
// cut and retried.
func TestVerifySSLAndTimeout(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string]int{}
	tlsEP := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.URL.Path]++
		mu.Unlock()
	}))
	t.Cleanup(tlsEP.Close)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })

	f := newFixture(t)
	insecure := push("insecure", tlsEP.URL+"/insecure")
	insecure.VerifySSL, insecure.ReportStart = false, false
	verified := push("verified", tlsEP.URL+"/verified")
	verified.ReportStart = false
	slow := push("slow", hang.URL)
	slow.ReportStart = false
	f.timeout = 100 * time.Millisecond
	f.start([]config.Reporter{insecure, verified, slow}, nil)
	b := f.build("runtests", "main")
	f.finish(b, store.Success)
	f.deliveries(b.ID, func(ds []store.Delivery) bool {
		var ok, refused, cut bool
		for _, d := range ds {
			switch d.Reporter {
			case "insecure":
				ok = d.State == store.DeliveryDelivered
			case "verified":
				refused = d.State == store.DeliveryPending && d.Attempts >= 2 && strings.Contains(d.LastError, "certificate")
			case "slow":
				cut = d.State == store.DeliveryPending && d.Attempts >= 2 && (strings.Contains(d.LastError, "deadline") || strings.Contains(d.LastError, "timeout"))
			}
		}
		return ok && refused && cut
	})
	mu.Lock()
	defer mu.Unlock()
	if got["/verified"] != 0 || got["/insecure"] != 1 {
		t.Errorf("requests received: %v", got)
	}
}
