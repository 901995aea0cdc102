package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOutboxSeqCommitOrder: masters sharing a PostgreSQL store add outbox
// entries at once, and a reporter reading from its cursor as they commit
// always finds the next seq first: none commits after a later one, which
// the reporter would have skipped.
func TestOutboxSeqCommitOrder(t *testing.T) {
	t.Parallel()
	onPostgres(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		committed := make(chan struct{}, 1)
		notify := func() {
			select {
			case committed <- struct{}{}:
			default:
			}
		}
		var stores []Store
		for range 2 {
			s := be.openAt(t, loc, Options{})
			s.SetOutbox(notify)
			stores = append(stores, s)
		}
		bldr, _, m := setup(t, stores[0])
		const writers, rounds = 4, 25 // each round adds 3 entries
		var wg sync.WaitGroup
		for i := range writers {
			s := stores[i%len(stores)]
			wg.Go(func() {
				for range rounds {
					b, err := s.AddBuild(NewBuild{BuilderID: bldr.ID, MasterID: m.ID, StartedAt: t0})
					if err != nil {
						t.Error(err)
						return
					}
					if err := s.FinishBuild(b.ID, Success, t0); err != nil {
						t.Error(err)
						return
					}
					if err := s.AddWorkerMissing("w", t0); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		writing := make(chan struct{})
		go func() { wg.Wait(); close(writing) }()

		var cursor int64
		read := func() {
			for {
				es, err := stores[1].OutboxAfter(cursor, 50)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					if e.Seq != cursor+1 {
						t.Fatalf("entry %d read after %d: the reporter skips what commits later", e.Seq, cursor)
					}
					cursor = e.Seq
				}
				if len(es) < 50 {
					return
				}
			}
		}
		for done := false; !done; {
			select {
			case <-committed:
			case <-writing:
				done = true
			}
			read()
		}
		if want := int64(writers * rounds * 3); cursor != want {
			t.Errorf("read %d entries, want %d", cursor, want)
		}
	})
}

// TestBuildNumbersAcrossMasters: masters adding builds of one builder at
// once give each a number of its own, from 1 without a gap.
func TestBuildNumbersAcrossMasters(t *testing.T) {
	t.Parallel()
	onPostgres(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		a, b := be.openAt(t, loc, Options{}), be.openAt(t, loc, Options{})
		bldr, _, m := setup(t, a)
		const writers, each = 4, 20
		var mu sync.Mutex
		var numbers []int64
		var wg sync.WaitGroup
		for i := range writers {
			s := []Store{a, b}[i%2]
			wg.Go(func() {
				for range each {
					build, err := s.AddBuild(NewBuild{BuilderID: bldr.ID, MasterID: m.ID, StartedAt: t0})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					numbers = append(numbers, build.Number)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(numbers)
		for i, n := range numbers {
			if n != int64(i+1) {
				t.Fatalf("numbers %v: want 1 to %d, each once", numbers, writers*each)
			}
		}
		if len(numbers) != writers*each {
			t.Errorf("%d builds added, want %d", len(numbers), writers*each)
		}
	})
}

// TestBuildNumbersAfterCopy: a database whose builders' next numbers were
// not carried over (a copy of records) numbers on after its highest build,
// as bbolt does.
func TestBuildNumbersAfterCopy(t *testing.T) {
	t.Parallel()
	onPostgres(t, func(t *testing.T, be backend) {
		s := be.open(t)
		bldr, _, m := setup(t, s)
		for range 3 {
			must[Build](t)(s.AddBuild(NewBuild{BuilderID: bldr.ID, MasterID: m.ID, StartedAt: t0}))
		}
		p := s.(*PG)
		if _, err := p.pool.Exec(context.Background(), "UPDATE builders SET next_number = 1"); err != nil {
			t.Fatal(err)
		}
		if b := must[Build](t)(s.AddBuild(NewBuild{BuilderID: bldr.ID, MasterID: m.ID, StartedAt: t0})); b.Number != 4 {
			t.Errorf("number after the copy: %d, want 4", b.Number)
		}
		if b := must[Build](t)(s.AddBuild(NewBuild{BuilderID: bldr.ID, MasterID: m.ID, StartedAt: t0})); b.Number != 5 {
			t.Errorf("next number: %d, want 5", b.Number)
		}
	})
}

// TestOutboxFinishedTwice: a build ended a second time (its master ended
// it after another abandoned it) has a second Finished entry, which
// OutboxFinishedSeq gives.
func TestOutboxFinishedTwice(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		s.SetOutbox(func() {})
		bldr, _, m := setup(t, s)
		b := must[Build](t)(s.AddBuild(NewBuild{BuilderID: bldr.ID, MasterID: m.ID, StartedAt: t0}))
		if ended := must[[]int64](t)(s.AbandonBuilds(m.ID, t0)); !slices.Equal(ended, []int64{b.ID}) {
			t.Fatalf("AbandonBuilds ended %v", ended)
		}
		first, found, err := s.OutboxFinishedSeq(b.ID)
		if err != nil || !found {
			t.Fatalf("OutboxFinishedSeq = %d, %v, %v", first, found, err)
		}
		ok(t, s.EndBuild(b.ID, "done", Success, t0.Add(time.Second)))
		second, found, err := s.OutboxFinishedSeq(b.ID)
		if err != nil || !found || second <= first {
			t.Errorf("OutboxFinishedSeq after the second end = %d, %v, %v; want after %d", second, found, err, first)
		}
		es := must[[]OutboxEntry](t)(s.OutboxAfter(0, 10))
		var events []string
		for _, e := range es {
			events = append(events, e.Event)
		}
		if want := []string{OutboxStarted, OutboxFinished, OutboxFinished}; !slices.Equal(events, want) {
			t.Errorf("outbox %v, want %v", events, want)
		}
	})
}

// TestAbandonBuildsWhileMasterWrites: a master abandons the builds of
// another that is only slow and goes on writing them: every write of the
// slow one lands wholly before or after, so no log loses lines it was
// given (Check compares each log's count with its chunks), and the only
// refusal the slow one meets is that its log was finished.
func TestAbandonBuildsWhileMasterWrites(t *testing.T) {
	t.Parallel()
	onPostgres(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		slow, survivor := be.openAt(t, loc, Options{}), be.openAt(t, loc, Options{})
		bldr, _, m := setup(t, slow)
		const builds, appends = 6, 30
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			defer close(done)
			for range builds {
				b, err := slow.AddBuild(NewBuild{BuilderID: bldr.ID, MasterID: m.ID, StartedAt: t0})
				if err != nil {
					t.Error(err)
					return
				}
				for _, name := range []string{"one", "two"} {
					st, err := slow.StartNewStep(b.ID, name, t0)
					if err != nil {
						t.Error(err)
						return
					}
					l, err := slow.AddLog(st.ID, "stdio", "s")
					if err != nil {
						t.Error(err)
						return
					}
					for range appends {
						if _, err := slow.AppendLog(l.ID, "oline\nomore\n"); err != nil {
							if !strings.Contains(err.Error(), "log is finished") {
								t.Error(err)
							}
							break
						}
					}
					for _, err := range []error{slow.FinishLog(l.ID), slow.FinishStep(st.ID, Success, t0)} {
						if err != nil {
							t.Error(err)
						}
					}
				}
				if err := slow.FinishBuild(b.ID, Success, t0); err != nil {
					t.Error(err)
				}
			}
		})
		abandoned := 0
		for running := true; running; {
			select {
			case <-done:
				running = false
			default:
			}
			ended, err := survivor.AbandonBuilds(m.ID, t0)
			if err != nil {
				t.Fatal(err)
			}
			abandoned += len(ended)
		}
		wg.Wait()
		ok(t, survivor.Check())
		if n := must[int](t)(survivor.CountBuilds(BuildFilter{Complete: ptr(false)})); n != 0 {
			t.Errorf("%d builds left running", n)
		}
		t.Logf("%d of %d builds abandoned while written", abandoned, builds)
	})
}

// TestJanitorToTheNanosecond: a build is older than t when its CompleteAt
// is before t, to the nanosecond, on PostgreSQL too (whose timestamps keep
// microseconds).
func TestJanitorToTheNanosecond(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		a, _, _ := setup(t, s)
		old := finishedBuild(t, s, a.ID, t0, 1) // t0 is at .123456789
		finishedBuild(t, s, a.ID, t0.Add(time.Hour), 1)
		if n, err := s.DeleteLogsBefore(t0); err != nil || n != 0 {
			t.Errorf("DeleteLogsBefore(its end) = %d, %v; want 0", n, err)
		}
		if n, err := s.DeleteLogsBefore(t0.Add(time.Nanosecond)); err != nil || n != 2 {
			t.Errorf("DeleteLogsBefore(a nanosecond after its end) = %d, %v; want its 2 logs", n, err)
		}
		if n, err := s.DeleteBuildsBefore(t0); err != nil || n != 0 {
			t.Errorf("DeleteBuildsBefore(its end) = %d, %v; want 0", n, err)
		}
		if n, err := s.DeleteBuildsBefore(t0.Add(time.Nanosecond)); err != nil || n != 1 {
			t.Errorf("DeleteBuildsBefore(a nanosecond after its end) = %d, %v; want 1", n, err)
		}
		if _, err := s.Build(old.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("old build after the janitor: %v", err)
		}
	})
}

// TestOutboxWakesAcrossMasters: the reporters run on one master (the
// leader); a build that starts or ends on another wakes them at once, as
// one of the leader's own does, not at their next poll.
func TestOutboxWakesAcrossMasters(t *testing.T) {
	t.Parallel()
	onPostgres(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		leader := be.openAt(t, loc, Options{Events: &evlog{}})
		other := be.openAt(t, loc, Options{Events: &evlog{}})
		woken := make(chan struct{}, 1)
		leader.SetOutbox(func() {
			select {
			case woken <- struct{}{}:
			default:
			}
		})
		other.SetOutbox(func() {})
		bldr, _, m := setup(t, other)
		wait := func(what string, want []string) {
			t.Helper()
			select {
			case <-woken:
			case <-time.After(20 * time.Second):
				t.Fatalf("the leader's reporters were not woken by the other master's %s", what)
			}
			var got []string
			for _, e := range must[[]OutboxEntry](t)(leader.OutboxAfter(0, 10)) {
				got = append(got, e.Event)
			}
			if !slices.Equal(got, want) {
				t.Errorf("after the %s, the outbox holds %v, want %v", what, got, want)
			}
		}
		b := must[Build](t)(other.AddBuild(NewBuild{BuilderID: bldr.ID, MasterID: m.ID, StartedAt: t0}))
		wait("build's start", []string{OutboxStarted})
		ok(t, other.FinishBuild(b.ID, Success, t0))
		wait("build's end", []string{OutboxStarted, OutboxFinished})
	})
}
