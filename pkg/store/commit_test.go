package store

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// holdWrites starts a batch write that blocks inside its transaction until
// the returned release is called, so that the writes started meanwhile
// queue behind it; wait(n) returns once n writes are queued.
func holdWrites(t *testing.T, db *DB) (wait func(n int), release func()) {
	t.Helper()
	in, out := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.batch(func(*bolt.Tx) error {
			select {
			case <-in:
			default:
				close(in)
			}
			<-out
			return nil
		}, nil)
	}()
	<-in
	wait = func(n int) {
		t.Helper()
		for {
			db.writes.mu.Lock()
			queued := len(db.writes.waiting)
			db.writes.mu.Unlock()
			if queued >= n {
				return
			}
			runtime.Gosched()
		}
	}
	release = func() {
		t.Helper()
		close(out)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	return wait, release
}

// Writes that queue while one commits are committed together, in one
// transaction, and each gets its own result.
//
// bbolt only: group commit is how bbolt's one writer shares its fsyncs.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	s, rec := openEvents(t, backends()[0]) // bbolt
	db := s.(*DB)
	a, _, _ := setup(t, db)
	build := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID}))
	rec.take()

	wait, release := holdWrites(t, db)
	const n = 20
	var wg sync.WaitGroup
	steps := make([]Step, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { steps[i], errs[i] = db.AddStep(build.ID, "s") })
	}
	wait(n)
	before := db.writes.commits.Load()
	release()
	wg.Wait()
	if got := db.writes.commits.Load() - before; got != 1 {
		t.Errorf("%d writes queued together took %d transactions, want 1", n, got)
	}
	var numbers []int
	for i := range n {
		ok(t, errs[i])
		numbers = append(numbers, steps[i].Number)
	}
	slices.Sort(numbers)
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if diff := cmp.Diff(want, numbers); diff != "" {
		t.Errorf("step numbers (-want +got):\n%s", diff)
	}
	if got := len(rec.take()); got != 2*n {
		t.Errorf("%d events, want %d", got, 2*n)
	}
}

// When one write of a group fails, the others still commit once each, with
// their events published once, and the failed one gets its error.
//
// bbolt only: group commit is how bbolt's one writer shares its fsyncs.
func TestGroupCommitFailure(t *testing.T) {
	t.Parallel()
	s, rec := openEvents(t, backends()[0]) // bbolt
	db := s.(*DB)
	a, b, _ := setup(t, db)
	rec.take()

	wait, release := holdWrites(t, db)
	type result struct {
		brids map[int64]int64
		err   error
	}
	results := make([]result, 3)
	var wg sync.WaitGroup
	for i, builders := range [][]int64{{a.ID}, {a.ID, 999}, {a.ID, b.ID}} {
		wg.Go(func() {
			_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: builders})
			results[i] = result{brids, err}
		})
		wait(i + 1) // in this order
	}
	release()
	wg.Wait()
	ok(t, results[0].err)
	ok(t, results[2].err)
	if !errors.Is(results[1].err, ErrNotFound) {
		t.Errorf("buildset with a missing builder: %v, want ErrNotFound", results[1].err)
	}
	// Requests 1 and 2, 3: the failed buildset took no id in the end.
	if diff := cmp.Diff(map[int64]int64{a.ID: 1}, results[0].brids); diff != "" {
		t.Errorf("first buildset (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int64]int64{a.ID: 2, b.ID: 3}, results[2].brids); diff != "" {
		t.Errorf("third buildset (-want +got):\n%s", diff)
	}
	// Each request announced once: 3 keys per request, 1 per buildset.
	if got := len(rec.take()); got != 3*3+2 {
		t.Errorf("%d events, want %d", got, 3*3+2)
	}
	if n := len(must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{}))); n != 3 {
		t.Errorf("%d requests stored, want 3", n)
	}
}

// A write that panics (an HTTP handler's, say, recovered by net/http)
// fails the writes that were to commit with it, and the store goes on
// committing the next ones.
//
// bbolt only: group commit is how bbolt's one writer shares its fsyncs.
func TestGroupCommitPanic(t *testing.T) {
	t.Parallel()
	db := openBolt(t)
	a, _, _ := setup(t, db)
	wait, release := holdWrites(t, db)
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		db.batch(func(*bolt.Tx) error { panic("boom") }, nil)
	}()
	wait(1)
	var wg sync.WaitGroup
	var err error
	wg.Go(func() { _, _, err = db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}}) })
	wait(2)
	release()
	if r := <-panicked; r != "boom" {
		t.Errorf("the panicking write: recovered %v, want boom", r)
	}
	wg.Wait()
	if err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Errorf("write committed with a panicking one: %v, want its panic", err)
	}
	if n := len(must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{}))); n != 0 {
		t.Errorf("%d requests stored by a rolled back commit", n)
	}
	// The queue goes on.
	_, _, err = db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}})
	ok(t, err)
}
