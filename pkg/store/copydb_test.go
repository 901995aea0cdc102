package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"
)

// fillForCopy fills db through its own methods with every kind of record
// copy-db moves: masters, builders, workers, changes (with parents),
// object state, sourcestamps, buildsets, requests (complete, claimed,
// pending), builds (complete and running), steps, logs of many chunks, a
// resume point, the outbox, cursors and deliveries; and deletes the
// newest steps with the janitor, so the ids given go past the ids kept.
func fillForCopy(t *testing.T, db *DB) {
	t.Helper()
	db.SetOutbox(func() {})
	m := must[Master](t)(db.EnsureMaster("m1"))
	ok(t, db.SetMasterActive(m.ID, false, t0))
	a := must[Builder](t)(db.EnsureBuilder("a"))
	b := must[Builder](t)(db.EnsureBuilder("b"))
	ok(t, db.UpdateBuilder(a.ID, "the a", []string{"x", "y"}, []int64{m.ID}))
	w := must[Worker](t)(db.EnsureWorker("w1"))
	ok(t, db.WorkerConnected(w.ID, m.ID, map[string]string{"os": "linux"}))
	ok(t, db.SetWorkerConfiguredOn(w.ID, []BuilderMaster{{BuilderID: a.ID, MasterID: m.ID}}))
	must[Worker](t)(db.EnsureWorker("w2"))

	var changes []Change
	for i := range 5 {
		c := must[Change](t)(db.AddChange(Change{Author: "me", Branch: "main", Revision: fmt.Sprintf("r%d", i),
			Repository: "https://git.example/r", Project: "p", When: t0, Files: []string{"f"}}))
		changes = append(changes, c)
	}
	must[[]Change](t)(db.AddChangesAndState([]Change{{Branch: "dev", Revision: "d1", Repository: "https://git.example/r", When: t0}},
		"poller", "last", json.RawMessage(`{"rev":"d1"}`)))
	ok(t, db.SetState("sched\x01", "k", json.RawMessage(`[1,2]`)))
	ok(t, db.SetState("a", "b", json.RawMessage(`"x"`)))

	var brids []int64
	for i, c := range changes {
		_, ids, err := db.AddBuildset(NewBuildset{Reason: fmt.Sprintf("bs %d", i), SchedulerName: "s",
			SourceStamps: []SourceStamp{{Branch: c.Branch, Revision: c.Revision, Repository: c.Repository, Project: c.Project}},
			ChangeIDs:    []int64{c.ID}, BuilderIDs: []int64{a.ID, b.ID}, Priority: i % 2, SubmittedAt: t0.Add(time.Duration(i) * time.Second),
			Properties: Properties{"p": {Value: json.RawMessage(`"v"`), Source: "test"}}})
		ok(t, err)
		brids = append(brids, ids[a.ID], ids[b.ID])
	}
	// A buildset naming one sourcestamp twice: two references to it.
	_, _, err := db.AddBuildset(NewBuildset{Reason: "twice", BuilderIDs: []int64{b.ID}, SubmittedAt: t0,
		SourceStamps: []SourceStamp{{Branch: "twice", Revision: "t"}, {Branch: "twice", Revision: "t"}}})
	ok(t, err)
	// Requests 1-4 built, 5 claimed and running, the rest pending.
	var builds []Build
	for i, brid := range brids[:5] {
		ok(t, db.ClaimBuildRequest(brid, m.ID, t0))
		br := must[BuildRequest](t)(db.BuildRequest(brid))
		bd := must[Build](t)(db.AddBuild(NewBuild{BuilderID: br.BuilderID, BuildRequestID: brid, WorkerID: w.ID, MasterID: m.ID,
			StartedAt: t0, Properties: Properties{"n": {Value: json.RawMessage(fmt.Sprint(i)), Source: "b"}}}))
		builds = append(builds, bd)
		for j := range 2 {
			s := must[Step](t)(db.StartNewStep(bd.ID, "shell", t0))
			ok(t, db.AddStepURL(s.ID, "u", "https://x/"+fmt.Sprint(j)))
			l := must[Log](t)(db.AddLog(s.ID, "stdio", "s"))
			for k := range 40 {
				must[int64](t)(db.AppendLog(l.ID, fmt.Sprintf("o line %d of %d/%d\n%s\n", k, i, j, strings.Repeat("e", k))))
			}
			if i < 4 {
				ok(t, db.FinishLog(l.ID))
				ok(t, db.FinishStep(s.ID, Success, t0))
			}
		}
	}
	for i, bd := range builds[:4] {
		at := t0
		if i == 0 {
			at = t0.Add(-48 * time.Hour) // the janitor deletes it below
		}
		ok(t, db.FinishBuild(bd.ID, Success, at))
		ok(t, db.CompleteBuildRequest(bd.BuildRequestID, Success, at))
	}
	// Steps added last to the oldest build, so that the janitor deletes
	// the highest step and log ids.
	late := must[Step](t)(db.AddStep(builds[0].ID, "late"))
	must[Log](t)(db.AddLog(late.ID, "late", "t"))
	ok(t, db.SetResumePoint(ResumePoint{BuildID: builds[4].ID, MasterID: m.ID, Builder: "a", Worker: "w1", StepID: 1, LogID: 1,
		Logfiles: map[string]int64{"x": 2}, ResumeKey: "k", Offset: 10, At: t0}))
	ok(t, db.AddWorkerMissing("w2", t0))
	must[int64](t)(db.OutboxCursor("mail"))
	must[int64](t)(db.OutboxCursor("forge"))
	es := must[[]OutboxEntry](t)(db.OutboxAfter(0, 100))
	for i, e := range es[:4] {
		state := DeliveryDelivered
		if i == 1 {
			state = DeliveryFailed
		}
		ok(t, db.SaveDelivery(Delivery{Reporter: "mail", Seq: e.Seq, BuildID: e.BuildID, Event: e.Event, State: state,
			Attempts: 1, CreatedAt: t0, UpdatedAt: t0}, true))
	}
	if n := must[int](t)(db.DeleteBuildsBefore(t0.Add(-time.Hour))); n != 1 {
		t.Fatalf("janitor deleted %d builds, want 1", n)
	}
	ok(t, db.Check())
}

// storeSnapshot is everything a bbolt store's read methods return.
type storeSnapshot struct {
	Masters      []Master
	Builders     []Builder
	Workers      []Worker
	Changes      []Change
	State        map[string]string
	Buildsets    []Buildset
	OfSS         map[int64][]Buildset
	SourceStamps map[int64]SourceStamp
	Requests     []BuildRequest
	Pending      []BuildRequest
	Builds       []Build
	Steps        map[int64][]Step
	Logs         map[int64][]Log
	Lines        map[int64]string
	Resume       []ResumePoint
	Outbox       []OutboxEntry
	Finished     map[int64]int64
	Cursors      map[string]int64
	Deliveries   map[int64][]Delivery
	Failed       int
	Counts       [3]int
}

func snapshot(t *testing.T, db Store) storeSnapshot {
	t.Helper()
	s := storeSnapshot{State: map[string]string{}, OfSS: map[int64][]Buildset{}, SourceStamps: map[int64]SourceStamp{},
		Steps: map[int64][]Step{}, Logs: map[int64][]Log{}, Lines: map[int64]string{}, Finished: map[int64]int64{},
		Cursors: map[string]int64{}, Deliveries: map[int64][]Delivery{}}
	s.Masters = must[[]Master](t)(db.Masters())
	s.Builders = must[[]Builder](t)(db.Builders())
	s.Workers = must[[]Worker](t)(db.Workers())
	s.Changes = must[[]Change](t)(db.Changes(ChangeFilter{}))
	for _, k := range [][2]string{{"poller", "last"}, {"sched\x01", "k"}, {"a", "b"}} {
		v, found, err := db.GetState(k[0], k[1])
		ok(t, err)
		if found {
			s.State[k[0]+"/"+k[1]] = string(v)
		}
	}
	s.Buildsets = must[[]Buildset](t)(db.Buildsets(nil))
	for _, bs := range s.Buildsets {
		for _, ss := range bs.SourceStamps {
			s.SourceStamps[ss.ID] = must[SourceStamp](t)(db.SourceStamp(ss.ID))
			s.OfSS[ss.ID] = must[[]Buildset](t)(db.BuildsetsOfSourceStamp(ss.ID))
		}
	}
	s.Requests = must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{}))
	limits := map[int64]int{}
	for _, b := range s.Builders {
		limits[b.ID] = 0
	}
	s.Pending = must[[]BuildRequest](t)(db.PendingBuildRequests(limits))
	s.Builds = must[[]Build](t)(db.Builds(BuildFilter{}))
	for _, b := range s.Builds {
		s.Steps[b.ID] = must[[]Step](t)(db.Steps(b.ID))
		for _, st := range s.Steps[b.ID] {
			s.Logs[st.ID] = must[[]Log](t)(db.Logs(st.ID))
			for _, l := range s.Logs[st.ID] {
				s.Lines[l.ID] = must[string](t)(db.LogLines(l.ID, 0, l.NumLines))
			}
		}
		s.Deliveries[b.ID] = must[[]Delivery](t)(db.Deliveries(b.ID))
		if seq, found, err := db.OutboxFinishedSeq(b.ID); err != nil {
			t.Fatal(err)
		} else if found {
			s.Finished[b.ID] = seq
		}
	}
	for _, m := range s.Masters {
		s.Resume = append(s.Resume, must[[]ResumePoint](t)(db.ResumePoints(m.ID))...)
	}
	s.Outbox = must[[]OutboxEntry](t)(db.OutboxAfter(0, 1000))
	for _, r := range []string{"mail", "forge"} {
		s.Cursors[r] = must[int64](t)(db.OutboxCursor(r))
	}
	s.Failed = must[int](t)(db.FailedDeliveries())
	s.Counts[0] = must[int](t)(db.CountBuilds(BuildFilter{}))
	s.Counts[1] = must[int](t)(db.CountBuildsets(BuildsetFilter{}))
	s.Counts[2] = must[int](t)(db.CountBuildRequests(BuildRequestFilter{}))
	return s
}

// copyOK copies from to to and fails t on an error.
func copyOK(t *testing.T, from, to string) CopyReport {
	t.Helper()
	var out strings.Builder
	rep, err := CopyDB(context.Background(), from, to, CopyOptions{Out: &out, BatchRows: 7})
	if err != nil {
		t.Fatalf("copy %s → %s: %v\n%s", from, to, err, out.String())
	}
	if !strings.Contains(out.String(), "log chunks") {
		t.Errorf("copy printed no counts:\n%s", out.String())
	}
	for _, c := range rep.Counts {
		if c.Source != c.Target {
			t.Errorf("%s: %d copied of %d", c.Kind, c.Target, c.Source)
		}
	}
	return rep
}

// openCopy opens a bbolt copy, checks it and registers its closing.
func openCopy(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path, Options{})
	ok(t, err)
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

// checkIDsContinue adds a record of each kind with an id to db, a copy of
// a store whose snapshot is src and whose sequences are seqs, and checks
// that each new id follows the highest the source ever gave.
func checkIDsContinue(t *testing.T, db Store, seqs map[string]int64) {
	t.Helper()
	db.SetOutbox(func() {})
	m := must[Master](t)(db.EnsureMaster("new master"))
	b := must[Builder](t)(db.EnsureBuilder("new builder"))
	w := must[Worker](t)(db.EnsureWorker("new worker"))
	c := must[Change](t)(db.AddChange(Change{Branch: "new", Revision: "n", When: t0}))
	bsid, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}, SourceStamps: []SourceStamp{{Branch: "new2"}}})
	ok(t, err)
	bd := must[Build](t)(db.AddBuild(NewBuild{BuilderID: b.ID, BuildRequestID: brids[b.ID]}))
	s := must[Step](t)(db.AddStep(bd.ID, "s"))
	l := must[Log](t)(db.AddLog(s.ID, "l", "t"))
	got := map[string]int64{"masters": m.ID, "builders": b.ID, "workers": w.ID, "changes": c.ID, "buildsets": bsid,
		"build requests": brids[b.ID], "builds": bd.ID, "steps": s.ID, "logs": l.ID}
	for k, id := range got {
		if id != seqs[k]+1 {
			t.Errorf("%s: new id %d, want %d (after the source's %d)", k, id, seqs[k]+1, seqs[k])
		}
	}
	es := must[[]OutboxEntry](t)(db.OutboxAfter(0, 1000))
	if last := es[len(es)-1].Seq; last != seqs["outbox"]+1 {
		t.Errorf("outbox: new seq %d, want %d", last, seqs["outbox"]+1)
	}
	ok(t, db.Check())
}

// boltSeqs reads the sequences of a bbolt store.
func boltSeqs(t *testing.T, db *DB) map[string]int64 {
	t.Helper()
	side := &boltSide{db}
	seqs := map[string]int64{}
	for _, k := range copyKinds {
		if k.seq != "" {
			seqs[k.name] = must[int64](t)(side.seq(context.Background(), k))
		}
	}
	return seqs
}

// TestCopyDBRoundTrip: a bbolt store filled by the store's methods,
// copied to PostgreSQL and from there to a new bbolt store, reads back
// equal through every read method; both copies pass their checks; new
// ids continue after the source's, deleted ones included; PostgreSQL's
// sequences are the source's.
func TestCopyDBRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.db")
	src, err := Open(srcPath, Options{})
	ok(t, err)
	fillForCopy(t, src)
	want := snapshot(t, src)
	seqs := boltSeqs(t, src)
	wantRefs := map[int64]int64{}
	ok(t, src.bolt.View(func(tx *bolt.Tx) error {
		return bucket(tx, bucketSourceStampRefs).ForEach(func(k, v []byte) error {
			wantRefs[btoi(k)] = btoi(v)
			return nil
		})
	}))
	ok(t, src.Close())
	if len(wantRefs) == 0 {
		t.Fatal("no sourcestamp references")
	}
	if seqs["steps"] <= int64(len(want.Steps)) {
		t.Fatalf("the janitor left the highest step id: sequences %v", seqs)
	}

	pgURL := newCopyDatabase(t)
	rep := copyOK(t, srcPath, pgURL)
	if rep.Copied == 0 {
		t.Fatal("nothing copied")
	}
	pgs, err := OpenPG(pgURL, Options{})
	ok(t, err)
	for _, k := range copyKinds {
		if k.seq == "" {
			continue
		}
		got := must[int64](t)((&pgSide{pgs}).seq(context.Background(), k))
		if got != seqs[k.name] {
			t.Errorf("PostgreSQL %s: %d, want %d", k.seq, got, seqs[k.name])
		}
	}
	// The sourcestamps' references and the builders' next numbers, which
	// PostgreSQL keeps in columns, are the source's.
	rows, err := pgs.pool.Query(context.Background(), "SELECT id, refs FROM sourcestamps")
	ok(t, err)
	refs := map[int64]int64{}
	var id, n int64
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error { refs[id] = n; return nil })
	ok(t, err)
	if diff := cmp.Diff(wantRefs, refs); diff != "" {
		t.Errorf("sourcestamp refs (-bbolt +PostgreSQL):\n%s", diff)
	}
	rows, err = pgs.pool.Query(context.Background(), "SELECT id, next_number FROM builders")
	ok(t, err)
	next := map[int64]int64{}
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error { next[id] = n; return nil })
	ok(t, err)
	if diff := cmp.Diff(map[int64]int64{1: 4, 2: 3}, next); diff != "" {
		t.Errorf("builders' next numbers (-want +PostgreSQL):\n%s", diff)
	}
	ok(t, pgs.Check())
	pgs.Close()

	backPath := filepath.Join(dir, "back.db")
	rep2 := copyOK(t, pgURL, "bbolt:"+backPath)
	if rep2.Copied != rep.Copied {
		t.Errorf("copied %d rows back, %d there", rep2.Copied, rep.Copied)
	}
	back := openCopy(t, backPath)
	ok(t, back.Check())
	if diff := cmp.Diff(want, snapshot(t, back)); diff != "" {
		t.Errorf("bbolt → PostgreSQL → bbolt (-source +copy):\n%s", diff)
	}
	if diff := cmp.Diff(seqs, boltSeqs(t, back)); diff != "" {
		t.Errorf("sequences (-source +copy):\n%s", diff)
	}
	checkIDsContinue(t, back, seqs)

	// PostgreSQL to PostgreSQL, and from there to bbolt, keeps it all too.
	pg2URL := newCopyDatabase(t)
	copyOK(t, pgURL, pg2URL)
	back2Path := filepath.Join(dir, "back2.db")
	copyOK(t, pg2URL, back2Path)
	back2 := openCopy(t, back2Path)
	if diff := cmp.Diff(want, snapshot(t, back2)); diff != "" {
		t.Errorf("bbolt → PostgreSQL → PostgreSQL → bbolt (-source +copy):\n%s", diff)
	}
	if diff := cmp.Diff(seqs, boltSeqs(t, back2)); diff != "" {
		t.Errorf("sequences (-source +copy of a copy):\n%s", diff)
	}

	// Copying again changes nothing and copies nothing: the copy is done.
	again := copyOK(t, srcPath, pgURL)
	if again.Copied != 0 {
		t.Errorf("a finished copy run again copied %d rows", again.Copied)
	}
}

// TestCopyDBBoltToBolt: bbolt to bbolt also keeps everything.
func TestCopyDBBoltToBolt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.db")
	src, err := Open(srcPath, Options{})
	ok(t, err)
	fillForCopy(t, src)
	want := snapshot(t, src)
	seqs := boltSeqs(t, src)
	ok(t, src.Close())
	// Relative paths are relative to BaseDir, as a master's basedir.
	if _, err := CopyDB(context.Background(), "src.db", "bbolt:dst.db", CopyOptions{BaseDir: dir, BatchRows: 5}); err != nil {
		t.Fatal(err)
	}
	dst := openCopy(t, filepath.Join(dir, "dst.db"))
	if diff := cmp.Diff(want, snapshot(t, dst)); diff != "" {
		t.Errorf("bbolt → bbolt (-source +copy):\n%s", diff)
	}
	checkIDsContinue(t, dst, seqs)
}

// interruptedCopy copies from to to, cancelling the copy after each
// cut-th batch and running it again, until it finishes; it returns how
// many runs it took.
func interruptedCopy(t *testing.T, from, to string, cut int) int {
	t.Helper()
	for runs := 1; ; runs++ {
		ctx, cancel := context.WithCancel(context.Background())
		batches := 0
		_, err := CopyDB(ctx, from, to, CopyOptions{BatchRows: 3, Progress: func(string, int64) {
			if batches++; batches == cut {
				cancel()
			}
		}})
		cancel()
		if err == nil {
			return runs
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d: %v", runs, err)
		}
		if runs > 1000 {
			t.Fatal("the copy never finishes")
		}
	}
}

// TestCopyDBResumed: a copy stopped after any batch (a context cancelled
// between batches) and run again, many times, ends with the same copy as
// one run: into PostgreSQL and from it, and into bbolt.
func TestCopyDBResumed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.db")
	src, err := Open(srcPath, Options{})
	ok(t, err)
	fillForCopy(t, src)
	want := snapshot(t, src)
	seqs := boltSeqs(t, src)
	ok(t, src.Close())

	pgURL := newCopyDatabase(t)
	if runs := interruptedCopy(t, srcPath, pgURL, 5); runs < 10 {
		t.Errorf("the copy into PostgreSQL took %d runs: not interrupted enough to tell", runs)
	}
	backPath := filepath.Join(dir, "back.db")
	if runs := interruptedCopy(t, pgURL, backPath, 7); runs < 10 {
		t.Errorf("the copy from PostgreSQL took %d runs", runs)
	}
	back := openCopy(t, backPath)
	if diff := cmp.Diff(want, snapshot(t, back)); diff != "" {
		t.Errorf("resumed copies (-source +copy):\n%s", diff)
	}
	checkIDsContinue(t, back, seqs)

	boltPath := filepath.Join(dir, "bolt.db")
	interruptedCopy(t, srcPath, boltPath, 4)
	b2 := openCopy(t, boltPath)
	if diff := cmp.Diff(want, snapshot(t, b2)); diff != "" {
		t.Errorf("resumed bbolt copy (-source +copy):\n%s", diff)
	}
}

// TestCopyDBRefusals: copy-db refuses a target holding another history,
// a store a master holds, a PostgreSQL database a master is running on
// (unless forced), and the same store twice; it reports a count that
// differs; it never prints a password.
func TestCopyDBRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.db")
	src, err := Open(srcPath, Options{})
	ok(t, err)
	fillForCopy(t, src)
	ok(t, src.Close())
	otherPath := filepath.Join(dir, "other.db")
	other, err := Open(otherPath, Options{})
	ok(t, err)
	am := must[Master](t)(other.EnsureMaster("another"))
	ok(t, other.SetMasterActive(am.ID, false, t0))
	must[Builder](t)(other.EnsureBuilder("z"))
	ok(t, other.Close())

	ctx := context.Background()
	pgURL := newCopyDatabase(t)
	copyOK(t, srcPath, pgURL)
	_, err = CopyDB(ctx, otherPath, pgURL, CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), "different history") {
		t.Errorf("copy into a database of another history: %v", err)
	}
	// A store of another history whose ids and counts look like a
	// prefix of the source's: its rows differ.
	pgOther := newCopyDatabase(t)
	copyOK(t, otherPath, pgOther)
	_, err = CopyDB(ctx, srcPath, pgOther, CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), "row 0000000000000001 differs from the source's") {
		t.Errorf("copy into a database of another history with the same ids: %v", err)
	}
	_, err = CopyDB(ctx, otherPath, "bbolt:"+srcPath, CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), "different history") {
		t.Errorf("copy into a bbolt store of another history: %v", err)
	}

	held, err := Open(srcPath, Options{})
	ok(t, err)
	_, err = CopyDB(ctx, srcPath, filepath.Join(dir, "x.db"), CopyOptions{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "stop the master") {
		t.Errorf("copy from a store a master holds: %v", err)
	}
	ok(t, held.Close())

	if _, err := CopyDB(ctx, srcPath, "bbolt:"+srcPath, CopyOptions{}); err == nil || !strings.Contains(err.Error(), "same store") {
		t.Errorf("copy of a store into itself: %v", err)
	}
	if _, err := CopyDB(ctx, filepath.Join(dir, "missing.db"), pgURL, CopyOptions{}); err == nil {
		t.Error("copy from a missing file succeeded")
	}

	// Two copies into one database at once (from PostgreSQL: a bbolt
	// source is locked by the first): the second is refused.
	pg3URL := newCopyDatabase(t)
	_, err = CopyDB(ctx, pgURL, pg3URL, CopyOptions{Progress: func(kind string, _ int64) {
		if kind != "masters" {
			return
		}
		_, err := CopyDB(ctx, pgURL, pg3URL, CopyOptions{})
		if err == nil || !strings.Contains(err.Error(), "another copy-db is copying into it") {
			t.Errorf("a second copy-db at once: %v", err)
		}
	}})
	ok(t, err)

	// A master seen a moment ago on the PostgreSQL source.
	pgs, err := OpenPG(pgURL, Options{})
	ok(t, err)
	ok(t, pgPutMaster(ctx, pgs.pool, Master{ID: 1, Name: "m1", Active: true, LastSeen: time.Now()}))
	pgs.Close()
	_, err = CopyDB(ctx, pgURL, filepath.Join(dir, "y.db"), CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), `master "m1" is running`) {
		t.Errorf("copy from a database a master runs on: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused copy left a target file behind: %v", err)
	}
	if _, err := CopyDB(ctx, pgURL, filepath.Join(dir, "y.db"), CopyOptions{Force: true}); err != nil {
		t.Errorf("forced copy: %v", err)
	}

	// A row added to the target behind the copy's back: the counts differ.
	pg2URL := newCopyDatabase(t)
	pg2, err := OpenPG(pg2URL, Options{})
	ok(t, err)
	defer pg2.Close()
	var out strings.Builder
	_, err = CopyDB(ctx, srcPath, pg2URL, CopyOptions{Out: &out, Progress: func(kind string, _ int64) {
		if kind == "deliveries" {
			ok(t, pgPutWorker(ctx, pg2.pool, Worker{ID: 99, Name: "intruder"}))
		}
	}})
	if err == nil || !strings.Contains(err.Error(), "workers: 2 in the source, 3 in the target") {
		t.Errorf("a count that differs: %v", err)
	}
	if !strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("the counts printed show no mismatch:\n%s", out.String())
	}

	// Passwords stay out of every message.
	bad := "postgres://gbb:s3cr3t@127.0.0.1:9/x?sslmode=disable&connect_timeout=5" // a port nobody listens on
	_, err = CopyDB(ctx, srcPath, bad, CopyOptions{})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("copy to an unreachable database: %v", err)
	}
}

// TestCopyDBSparse: a store with no row of some kinds (no master, no
// change, no outbox), copied with interruptions, resumes past the kinds
// it lacks.
func TestCopyDBSparse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.db")
	src, err := Open(srcPath, Options{})
	ok(t, err)
	b := must[Builder](t)(src.EnsureBuilder("a"))
	for range 4 {
		bd := must[Build](t)(src.AddBuild(NewBuild{BuilderID: b.ID}))
		s := must[Step](t)(src.AddStep(bd.ID, "s"))
		l := must[Log](t)(src.AddLog(s.ID, "l", "t"))
		for range 5 {
			must[int64](t)(src.AppendLog(l.ID, "x\n"))
		}
	}
	want := snapshot(t, src)
	ok(t, src.Close())
	pgURL := newCopyDatabase(t)
	if runs := interruptedCopy(t, srcPath, pgURL, 2); runs < 3 {
		t.Errorf("%d runs", runs)
	}
	backPath := filepath.Join(dir, "back.db")
	interruptedCopy(t, pgURL, backPath, 2)
	if diff := cmp.Diff(want, snapshot(t, openCopy(t, backPath))); diff != "" {
		t.Errorf("(-source +copy):\n%s", diff)
	}
}

// TestCopyDBSourceChanged: a copy stopped midway, whose source a master
// then wrote to, is not resumed: what it copied is an older state.
func TestCopyDBSourceChanged(t *testing.T) {
	t.Parallel()
	srcPath := filepath.Join(t.TempDir(), "src.db")
	src, err := Open(srcPath, Options{})
	ok(t, err)
	fillForCopy(t, src)
	ok(t, src.Close())
	pgURL := newCopyDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = CopyDB(ctx, srcPath, pgURL, CopyOptions{BatchRows: 3, Progress: func(kind string, _ int64) {
		if kind == "build requests" {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("copy not stopped: %v", err)
	}
	src, err = Open(srcPath, Options{})
	ok(t, err)
	must[Change](t)(src.AddChange(Change{Branch: "later", When: t0}))
	ok(t, src.Close())
	_, err = CopyDB(context.Background(), srcPath, pgURL, CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), "sourcestamps, copied before, is not complete: has the source changed since?") {
		t.Errorf("resumed after the source changed: %v", err)
	}
}

// TestCopyDBDuplicateSourceStamps: a bbolt store older than the
// sourcestamps' content index, holding two sourcestamps of one content,
// copies to bbolt; PostgreSQL, which keeps one per content, is refused at
// the sourcestamps, before the builds and logs, with a message that says
// why.
func TestCopyDBDuplicateSourceStamps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.db")
	src, err := Open(srcPath, Options{})
	ok(t, err)
	c := must[Change](t)(src.AddChange(Change{Branch: "main", Revision: "r1", When: t0}))
	// What an older gbb left: a second sourcestamp of the same content,
	// the content index naming the oldest (as indexSourceStamps does).
	ok(t, src.bolt.Update(func(tx *bolt.Tx) error {
		ss := must[SourceStamp](t)(get[SourceStamp](tx, bucketSourceStamp, c.SourceStampID))
		ss.ID = must[int64](t)(nextID(tx, bucketSourceStamp))
		return put(tx, bucketSourceStamp, ss.ID, &ss)
	}))
	ok(t, src.Check())
	ok(t, src.Close())

	copyOK(t, srcPath, filepath.Join(dir, "copy.db"))
	_, err = CopyDB(context.Background(), srcPath, newCopyDatabase(t), CopyOptions{})
	if !errors.Is(err, errDuplicateContent) || !strings.Contains(err.Error(), "sourcestamps: ") {
		t.Errorf("copy to PostgreSQL of two sourcestamps of one content: %v", err)
	}
}
