package reporter

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// statusForge is a GitHub-like forge on loopback that fails the statuses
// of the repositories in broken with 500 and records the others' as
// "owner/repo:state".
type statusForge struct {
	url    string
	mu     sync.Mutex
	broken map[string]bool // guarded by mu
	got    []string        // guarded by mu
	tries  map[string]int  // guarded by mu: by owner/repo
	// busy counts the requests being answered; idle is signalled when
	// it falls to 0 (see fix).
	busy int
	idle *sync.Cond
}

func newStatusForge(t *testing.T, broken ...string) *statusForge {
	f := &statusForge{broken: map[string]bool{}, tries: map[string]int{}}
	f.idle = sync.NewCond(&f.mu)
	for _, b := range broken {
		f.broken[b] = true
	}
	f.url = newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.busy++
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			if f.busy--; f.busy == 0 {
				f.idle.Broadcast()
			}
			f.mu.Unlock()
		}()
		// /repos/OWNER/REPO/statuses/SHA
		parts := strings.Split(r.URL.Path, "/")
		if len(parts) != 6 {
			http.Error(w, "no such path", http.StatusNotFound)
			return
		}
		repo := parts[2] + "/" + parts[3]
		var body struct{ State string }
		json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.tries[repo]++
		// A try its dispatcher gave up (stopped) is not a delivery: the
		// client is gone and would send it again.
		if r.Context().Err() != nil {
			return
		}
		if f.broken[repo] {
			http.Error(w, `{"message":"internal error"}`, http.StatusInternalServerError)
			return
		}
		f.got = append(f.got, repo+":"+body.State)
		w.WriteHeader(http.StatusCreated)
	})
	return f
}

// fix makes repo's statuses succeed from now on, once the requests being
// answered are done: a try a stopped dispatcher left under way must not
// succeed after the fix (the restarted one sends it again).
func (f *statusForge) fix(repo string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.busy > 0 {
		f.idle.Wait()
	}
	delete(f.broken, repo)
}

func (f *statusForge) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func (f *statusForge) triesOf(repo string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries[repo]
}

func ghStatus(base string) config.Reporter {
	return config.Reporter{Type: "github_status", Name: "gh", BaseURL: base, Token: "tok-lanes-1234",
		Context: defaultContext, RetryFor: time.Hour, VerifySSL: true, ReportStart: true}
}

// delivered reports whether every one of ds is delivered or superseded,
// and the Finished one delivered.
func delivered(ds []store.Delivery) bool {
	fin := false
	for _, d := range ds {
		switch {
		case d.Event == Finished && d.State == store.DeliveryDelivered:
			fin = true
		case d.State != store.DeliveryDelivered && d.State != store.DeliverySuperseded:
			return false
		}
	}
	return fin
}

// TestLaneFailingKeyDoesNotBlockOthers: one repository's statuses failing
// with 500 (retried for an hour) do not hold back another repository's:
// order matters per commit, not per reporter.
func TestLaneFailingKeyDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	forge := newStatusForge(t, "broken/repo")
	f := newFixture(t)
	f.start([]config.Reporter{ghStatus(forge.url)}, nil)
	broken := f.buildOf("runtests", store.SourceStamp{Repository: "https://github.com/broken/repo.git", Revision: testSHA})
	f.finish(broken, store.Failure)
	good := f.buildOf("docs", store.SourceStamp{Repository: "https://github.com/acme/widget.git", Revision: testSHA2})
	f.finish(good, store.Success)
	f.deliveries(good.ID, delivered)
	if got := forge.received(); len(got) == 0 || got[len(got)-1] != "acme/widget:success" {
		t.Errorf("acme/widget's statuses: %v", got)
	}
	ds := f.deliveries(broken.ID, func(ds []store.Delivery) bool {
		for _, d := range ds {
			if d.Event == Finished {
				return d.State == store.DeliveryPending
			}
		}
		return false
	})
	if forge.triesOf("broken/repo") == 0 {
		t.Errorf("broken/repo was never tried: %+v", ds)
	}
	// Once the broken forge is back, its statuses arrive too, the start
	// never after the end.
	forge.fix("broken/repo")
	f.deliveries(broken.ID, delivered)
	var states []string
	for _, g := range forge.received() {
		if repo, state, _ := strings.Cut(g, ":"); repo == "broken/repo" {
			states = append(states, state)
		}
	}
	if len(states) == 0 || states[len(states)-1] != "failure" {
		t.Errorf("broken/repo ended on %v, want failure last", states)
	}
}

// TestLanesDeliverAtOnce: a 200 ms endpoint gets several reports of one
// reporter at once (different builds), at most Concurrency (4).
func TestLanesDeliverAtOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	inFlight, peak, n := 0, 0, 0
	url := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(200 * time.Millisecond) // the endpoint is slow: what the test is about
		mu.Lock()
		inFlight--
		n++
		mu.Unlock()
	})
	f := newFixture(t)
	rc := push("push", url)
	rc.ReportStart = false
	f.start([]config.Reporter{rc}, nil)
	var ids []int64
	for range 8 {
		b := f.build("runtests", "main")
		f.finish(b, store.Success)
		ids = append(ids, b.ID)
	}
	for _, id := range ids {
		f.deliveries(id, delivered)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak < 2 || peak > 4 {
		t.Errorf("at most %d reports at once, want 2 to 4", peak)
	}
	if n != 8 {
		t.Errorf("%d reports, want 8", n)
	}
}

// TestLaneRestartSendsNothingTwice: a later key delivered while an
// earlier one is still pending is not sent again after a restart (the
// cursor stays before the pending one); the pending one is.
func TestLaneRestartSendsNothingTwice(t *testing.T) {
	t.Parallel()
	forge := newStatusForge(t, "broken/repo")
	f := newFixture(t)
	rc := ghStatus(forge.url)
	rc.ReportStart = false
	f.start([]config.Reporter{rc}, nil)
	broken := f.buildOf("runtests", store.SourceStamp{Repository: "https://github.com/broken/repo.git", Revision: testSHA})
	f.finish(broken, store.Failure)
	good := f.buildOf("docs", store.SourceStamp{Repository: "https://github.com/acme/widget.git", Revision: testSHA2})
	f.finish(good, store.Success)
	f.deliveries(good.ID, delivered)
	f.close()

	forge.fix("broken/repo")
	f.open()
	f.start([]config.Reporter{rc}, nil)
	f.deliveries(broken.ID, delivered)
	f.stop()
	count := map[string]int{}
	for _, g := range forge.received() {
		count[g]++
	}
	if count["acme/widget:success"] != 1 || count["broken/repo:failure"] != 1 {
		t.Errorf("statuses received: %v, want each once", forge.received())
	}
}

// TestDeliveredErrorIsLabelled: a report delivered after a failed try
// keeps the try's error labelled "before: ", and a forge's Retry-After
// is said once in it.
func TestDeliveredErrorIsLabelled(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	tries := 0
	base := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		tries++
		if tries == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, `{"message":"slow down"}`, http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	f := newFixture(t)
	rc := ghStatus(base)
	rc.ReportStart = false
	f.start([]config.Reporter{rc}, nil)
	b := f.buildOf("runtests", store.SourceStamp{Repository: "https://github.com/acme/widget.git", Revision: testSHA})
	f.finish(b, store.Success)
	ds := f.deliveries(b.ID, delivered)
	var fin store.Delivery
	for _, d := range ds {
		if d.Event == Finished {
			fin = d
		}
	}
	if !strings.HasPrefix(fin.LastError, "before: ") || !strings.Contains(fin.LastError, "slow down") {
		t.Errorf("delivered with last error %q, want it labelled \"before: \"", fin.LastError)
	}
	if n := strings.Count(fin.LastError, "(retry after"); n != 1 {
		t.Errorf("%q says the retry's wait %d times, want once", fin.LastError, n)
	}
}
