package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// keptEvents is a Publisher keeping every event.
type keptEvents struct {
	mu  sync.Mutex
	evs []bufferedEvent // guarded by mu
}

func (r *keptEvents) Publish(key string, record any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, bufferedEvent{key, record})
}

func (r *keptEvents) events() []bufferedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

// openPGTest opens a PG store on url; cleanup checks and closes it.
func openPGTest(t testing.TB, url string, opts Options) *PG {
	t.Helper()
	p, err := OpenPG(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		p.Close()
	})
	return p
}

// coreScenario calls every core method of s, good calls and bad, and
// returns what each returned (errors as their text).
func coreScenario(s Store) []any {
	var log []any
	rec := func(name string, v ...any) {
		for i, x := range v {
			if err, ok := x.(error); ok {
				v[i] = "error: " + err.Error()
			}
		}
		log = append(log, append([]any{name}, v...))
	}
	errOf := func(err error) any {
		if err == nil {
			return nil
		}
		return err
	}
	m1, err := s.EnsureMaster("m1")
	rec("EnsureMaster", m1, errOf(err))
	m2, err := s.EnsureMaster("m2")
	rec("EnsureMaster", m2, errOf(err))
	_, err = s.EnsureMaster("")
	rec("EnsureMaster empty", errOf(err))
	m1b, err := s.EnsureMaster("m1")
	rec("EnsureMaster again", m1b.ID, errOf(err))
	rec("SetMasterActive", errOf(s.SetMasterActive(m2.ID, false, t0)))
	rec("SetMasterActive missing", errOf(s.SetMasterActive(99, true, t0)))
	rec("SetMasterWorkerCert", errOf(s.SetMasterWorkerCert(m1.ID, t0.Add(time.Hour))))
	rec("SetMasterWorkerCert missing", errOf(s.SetMasterWorkerCert(99, t0)))
	ms, err := s.Masters()
	rec("Masters", ms, errOf(err))

	a, err := s.EnsureBuilder("a")
	rec("EnsureBuilder", a, errOf(err))
	b, err := s.EnsureBuilder("b")
	rec("EnsureBuilder", b, errOf(err))
	a2, err := s.EnsureBuilder("a")
	rec("EnsureBuilder again", a2, errOf(err))
	_, err = s.EnsureBuilder("")
	rec("EnsureBuilder empty", errOf(err))
	rec("UpdateBuilder", errOf(s.UpdateBuilder(a.ID, "desc", []string{"t1", "t2"}, []int64{m1.ID, m2.ID})))
	rec("UpdateBuilder empty", errOf(s.UpdateBuilder(b.ID, "", []string{}, nil)))
	rec("UpdateBuilder missing", errOf(s.UpdateBuilder(99, "", nil, nil)))
	bs, err := s.Builders()
	rec("Builders", bs, errOf(err))
	b1, err := s.Builder(a.ID)
	rec("Builder", b1, errOf(err))
	b1, err = s.Builder(99)
	rec("Builder missing", b1, errOf(err), errors.Is(err, ErrNotFound))
	b1, err = s.BuilderByName("b")
	rec("BuilderByName", b1, errOf(err))
	b1, err = s.BuilderByName("zz")
	rec("BuilderByName missing", b1, errOf(err), errors.Is(err, ErrNotFound))

	w, err := s.EnsureWorker("w1")
	rec("EnsureWorker", w, errOf(err))
	w2, err := s.EnsureWorker("w1")
	rec("EnsureWorker again", w2, errOf(err))
	_, err = s.EnsureWorker("")
	rec("EnsureWorker empty", errOf(err))
	rec("SetWorkerConfiguredOn", errOf(s.SetWorkerConfiguredOn(w.ID, []BuilderMaster{{a.ID, m1.ID}, {b.ID, m2.ID}})))
	rec("WorkerConnected", errOf(s.WorkerConnected(w.ID, m1.ID, map[string]string{"os": "linux"})))
	rec("WorkerConnected 2", errOf(s.WorkerConnected(w.ID, m2.ID, map[string]string{"os": "freebsd"})))
	rec("WorkerConnected again", errOf(s.WorkerConnected(w.ID, m2.ID, nil)))
	rec("WorkerDisconnected", errOf(s.WorkerDisconnected(w.ID, m1.ID)))
	rec("WorkerDisconnected last", errOf(s.WorkerDisconnected(w.ID, m2.ID)))
	rec("SetWorkerPaused", errOf(s.SetWorkerPaused(w.ID, true, true)))
	rec("SetWorkerPaused missing", errOf(s.SetWorkerPaused(99, true, true)))
	rec("WorkerConnected missing", errOf(s.WorkerConnected(99, 1, nil)))
	ws, err := s.Workers()
	rec("Workers", ws, errOf(err))
	w2, err = s.Worker(w.ID)
	rec("Worker", w2, errOf(err))
	w2, err = s.Worker(99)
	rec("Worker missing", w2, errOf(err), errors.Is(err, ErrNotFound))
	w2, err = s.WorkerByName("w1")
	rec("WorkerByName", w2, errOf(err))
	w2, err = s.WorkerByName("nope")
	rec("WorkerByName missing", w2, errOf(err), errors.Is(err, ErrNotFound))

	c1, err := s.AddChange(Change{Author: "x", Branch: "main", Revision: "r1", Repository: "repo", Project: "p",
		When: t0, Files: []string{"a.go"}, Properties: Properties{"k": {Value: json.RawMessage(`1`), Source: "Change"}}})
	rec("AddChange", c1, errOf(err))
	c2, err := s.AddChange(Change{Branch: "main", Revision: "r2", Repository: "repo", Project: "p", When: t0})
	rec("AddChange", c2, errOf(err))
	c3, err := s.AddChange(Change{Branch: "dev", Revision: "r1", Repository: "repo", Project: "p", When: t0})
	rec("AddChange other branch", c3, errOf(err))
	c4, err := s.AddChange(Change{Branch: "main", Revision: "r1", Repository: "repo", Project: "p", When: t0})
	rec("AddChange same source as c1", c4, errOf(err))
	cs, err := s.AddChanges([]Change{
		{Branch: "main", Revision: "r3", Repository: "repo", Project: "p", When: t0},
		{Branch: "main", Revision: "r4", Repository: "repo", Project: "p", When: t0, Codebase: "cb"},
		{Branch: "main", Revision: "r5", Repository: "repo", Project: "p", When: t0},
	})
	rec("AddChanges", cs, errOf(err))
	cs, err = s.AddChanges(nil)
	rec("AddChanges none", cs, errOf(err))
	cs, err = s.AddChangesAndState([]Change{{Branch: "main", Revision: "r6", Repository: "other", When: t0}},
		"poller", "lastRev", json.RawMessage(`{"main": "r6"}`))
	rec("AddChangesAndState", cs, errOf(err))
	cs, err = s.AddChangesAndState(nil, "poller", "lastRev", json.RawMessage(`{bad`))
	rec("AddChangesAndState bad", cs, errOf(err))
	cs, err = s.AddChangesAndState(nil, "", "k", json.RawMessage(`1`))
	rec("AddChangesAndState no name", cs, errOf(err))
	// git allows any bytes in a branch name; JSON stores U+FFFD for each
	// byte that is not UTF-8.
	c5, err := s.AddChange(Change{Branch: "br\xffx", Revision: "r7", Repository: "r\xfe\xfd", When: t0})
	rec("AddChange not UTF-8", c5, errOf(err))
	c6, err := s.AddChange(Change{Branch: "br\xffx", Revision: "r8", Repository: "r\xfe\xfd", When: t0})
	rec("AddChange not UTF-8 again", c6, errOf(err))
	c7, err := s.AddChange(Change{Branch: "br\ufffdx", Revision: "r8", Repository: "r\ufffd\ufffd", When: t0})
	rec("AddChange as read back", c7, errOf(err))
	for _, f := range []ChangeFilter{{Branch: "br\xffx"}, {Branch: "br\ufffdx"}, {Repository: "r\ufffd\ufffd"}, {Repository: "r\ufffd"}} {
		cs, err := s.Changes(f)
		rec(fmt.Sprintf("Changes %q", f.Branch+"/"+f.Repository), cs, errOf(err))
		n, err := s.CountChanges(f)
		rec(fmt.Sprintf("CountChanges %q", f.Branch+"/"+f.Repository), n, errOf(err))
	}
	ch, err := s.Change(c2.ID)
	rec("Change", ch, errOf(err))
	ch, err = s.Change(99)
	rec("Change missing", ch, errOf(err), errors.Is(err, ErrNotFound))
	for _, f := range []ChangeFilter{
		{}, {Desc: true}, {Limit: 2}, {Offset: 1, Limit: 2}, {Desc: true, Offset: 2, Limit: 3},
		{Branch: "main"}, {Branch: "main", Desc: true, Limit: 2}, {Repository: "other"}, {Project: "p", Branch: "dev"},
		{Branch: "none"}, {Offset: 100},
	} {
		cs, err := s.Changes(f)
		rec(fmt.Sprintf("Changes %+v", f), cs, errOf(err))
		n, err := s.CountChanges(f)
		rec(fmt.Sprintf("CountChanges %+v", f), n, errOf(err))
	}
	v, found, err := s.GetState("poller", "lastRev")
	rec("GetState", string(v), found, errOf(err))
	v, found, err = s.GetState("poller", "none")
	rec("GetState missing", v == nil, found, errOf(err))
	rec("SetState", errOf(s.SetState("poller", "k2", json.RawMessage(` [1, 2]  `))))
	rec("SetState replace", errOf(s.SetState("poller", "k2", json.RawMessage(`null`))))
	rec("SetState bad", errOf(s.SetState("poller", "k2", json.RawMessage(`nul`))))
	rec("SetState nul", errOf(s.SetState("a\x00b", "k2", json.RawMessage(`1`))))
	v, found, err = s.GetState("poller", "k2")
	rec("GetState null", string(v), found, errOf(err))
	rec("SetState spaces", errOf(s.SetState("poller", "k3", json.RawMessage(` [1, 2]  `))))
	v, found, err = s.GetState("poller", "k3")
	rec("GetState spaces", string(v), found, errOf(err))
	v, found, err = s.GetState("a\x00b", "k\xff")
	rec("GetState NUL", v == nil, found, errOf(err))

	ss := []SourceStamp{{Branch: "main", Revision: "r1", Repository: "repo", Project: "p"}}
	bs1, brids1, err := s.AddBuildset(NewBuildset{Reason: "r", ExternalID: "x", SchedulerName: "sch",
		SourceStamps: ss, ChangeIDs: []int64{c1.ID, c4.ID}, BuilderIDs: []int64{a.ID, b.ID},
		Properties: Properties{"p": {Value: json.RawMessage(`"v"`), Source: "Scheduler"}}, Priority: 2, SubmittedAt: t0})
	rec("AddBuildset", bs1, brids1, errOf(err))
	bs2, brids2, err := s.AddBuildset(NewBuildset{SourceStamps: []SourceStamp{
		{Branch: "main", Revision: "r9", Repository: "repo", Project: "p"},
		{Branch: "br\xffx", Revision: "r8", Repository: "r\xfe\xfd"},
		{Codebase: "lib", Branch: "main", Revision: "r1", Repository: "lib", Project: "p"},
	}, BuilderIDs: []int64{b.ID}, SubmittedAt: t0.Add(time.Nanosecond), WaitedFor: true, RebuiltBuildID: 7})
	rec("AddBuildset 2", bs2, brids2, errOf(err))
	bs3, brids3, err := s.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}, SubmittedAt: t0, Priority: 5})
	rec("AddBuildset 3", bs3, brids3, errOf(err))
	bs4, brids4, err := s.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}, SubmittedAt: t0.Add(-time.Nanosecond)})
	rec("AddBuildset 4", bs4, brids4, errOf(err))
	for _, nb := range []NewBuildset{
		{},
		{BuilderIDs: []int64{a.ID, a.ID}},
		{BuilderIDs: []int64{a.ID, 99}},
		{BuilderIDs: []int64{a.ID}, ParentBuildID: 99},
		{BuilderIDs: []int64{a.ID}, ChangeIDs: []int64{c1.ID, 99}},
	} {
		id, brids, err := s.AddBuildset(nb)
		rec(fmt.Sprintf("AddBuildset bad %+v", nb), id, brids, errOf(err), errors.Is(err, ErrNotFound))
	}
	bs5, brids5, err := s.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}, SubmittedAt: t0})
	rec("AddBuildset after refusals", bs5, brids5, errOf(err))
	// Later ids that come first: a higher priority, an older submission.
	for _, nb := range []NewBuildset{
		{BuilderIDs: []int64{b.ID}, SubmittedAt: t0, Priority: 9},
		{BuilderIDs: []int64{b.ID}, SubmittedAt: t0.Add(-time.Nanosecond)},
		{BuilderIDs: []int64{b.ID}, SubmittedAt: t0.Add(-time.Nanosecond), Priority: -1},
	} {
		id, brids, err := s.AddBuildset(nb)
		rec("AddBuildset to reorder", id, brids, errOf(err))
	}

	got, err := s.Buildset(bs1)
	rec("Buildset", got, errOf(err))
	got, err = s.Buildset(99)
	rec("Buildset missing", got, errOf(err), errors.Is(err, ErrNotFound))
	sst, err := s.SourceStamp(got.ID + 1)
	rec("SourceStamp", sst, errOf(err))
	sst, err = s.SourceStamp(99)
	rec("SourceStamp missing", sst, errOf(err), errors.Is(err, ErrNotFound))
	for id := range int64(6) {
		bss, err := s.BuildsetsOfSourceStamp(id)
		rec(fmt.Sprintf("BuildsetsOfSourceStamp %d", id), bss, errOf(err))
	}

	rec("Claim", errOf(s.ClaimBuildRequest(brids1[a.ID], m1.ID, t0)))
	err = s.ClaimBuildRequest(brids1[a.ID], m2.ID, t0)
	rec("Claim again", errOf(err), errors.Is(err, ErrClaimed))
	err = s.ClaimBuildRequest(99, m2.ID, t0)
	rec("Claim missing", errOf(err), errors.Is(err, ErrNotFound))
	rec("Claim unknown master", errOf(s.ClaimBuildRequest(brids3[b.ID], 42, t0)))
	rec("Unclaim", errOf(s.UnclaimBuildRequest(brids3[b.ID])))
	rec("Unclaim pending", errOf(s.UnclaimBuildRequest(brids3[b.ID])))
	rec("Unclaim missing", errOf(s.UnclaimBuildRequest(99)))
	rec("Complete", errOf(s.CompleteBuildRequest(brids1[a.ID], Warnings, t0)))
	err = s.CompleteBuildRequest(brids1[a.ID], Success, t0)
	rec("Complete again", errOf(err), errors.Is(err, ErrClaimed))
	err = s.ClaimBuildRequest(brids1[a.ID], m1.ID, t0)
	rec("Claim complete", errOf(err), errors.Is(err, ErrClaimed))
	rec("Unclaim complete", errOf(s.UnclaimBuildRequest(brids1[a.ID])))
	err = s.CompleteBuildRequest(99, Success, t0)
	rec("Complete missing", errOf(err), errors.Is(err, ErrNotFound))
	rec("Complete unclaimed (cancel)", errOf(s.CompleteBuildRequest(brids1[b.ID], Cancelled, t0.Add(time.Second))))
	rec("Complete 2", errOf(s.CompleteBuildRequest(brids2[b.ID], Skipped, time.Time{})))
	rec("Claim 3a", errOf(s.ClaimBuildRequest(brids3[a.ID], m2.ID, t0.Add(time.Minute))))

	for _, limits := range []map[int64]int{nil, {a.ID: 0}, {b.ID: 0}, {a.ID: 1, b.ID: 1}, {a.ID: 0, b.ID: 0, 99: 0}, {b.ID: -1}, {b.ID: 1}, {b.ID: 2}, {b.ID: 3}, {a.ID: 1, b.ID: 4}} {
		brs, err := s.PendingBuildRequests(limits)
		rec(fmt.Sprintf("PendingBuildRequests %v", limits), brs, errOf(err))
	}
	n, oldest, err := s.PendingStats()
	rec("PendingStats", n, oldest, errOf(err))
	for i, f := range []BuildRequestFilter{
		{}, {Desc: true}, {Limit: 2, Offset: 1}, {Desc: true, Limit: 2, Offset: 1},
		{BuilderID: a.ID}, {BuilderID: b.ID, Desc: true}, {BuildsetID: bs1}, {BuildsetID: bs3, BuilderID: b.ID},
		{Claimed: ptr(true)}, {Claimed: ptr(false)}, {Complete: ptr(true)}, {Complete: ptr(false)},
		{Complete: ptr(false), Claimed: ptr(true)}, {Complete: ptr(false), Claimed: ptr(false)},
		{Complete: ptr(true), Claimed: ptr(true)}, {Complete: ptr(true), Claimed: ptr(false)},
		{BuilderID: b.ID, Complete: ptr(true)}, {BuilderID: b.ID, Complete: ptr(false)}, {BuilderID: 99},
	} {
		brs, err := s.BuildRequests(f)
		rec(fmt.Sprintf("BuildRequests %d", i), brs, errOf(err))
		n, err := s.CountBuildRequests(f)
		rec(fmt.Sprintf("CountBuildRequests %d", i), n, errOf(err))
	}
	br, err := s.BuildRequest(brids1[a.ID])
	rec("BuildRequest", br, errOf(err))
	br, err = s.BuildRequest(99)
	rec("BuildRequest missing", br, errOf(err), errors.Is(err, ErrNotFound))
	for i, f := range []BuildsetFilter{
		{}, {Desc: true}, {Complete: ptr(true)}, {Complete: ptr(false)}, {Complete: ptr(false), Desc: true, Offset: 1, Limit: 1},
		{Limit: 2}, {Offset: 10},
	} {
		bss, err := s.BuildsetPage(f)
		rec(fmt.Sprintf("BuildsetPage %d", i), bss, errOf(err))
		n, err := s.CountBuildsets(f)
		rec(fmt.Sprintf("CountBuildsets %d", i), n, errOf(err))
		if f.Offset == 0 && f.Limit == 0 && !f.Desc {
			bss, err := s.Buildsets(f.Complete)
			rec(fmt.Sprintf("Buildsets %d", i), bss, errOf(err))
		}
	}
	return log
}

// sameTime compares times exactly, except that two times within a minute
// of now (taken by the store: it cannot be told them) are the same.
var sameTime = cmp.Comparer(func(x, y time.Time) bool {
	now := time.Now()
	if x.Equal(y) {
		return true
	}
	return now.Sub(x).Abs() < time.Minute && now.Sub(y).Abs() < time.Minute
})

// TestPGCoreAsBBolt runs every core method on both stores, good calls
// and bad: PG must return what bbolt returns, errors included, and publish
// the same events.
func TestPGCoreAsBBolt(t *testing.T) {
	t.Parallel()
	var brec, prec keptEvents
	db, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Events: &brec})
	ok(t, err)
	defer db.Close()
	p := openPGTest(t, pg.NewDatabase(t), Options{Events: &prec})
	want := coreScenario(db)
	got := coreScenario(p)
	ok(t, db.Check())
	ok(t, p.Check())
	if diff := cmp.Diff(want, got, sameTime); diff != "" {
		t.Errorf("results (-bbolt +pg):\n%s", diff)
	}
	if diff := cmp.Diff(brec.events(), prec.events(), sameTime, cmp.AllowUnexported(bufferedEvent{})); diff != "" {
		t.Errorf("events (-bbolt +pg):\n%s", diff)
	}
}

// TestPGCheckCore: Check finds each breach of the core records' invariants
// that the schema does not prevent.
func TestPGCheckCore(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, sql, want string }{
		{"refs", "UPDATE sourcestamps SET refs = refs + 1 WHERE id = 1", "sourcestamp 1: 4 references counted, 3 made"},
		{"hash", "UPDATE sourcestamps SET hash = 'x' WHERE id = 1", "sourcestamp 1: stored under another content's hash"},
		{"request column", "UPDATE buildrequests SET complete = true WHERE id = 1", "buildrequest 1: its columns are not its record's"},
		{"claimed column", "UPDATE buildrequests SET claimed_by = 7 WHERE id = 1", "buildrequest 1: its columns are not its record's"},
		{"submitted", "UPDATE buildrequests SET submitted_ns = submitted_ns + 1 WHERE id = 1", "buildrequest 1: submitted_ns"},
		{"buildset column", "UPDATE buildsets SET complete = true WHERE id = 1", "buildset 1: its columns are not its record's"},
		{"buildset index", "DELETE FROM buildset_sourcestamps", "sourcestamp 1 of buildset 1 missing"},
		{"change column", "UPDATE changes SET branch = 'x' WHERE id = 2", "change 2: its columns are not its record's"},
		{"change source", `UPDATE changes SET data = json_build_object('ID', 2, 'Branch', 'main', 'Revision', 'zz', 'SourceStampID', 1, 'ParentChangeIDs', json_build_array(1)) WHERE id = 2`,
			"change 2: sourcestamp 1 names another source"},
		{"change parent", `UPDATE changes SET data = json_build_object('ID', 2, 'Branch', 'main', 'Revision', 'r1', 'SourceStampID', 1, 'ParentChangeIDs', json_build_array(2)) WHERE id = 2`,
			"change 2: parent 2 is no earlier change of its source"},
		{"name", "UPDATE builders SET name = 'other' WHERE id = 1", `builders 1: row of "other" holds record 1 "a"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, err := OpenPG(pg.NewDatabase(t), Options{})
			ok(t, err)
			defer p.Close()
			b := must[Builder](t)(p.EnsureBuilder("a"))
			ss := SourceStamp{Branch: "main", Revision: "r1"}
			must[Change](t)(p.AddChange(Change{Branch: ss.Branch, Revision: ss.Revision}))
			must[Change](t)(p.AddChange(Change{Branch: ss.Branch, Revision: ss.Revision}))
			_, _, err = p.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}, SourceStamps: []SourceStamp{ss}})
			ok(t, err)
			ok(t, p.Check())
			ctx, cancel := pgCtx()
			defer cancel()
			if _, err := p.pool.Exec(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			if err := p.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("check: %v; want %q", err, c.want)
			}
		})
	}
}
