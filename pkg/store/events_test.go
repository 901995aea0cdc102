package store

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder is a Publisher that records keys and checks, as each event
// arrives, that its record is what the store holds: the write committed.
type recorder struct {
	t  *testing.T
	db Store

	mu   sync.Mutex
	keys []string // guarded by mu
}

func (r *recorder) Publish(key string, rec any) {
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	var stored any
	var err error
	switch v := rec.(type) {
	case Master:
		var ms []Master
		if ms, err = r.db.Masters(); err == nil {
			err = fmt.Errorf("master %d: %w", v.ID, ErrNotFound)
			for _, m := range ms {
				if m.ID == v.ID {
					stored, err = m, nil
				}
			}
		}
	case Builder:
		stored, err = r.db.Builder(v.ID)
	case Worker:
		stored, err = r.db.Worker(v.ID)
	case Buildset:
		stored, err = r.db.Buildset(v.ID)
	case BuildRequest:
		stored, err = r.db.BuildRequest(v.ID)
	case Build:
		stored, err = r.db.Build(v.ID)
	case Step:
		stored, err = r.db.Step(v.ID)
	case Log:
		stored, err = r.db.Log(v.ID)
	case Change:
		stored, err = r.db.Change(v.ID)
	case Properties:
		stored = rec // checked through the build's update
	default:
		err = fmt.Errorf("unexpected record %T", rec)
	}
	if err != nil {
		r.t.Errorf("%s: %v", key, err)
		return
	}
	if d := cmp.Diff(stored, rec); d != "" {
		r.t.Errorf("%s: record is not the committed one (-stored +published):\n%s", key, d)
	}
}

// take returns the keys published since the last take.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.keys
	r.keys = nil
	return k
}

// openEvents opens a new store of be whose events a recorder records.
func openEvents(t *testing.T, be backend) (Store, *recorder) {
	t.Helper()
	rec := &recorder{t: t}
	db := be.openWith(t, Options{Events: rec})
	rec.db = db
	return db, rec
}

// Each write publishes its keys once, after it has committed, in buildbot's
// key formats; a failed write publishes nothing.
func TestEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db, rec := openEvents(t, be)
		var (
			m    Master
			bldr Builder
			w    Worker
			b    Build
			s    Step
			l    Log
			brid int64
		)
		steps := []struct {
			name string
			do   func() error
			want []string
		}{
			{"ensure master", func() (err error) { m, err = db.EnsureMaster("m"); return err }, []string{"masters/1/started"}},
			{"ensure builder", func() (err error) { bldr, err = db.EnsureBuilder("a"); return err }, []string{"builders/1/new"}},
			{"ensure builder again", func() (err error) { _, err = db.EnsureBuilder("a"); return err }, nil},
			{"update builder", func() error { return db.UpdateBuilder(bldr.ID, "d", nil, []int64{m.ID}) }, []string{"builders/1/update"}},
			{"ensure worker", func() (err error) { w, err = db.EnsureWorker("w"); return err }, []string{"workers/1/new"}},
			{"configure worker", func() error {
				return db.SetWorkerConfiguredOn(w.ID, []BuilderMaster{{bldr.ID, m.ID}})
			}, []string{"workers/1/update"}},
			{"connect worker", func() error { return db.WorkerConnected(w.ID, m.ID, nil) }, []string{"workers/1/connected"}},
			{"pause worker", func() error { return db.SetWorkerPaused(w.ID, true, false) }, []string{"workers/1/state_updated"}},
			{"add change", func() error { _, err := db.AddChange(Change{Revision: "r1"}); return err }, []string{"changes/1/new"}},
			{"add changes", func() error {
				_, err := db.AddChanges([]Change{{Revision: "r2"}, {Revision: "r3"}})
				return err
			}, []string{"changes/2/new", "changes/3/new"}},
			{"add changes and state", func() error {
				_, err := db.AddChangesAndState([]Change{{Revision: "r4"}}, "poller", "k", json.RawMessage(`1`))
				return err
			}, []string{"changes/4/new"}},
			{"set state", func() error { return db.SetState("poller", "k", json.RawMessage(`2`)) }, nil},
			{"add buildset", func() error {
				var brids map[int64]int64
				var err error
				_, brids, err = db.AddBuildset(NewBuildset{BuilderIDs: []int64{bldr.ID}, ChangeIDs: []int64{1}})
				brid = brids[bldr.ID]
				return err
			}, []string{"buildsets/1/builders/1/buildrequests/1/new", "buildrequests/1/new", "builders/1/buildrequests/1/new", "buildsets/1/new"}},
			{"claim", func() error { return db.ClaimBuildRequest(brid, m.ID, t0) }, []string{
				"buildsets/1/builders/1/buildrequests/1/claimed", "buildrequests/1/claimed", "builders/1/buildrequests/1/claimed",
			}},
			{"claim again fails", func() error { return db.ClaimBuildRequest(brid, m.ID, t0) }, nil},
			{"add build", func() (err error) {
				b, err = db.AddBuild(NewBuild{BuilderID: bldr.ID, BuildRequestID: brid, WorkerID: w.ID, MasterID: m.ID})
				return err
			}, []string{"builders/1/builds/1/new", "builds/1/new", "workers/1/builds/1/new"}},
			{"add build to no builder fails", func() error { _, err := db.AddBuild(NewBuild{BuilderID: 99}); return err }, nil},
			{"build state", func() error { return db.SetBuildStateString(b.ID, "building") }, []string{
				"builders/1/builds/1/update", "builds/1/update", "workers/1/builds/1/update",
			}},
			{"build property", func() error {
				return db.SetBuildProperty(b.ID, "p", Property{Value: json.RawMessage(`1`), Source: "test"})
			}, []string{"builders/1/builds/1/update", "builds/1/update", "workers/1/builds/1/update", "builds/1/properties/update"}},
			{"add step", func() (err error) { s, err = db.AddStep(b.ID, "compile"); return err }, []string{"builds/1/steps/1/new", "steps/1/new"}},
			{"start step", func() error { return db.StartStep(s.ID, t0) }, []string{"builds/1/steps/1/started", "steps/1/started"}},
			{"step state", func() error { return db.SetStepStateString(s.ID, "compiling") }, []string{"builds/1/steps/1/updated", "steps/1/updated"}},
			{"step url", func() error { return db.AddStepURL(s.ID, "u", "http://x") }, []string{"builds/1/steps/1/updated", "steps/1/updated"}},
			{"step hidden", func() error { return db.SetStepHidden(s.ID, false) }, []string{"builds/1/steps/1/updated", "steps/1/updated"}},
			{"add log", func() (err error) { l, err = db.AddLog(s.ID, "std io", "s"); return err }, []string{"logs/1/new", "steps/1/logs/std_io/new"}},
			{"add log twice fails", func() error { _, err := db.AddLog(s.ID, "std io", "s"); return err }, nil},
			{"append", func() error { _, err := db.AppendLog(l.ID, "oa\nob\n"); return err }, []string{"logs/1/append", "steps/1/logs/std_io/append"}},
			{"finish log", func() error { return db.FinishLog(l.ID) }, []string{"logs/1/finished", "steps/1/logs/std_io/finished"}},
			{"append to finished log fails", func() error { _, err := db.AppendLog(l.ID, "oc\n"); return err }, nil},
			{"finish step", func() error { return db.FinishStep(s.ID, Success, t0) }, []string{"builds/1/steps/1/finished", "steps/1/finished"}},
			{"finish build", func() error { return db.FinishBuild(b.ID, Success, t0) }, []string{
				"builders/1/builds/1/finished", "builds/1/finished", "workers/1/builds/1/finished",
			}},
			{"complete request", func() error { return db.CompleteBuildRequest(brid, Success, t0) }, []string{
				"buildsets/1/builders/1/buildrequests/1/complete", "buildrequests/1/complete", "builders/1/buildrequests/1/complete",
				"buildsets/1/complete",
			}},
			{"complete request again fails", func() error { return db.CompleteBuildRequest(brid, Success, t0) }, nil},
			{"unclaim a complete request", func() error { return db.UnclaimBuildRequest(brid) }, nil},
			{"disconnect worker", func() error { return db.WorkerDisconnected(w.ID, m.ID) }, []string{"workers/1/disconnected"}},
			{"master stopped", func() error { return db.SetMasterActive(m.ID, false, t0) }, []string{"masters/1/stopped"}},
		}
		for _, st := range steps {
			err := st.do()
			fails := len(st.name) > 6 && st.name[len(st.name)-6:] == " fails"
			if fails != (err != nil) {
				t.Fatalf("%s: err %v", st.name, err)
			}
			if d := cmp.Diff(st.want, rec.take()); d != "" {
				t.Errorf("%s: keys (-want +got):\n%s", st.name, d)
			}
		}
	})
}

// runningBuild makes master m, builder a, and a build of a's one request
// that m claimed.
func runningBuild(t *testing.T, db Store) (Master, Build) {
	t.Helper()
	m := must[Master](t)(db.EnsureMaster("m"))
	a := must[Builder](t)(db.EnsureBuilder("a"))
	_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}})
	ok(t, err)
	ok(t, db.ClaimBuildRequest(brids[a.ID], m.ID, t0))
	return m, must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids[a.ID], WorkerID: 1, MasterID: m.ID}))
}

func TestAbandonBuildsEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db, rec := openEvents(t, be)
		m, b := runningBuild(t, db)
		done := must[Step](t)(db.AddStep(b.ID, "done"))
		ok(t, db.FinishStep(done.ID, Success, t0))
		s := must[Step](t)(db.AddStep(b.ID, "running"))
		must[Log](t)(db.AddLog(s.ID, "stdio", "s"))
		rec.take()
		ended, err := db.AbandonBuilds(m.ID, t0)
		ok(t, err)
		if len(ended) != 1 {
			t.Fatalf("ended %v", ended)
		}
		want := []string{
			"logs/1/finished", "steps/2/logs/stdio/finished",
			"builds/1/steps/2/finished", "steps/2/finished",
			"builders/1/builds/1/finished", "builds/1/finished", "workers/1/builds/1/finished",
			"buildsets/1/builders/1/buildrequests/1/unclaimed", "buildrequests/1/unclaimed", "builders/1/buildrequests/1/unclaimed",
		}
		if d := cmp.Diff(want, rec.take()); d != "" {
			t.Errorf("keys (-want +got):\n%s", d)
		}
	})
}

// Events of concurrent writes leave in commit order: a log's appends are
// published with increasing line counts.
func TestEventsCommitOrder(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		var mu sync.Mutex
		var counts []int64
		pub := publisherFunc(func(key string, rec any) {
			if l, ok := rec.(Log); ok && len(key) > 5 && key[:5] == "logs/" {
				mu.Lock()
				counts = append(counts, l.NumLines)
				mu.Unlock()
			}
		})
		db := be.openWith(t, Options{Events: pub})
		a := must[Builder](t)(db.EnsureBuilder("a"))
		b := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID}))
		s := must[Step](t)(db.AddStep(b.ID, "s"))
		l := must[Log](t)(db.AddLog(s.ID, "stdio", "s"))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 20 {
					if _, err := db.AppendLog(l.ID, "ox\n"); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(counts) != 1+160 {
			t.Fatalf("%d log events", len(counts))
		}
		for i, n := range counts {
			if n != int64(i) {
				t.Fatalf("event %d has num_lines %d: out of commit order", i, n)
			}
		}
	})
}

type publisherFunc func(key string, rec any)

func (f publisherFunc) Publish(key string, rec any) { f(key, rec) }

// StartNewStep, EndStep and EndBuild each do in one transaction what two
// or three writes did, and publish the same keys in the same order, each
// with the record as committed.
func TestCombinedWrites(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db, rec := openEvents(t, be)
		_, b := runningBuild(t, db)
		rec.take()

		one := func(what string, do func() error, want ...string) {
			t.Helper()
			// On bbolt, count the transactions (group commit counts them);
			// PostgreSQL's are its own.
			bdb, isBolt := db.(*DB)
			var before int64
			if isBolt {
				before = bdb.writes.commits.Load()
			}
			ok(t, do())
			if isBolt {
				if n := bdb.writes.commits.Load() - before; n != 1 {
					t.Errorf("%s: %d transactions, want 1", what, n)
				}
			}
			if d := cmp.Diff(want, rec.take()); d != "" {
				t.Errorf("%s: keys (-want +got):\n%s", what, d)
			}
		}
		var s Step
		one("start new step", func() (err error) { s, err = db.StartNewStep(b.ID, "compile", t0); return err },
			"builds/1/steps/1/new", "steps/1/new", "builds/1/steps/1/started", "steps/1/started")
		if s.Name != "compile" || !s.StartedAt.Equal(t0) || s.Complete {
			t.Errorf("step = %+v, want compile started at %v", s, t0)
		}
		one("end step", func() error { return db.EndStep(s.ID, "compiled", Warnings, t0.Add(time.Second)) },
			"builds/1/steps/1/updated", "steps/1/updated", "builds/1/steps/1/finished", "steps/1/finished")
		one("end build", func() error { return db.EndBuild(b.ID, "warnings", Warnings, t0.Add(2*time.Second)) },
			"builders/1/builds/1/update", "builds/1/update", "workers/1/builds/1/update",
			"builders/1/builds/1/finished", "builds/1/finished", "workers/1/builds/1/finished")

		steps := must[[]Step](t)(db.Steps(b.ID))
		if len(steps) != 1 || steps[0].StateString != "compiled" || !steps[0].Complete || steps[0].Results != Warnings ||
			!steps[0].CompleteAt.Equal(t0.Add(time.Second)) {
			t.Errorf("steps = %+v", steps)
		}
		got := must[Build](t)(db.Build(b.ID))
		if got.StateString != "warnings" || !got.Complete || got.Results != Warnings || !got.CompleteAt.Equal(t0.Add(2*time.Second)) {
			t.Errorf("build = %+v", got)
		}
		incomplete := false
		if n := must[int](t)(db.CountBuilds(BuildFilter{Complete: &incomplete})); n != 0 {
			t.Errorf("%d incomplete builds after EndBuild", n)
		}
		// EndStep of no step fails and publishes nothing.
		if err := db.EndStep(99, "x", Success, t0); err == nil {
			t.Error("EndStep of no step: no error")
		}
		if k := rec.take(); len(k) != 0 {
			t.Errorf("a failed EndStep published %v", k)
		}
	})
}
