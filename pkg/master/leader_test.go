package master

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/store"
)

// lockSpy is a real store whose leader locks the test gets hold of, to
// release one as a lost PostgreSQL session would.
type lockSpy struct {
	store.Store
	locks chan store.Lock
}

func (s lockSpy) Lock(name string) (store.Lock, bool, error) {
	l, ok, err := s.Store.Lock(name)
	if ok {
		s.locks <- l
	}
	return l, ok, err
}

// clusterEnv is a bbolt store with this master ("me") in it and a cluster
// for it, whose terms as leader the test sees.
type clusterEnv struct {
	st    *store.DB
	bus   *events.Bus
	me    store.Master
	c     *cluster
	terms chan string // "start" and "stop" of each term
	locks chan store.Lock
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	bus := events.New(events.Config{})
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{Events: bus})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Check(); err != nil {
			t.Error(err)
		}
		st.Close()
	})
	me, err := st.EnsureMaster("me")
	if err != nil {
		t.Fatal(err)
	}
	e := &clusterEnv{st: st, bus: bus, me: me, terms: make(chan string, 10), locks: make(chan store.Lock, 10)}
	e.c = &cluster{
		st: lockSpy{st, e.locks}, bus: bus, id: me.ID, log: slog.New(slog.DiscardHandler),
		beat: 5 * time.Second, timeout: time.Minute, now: time.Now,
		fence: func() { e.terms <- "fenced" },
		lead: func(ctx context.Context, started chan<- struct{}) error {
			e.terms <- "start"
			close(started)
			<-ctx.Done()
			e.terms <- "stop"
			return nil
		},
	}
	return e
}

// run runs the cluster until the returned stop is called, which returns
// run's error.
func (e *clusterEnv) run(t *testing.T) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	first := make(chan struct{})
	go func() { done <- e.c.run(ctx, first) }()
	<-first
	return func() error {
		cancel()
		return <-done
	}
}

// TestLeaderTerms: on bbolt the master leads from its first try; when its
// lock is lost (a PostgreSQL session ending), what the leader runs stops at
// once, and the master takes the lead again at a later heartbeat; it
// records which master leads.
func TestLeaderTerms(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newClusterEnv(t)
		stop := e.run(t)
		if got := <-e.terms; got != "start" {
			t.Fatalf("first term: %s", got)
		}
		l := <-e.locks
		if ls, ok, err := ReadLeader(e.st); err != nil || !ok || ls.MasterID != e.me.ID {
			t.Errorf("ReadLeader = %+v, %v, %v; want master %d", ls, ok, err, e.me.ID)
		}
		lostAt := time.Now()
		if err := l.Unlock(); err != nil { // the session ends
			t.Fatal(err)
		}
		if got := <-e.terms; got != "stop" || time.Since(lostAt) != 0 {
			t.Fatalf("after the lock was lost: %s after %s, want stop at once", got, time.Since(lostAt))
		}
		if got := <-e.terms; got != "start" {
			t.Fatalf("second term: %s", got)
		}
		if d := time.Since(lostAt); d > e.c.beat {
			t.Errorf("took the lead again after %s, want within heartbeat_interval %s", d, e.c.beat)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := <-e.terms; got != "stop" {
			t.Fatalf("at stop: %s", got)
		}
	})
}

// TestHeartbeat: a running master's last_active moves on every
// heartbeat_interval.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newClusterEnv(t)
		stop := e.run(t)
		defer stop()
		<-e.terms
		for range 3 {
			time.Sleep(e.c.beat)
			synctest.Wait()
			ms, err := e.st.Masters()
			if err != nil {
				t.Fatal(err)
			}
			if !ms[0].Active || !ms[0].LastSeen.Equal(time.Now().UTC()) {
				t.Errorf("master after a heartbeat: %+v, now %s", ms[0], time.Now().UTC())
			}
		}
	})
}

// TestReapSilentMaster: the leader presumes a master silent for
// master_timeout dead: its build ends RETRY, its claimed requests are
// pending again, its worker is disconnected from it, it leaves its builder
// and worker, and it is marked inactive with its last_active kept. A master
// heard of within master_timeout is left alone.
func TestReapSilentMaster(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newClusterEnv(t)
		st := e.st
		dead := must(st.EnsureMaster("dead"))(t)
		alive := must(st.EnsureMaster("alive"))(t)
		b := must(st.EnsureBuilder("b"))(t)
		if err := st.UpdateBuilder(b.ID, "", nil, []int64{e.me.ID, dead.ID, alive.ID}); err != nil {
			t.Fatal(err)
		}
		w := must(st.EnsureWorker("w"))(t)
		on := []store.BuilderMaster{{BuilderID: b.ID, MasterID: dead.ID}, {BuilderID: b.ID, MasterID: e.me.ID}}
		if err := st.SetWorkerConfiguredOn(w.ID, on); err != nil {
			t.Fatal(err)
		}
		if err := st.WorkerConnected(w.ID, dead.ID, nil); err != nil {
			t.Fatal(err)
		}
		_, brids, err := st.AddBuildset(store.NewBuildset{Reason: "r", BuilderIDs: []int64{b.ID}})
		if err != nil {
			t.Fatal(err)
		}
		_, brids2, err := st.AddBuildset(store.NewBuildset{Reason: "claimed, not started", BuilderIDs: []int64{b.ID}})
		if err != nil {
			t.Fatal(err)
		}
		brid, brid2 := brids[b.ID], brids2[b.ID]
		for _, id := range []int64{brid, brid2} {
			if err := st.ClaimBuildRequest(id, dead.ID, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		bld := must(st.AddBuild(store.NewBuild{BuilderID: b.ID, BuildRequestID: brid, WorkerID: w.ID, MasterID: dead.ID}))(t)
		lastSeen := time.Now().Add(-2 * time.Minute).UTC()
		if err := st.SetMasterActive(dead.ID, true, lastSeen); err != nil {
			t.Fatal(err)
		}

		stop := e.run(t)
		defer stop()
		<-e.terms
		// The alive master beats meanwhile.
		for range 3 {
			if err := st.SetMasterActive(alive.ID, true, time.Now()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(e.c.beat)
			synctest.Wait()
		}
		ms := must(st.Masters())(t)
		got := map[string]bool{}
		for _, m := range ms {
			got[m.Name] = m.Active
			if m.ID == dead.ID && !m.LastSeen.Equal(lastSeen) {
				t.Errorf("dead master's last_active = %s, want kept at %s", m.LastSeen, lastSeen)
			}
		}
		if diff := cmp.Diff(map[string]bool{"me": true, "dead": false, "alive": true}, got); diff != "" {
			t.Errorf("masters active (-want +got):\n%s", diff)
		}
		if bld := must(st.Build(bld.ID))(t); !bld.Complete || bld.Results != store.Retry {
			t.Errorf("dead master's build: complete %v results %d, want RETRY", bld.Complete, bld.Results)
		}
		for _, id := range []int64{brid, brid2} {
			if br := must(st.BuildRequest(id))(t); br.Claimed || br.Complete {
				t.Errorf("request %d: claimed %v complete %v, want pending again", id, br.Claimed, br.Complete)
			}
		}
		wk := must(st.Worker(w.ID))(t)
		if len(wk.ConnectedTo) != 0 || !slices.Equal(wk.ConfiguredOn, on[1:]) {
			t.Errorf("worker: connected to %v, configured on %v; want none and %v", wk.ConnectedTo, wk.ConfiguredOn, on[1:])
		}
		if got := must(st.Builder(b.ID))(t).MasterIDs; !slices.Equal(got, []int64{e.me.ID, alive.ID}) {
			t.Errorf("builder's masters = %v, want %v", got, []int64{e.me.ID, alive.ID})
		}
	})
}

// TestDeclaredDead: a master that finds itself marked inactive while it
// runs (the others presumed it dead) fences its engine and stops with
// ErrDeclaredDead, whether the store's event or its own next heartbeat
// tells it.
func TestDeclaredDead(t *testing.T) {
	t.Parallel()
	for _, viaEvent := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			e := newClusterEnv(t)
			if !viaEvent {
				e.c.bus = events.New(events.Config{}) // hears nothing of the store
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- e.c.run(ctx, nil) }()
			if got := <-e.terms; got != "start" {
				t.Fatal(got)
			}
			if err := e.st.SetMasterActive(e.me.ID, false, time.Now()); err != nil {
				t.Fatal(err)
			}
			marked := time.Now()
			if got := <-e.terms; got != "fenced" {
				t.Fatalf("event %v: after being marked inactive: %s, want fenced", viaEvent, got)
			}
			got := <-e.terms
			for got == "fenced" { // again: fencing twice is harmless
				got = <-e.terms
			}
			if got != "stop" {
				t.Fatalf("event %v: then %s, want the term stopped", viaEvent, got)
			}
			if err := <-done; !errors.Is(err, ErrDeclaredDead) {
				t.Errorf("event %v: run = %v, want ErrDeclaredDead", viaEvent, err)
			}
			d := time.Since(marked)
			if viaEvent && d != 0 || !viaEvent && d > e.c.beat {
				t.Errorf("event %v: stopped after %s", viaEvent, d)
			}
		})
	}
}

// hangingBeat is the store of clusterEnv whose heartbeats, from the
// second on, wait until release is closed: a database that stopped
// answering.
type hangingBeat struct {
	store.Store
	beats   int // run's goroutine's
	hanging chan struct{}
	release chan struct{}
}

func (s *hangingBeat) Heartbeat(id int64) (bool, error) {
	s.beats++
	if s.beats == 2 {
		close(s.hanging)
		<-s.release
	}
	return s.Store.Heartbeat(id)
}

// TestDeclaredDeadWhileBeatHangs: a master whose heartbeat waits for the
// database when the store's event says the others presumed it dead stops
// its builds at once, not once the heartbeat returns.
func TestDeclaredDeadWhileBeatHangs(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newClusterEnv(t)
		hb := &hangingBeat{Store: e.c.st, hanging: make(chan struct{}), release: make(chan struct{})}
		e.c.st = hb
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- e.c.run(ctx, nil) }()
		released := false
		defer func() {
			if !released { // failed: let run end
				close(hb.release)
				cancel()
				<-done
			}
		}()
		if got := <-e.terms; got != "start" {
			t.Fatal(got)
		}
		<-hb.hanging
		if err := e.st.SetMasterActive(e.me.ID, false, time.Now()); err != nil {
			t.Fatal(err)
		}
		marked := time.Now()
		synctest.Wait()
		select {
		case got := <-e.terms:
			if got != "fenced" {
				t.Fatalf("after being marked inactive: %s, want fenced", got)
			}
		default:
			t.Fatal("builds not stopped while the heartbeat waits for the database")
		}
		if d := time.Since(marked); d != 0 {
			t.Errorf("fenced after %s, want at once", d)
		}
		close(hb.release)
		released = true
		if err := <-done; !errors.Is(err, ErrDeclaredDead) {
			t.Errorf("run = %v, want ErrDeclaredDead", err)
		}
	})
}

// TestWatchRequests: the engine is woken for requests added or released by
// any master, as the store's events announce them.
func TestWatchRequests(t *testing.T) {
	t.Parallel()
	bus := events.New(events.Config{})
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{Events: bus})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := must(st.EnsureMaster("other"))(t)
	b := must(st.EnsureBuilder("b"))(t)
	woken := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watchRequests(ctx, bus, func() { woken <- struct{}{} }) }()
	<-woken // at subscription
	_, brids, err := st.AddBuildset(store.NewBuildset{Reason: "r", BuilderIDs: []int64{b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	<-woken
	if err := st.ClaimBuildRequest(brids[b.ID], m.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.UnclaimBuildRequest(brids[b.ID]); err != nil {
		t.Fatal(err)
	}
	<-woken
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(woken); n != 0 {
		t.Errorf("woken %d more times (a claim wakes nobody)", n)
	}
}

// TestFeedChanges: every change stored is offered to the leader's
// schedulers through the store's events; when the feed missed events, it
// offers the newest changes again from the store.
func TestFeedChanges(t *testing.T) {
	t.Parallel()
	bus := events.New(events.Config{Size: 4})
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{Events: bus})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	after := bus.Last()
	var early []int64
	for range 6 { // more than the ring keeps: the feed starts behind
		early = append(early, must(st.AddChange(store.Change{Branch: "main"}))(t).ID)
	}
	offered := make(chan []int64, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- feedChanges(ctx, bus, st, after, func(cs []store.Change) {
			ids := make([]int64, len(cs))
			for i, c := range cs {
				ids[i] = c.ID
			}
			offered <- ids
		}, slog.New(slog.DiscardHandler))
	}()
	if got := <-offered; !slices.Equal(got, early) {
		t.Errorf("offered after missing events: %v, want the newest from the store %v", got, early)
	}
	c := must(st.AddChange(store.Change{Branch: "main"}))(t)
	if got := <-offered; !slices.Equal(got, []int64{c.ID}) {
		t.Errorf("offered %v, want %d", got, c.ID)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// must returns v, failing t on err.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
