package store

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

// expireFixture is a store with three masters: me, a silent one (dead) and
// alive, sharing a builder and a worker; dead has a running build and two
// claimed requests, and is connected to the worker.
type expireFixture struct {
	me, dead, alive Master
	b               Builder
	w               Worker
	on              []BuilderMaster
	bld             Build
	brids           []int64
	lastSeen        time.Time
}

func newExpireFixture(t *testing.T, s Store) expireFixture {
	t.Helper()
	var f expireFixture
	f.me = must[Master](t)(s.EnsureMaster("me"))
	f.dead = must[Master](t)(s.EnsureMaster("dead"))
	f.alive = must[Master](t)(s.EnsureMaster("alive"))
	f.b = must[Builder](t)(s.EnsureBuilder("b"))
	ok(t, s.UpdateBuilder(f.b.ID, "", nil, []int64{f.me.ID, f.dead.ID, f.alive.ID}))
	f.w = must[Worker](t)(s.EnsureWorker("w"))
	f.on = []BuilderMaster{{BuilderID: f.b.ID, MasterID: f.dead.ID}, {BuilderID: f.b.ID, MasterID: f.me.ID}}
	ok(t, s.SetWorkerConfiguredOn(f.w.ID, f.on))
	ok(t, s.WorkerConnected(f.w.ID, f.dead.ID, nil))
	ok(t, s.WorkerConnected(f.w.ID, f.me.ID, nil))
	for range 2 {
		_, brids, err := s.AddBuildset(NewBuildset{Reason: "r", BuilderIDs: []int64{f.b.ID}})
		ok(t, err)
		ok(t, s.ClaimBuildRequest(brids[f.b.ID], f.dead.ID, time.Time{}))
		f.brids = append(f.brids, brids[f.b.ID])
	}
	f.bld = must[Build](t)(s.AddBuild(NewBuild{BuilderID: f.b.ID, BuildRequestID: f.brids[0], WorkerID: f.w.ID, MasterID: f.dead.ID}))
	f.lastSeen = time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	ok(t, s.SetMasterActive(f.dead.ID, true, f.lastSeen))
	return f
}

// TestExpireMaster: ExpireMaster presumes a silent master dead in one
// write: its build ends RETRY, its requests are pending again, its worker
// is disconnected from it and no longer configured on it, it leaves its
// builder, and it is inactive with its last seen kept. It does nothing to
// a master seen since seenBefore, nor twice; and the expired master's
// heartbeat no longer brings it back.
func TestExpireMaster(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		var evs keptEvents
		s := be.openWith(t, Options{Events: &evs})
		f := newExpireFixture(t, s)

		if x, err := s.ExpireMaster(f.dead.ID, f.lastSeen, time.Time{}); err != nil || x {
			t.Fatalf("expire a master seen at seenBefore: %v, %v; want false", x, err)
		}
		if m := masterOf(t, s, f.dead.ID); !m.Active {
			t.Fatalf("master expired though seen at seenBefore")
		}
		end := time.Now().UTC().Truncate(time.Millisecond)
		if x, err := s.ExpireMaster(f.dead.ID, f.lastSeen.Add(time.Second), end); err != nil || !x {
			t.Fatalf("expire a silent master: %v, %v; want true", x, err)
		}
		if x, err := s.ExpireMaster(f.dead.ID, time.Now().Add(time.Hour), end); err != nil || x {
			t.Errorf("expire an expired master: %v, %v; want false", x, err)
		}
		m := masterOf(t, s, f.dead.ID)
		if m.Active || !m.LastSeen.Equal(f.lastSeen) {
			t.Errorf("expired master: active %v last seen %s; want inactive, last seen kept at %s", m.Active, m.LastSeen, f.lastSeen)
		}
		if b := must[Build](t)(s.Build(f.bld.ID)); !b.Complete || b.Results != Retry || !b.CompleteAt.Equal(end) {
			t.Errorf("dead master's build: complete %v results %d at %s; want RETRY at %s", b.Complete, b.Results, b.CompleteAt, end)
		}
		for _, id := range f.brids {
			if br := must[BuildRequest](t)(s.BuildRequest(id)); br.Claimed || br.Complete {
				t.Errorf("request %d: claimed %v complete %v; want pending again", id, br.Claimed, br.Complete)
			}
		}
		w := must[Worker](t)(s.Worker(f.w.ID))
		if !slices.Equal(w.ConnectedTo, []int64{f.me.ID}) || !slices.Equal(w.ConfiguredOn, f.on[1:]) {
			t.Errorf("worker: connected to %v, configured on %v; want %v and %v", w.ConnectedTo, w.ConfiguredOn, []int64{f.me.ID}, f.on[1:])
		}
		if got := must[Builder](t)(s.Builder(f.b.ID)).MasterIDs; !slices.Equal(got, []int64{f.me.ID, f.alive.ID}) {
			t.Errorf("builder's masters %v, want %v", got, []int64{f.me.ID, f.alive.ID})
		}

		alive, err := s.Heartbeat(f.dead.ID)
		if err != nil || alive {
			t.Errorf("heartbeat of the expired master: %v, %v; want false", alive, err)
		}
		if m := masterOf(t, s, f.dead.ID); m.Active || !m.LastSeen.Equal(f.lastSeen) {
			t.Errorf("expired master after its heartbeat: active %v last seen %s; want inactive, unchanged", m.Active, m.LastSeen)
		}
		before := must[time.Time](t)(s.Now())
		if alive, err := s.Heartbeat(f.alive.ID); err != nil || !alive {
			t.Errorf("heartbeat of an active master: %v, %v; want true", alive, err)
		}
		after := must[time.Time](t)(s.Now())
		if m := masterOf(t, s, f.alive.ID); !m.Active || m.LastSeen.Before(before) || m.LastSeen.After(after) {
			t.Errorf("beating master: active %v last seen %s; want active, seen between %s and %s (the store's clock)", m.Active, m.LastSeen, before, after)
		}
		if _, err := s.Heartbeat(999); !errors.Is(err, ErrNotFound) {
			t.Errorf("heartbeat of no master: %v, want ErrNotFound", err)
		}

		stopped := 0
		for _, e := range waitEvents(t, &evs, "masters/"+itoa(f.dead.ID)+"/stopped") {
			stopped++
			if m, isM := e.record.(Master); !isM || m.Active {
				t.Errorf("stopped event's record %+v", e.record)
			}
		}
		if stopped != 1 {
			t.Errorf("%d masters/N/stopped events, want 1", stopped)
		}
	})
}

func masterOf(t *testing.T, s Store, id int64) Master {
	t.Helper()
	for _, m := range must[[]Master](t)(s.Masters()) {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no master %d", id)
	return Master{}
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }

// waitEvents returns the events with key k published so far, waiting
// until there is one.
func waitEvents(t *testing.T, evs *keptEvents, k string) []bufferedEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out []bufferedEvent
		for _, e := range evs.events() {
			if e.key == k {
				out = append(out, e)
			}
		}
		if len(out) > 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRequestOfMaster: a master completes or releases a request only while
// it claims it: once another master released it (it presumed the first
// dead) and claimed it again, the first's CompleteBuildRequestOf and
// UnclaimBuildRequestOf return ErrClaimed and change nothing, where
// CompleteBuildRequest and UnclaimBuildRequest (cancelling any request)
// still act.
func TestRequestOfMaster(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		a := must[Master](t)(s.EnsureMaster("a"))
		c := must[Master](t)(s.EnsureMaster("c"))
		b := must[Builder](t)(s.EnsureBuilder("b"))
		_, brids, err := s.AddBuildset(NewBuildset{Reason: "r", BuilderIDs: []int64{b.ID}})
		ok(t, err)
		id := brids[b.ID]
		if err := s.CompleteBuildRequestOf(id, a.ID, Success, time.Time{}); !errors.Is(err, ErrClaimed) {
			t.Errorf("complete an unclaimed request as master a: %v, want ErrClaimed", err)
		}
		ok(t, s.ClaimBuildRequest(id, a.ID, time.Time{}))
		ok(t, s.UnclaimBuildRequest(id)) // a presumed dead: released
		ok(t, s.ClaimBuildRequest(id, c.ID, time.Time{}))
		if err := s.CompleteBuildRequestOf(id, a.ID, Success, time.Time{}); !errors.Is(err, ErrClaimed) {
			t.Errorf("complete c's request as master a: %v, want ErrClaimed", err)
		}
		if err := s.UnclaimBuildRequestOf(id, a.ID); !errors.Is(err, ErrClaimed) {
			t.Errorf("unclaim c's request as master a: %v, want ErrClaimed", err)
		}
		if br := must[BuildRequest](t)(s.BuildRequest(id)); !br.Claimed || br.ClaimedByMasterID != c.ID || br.Complete {
			t.Errorf("request after a's tries: %+v, want claimed by %d, incomplete", br, c.ID)
		}
		ok(t, s.UnclaimBuildRequestOf(id, c.ID))
		ok(t, s.ClaimBuildRequest(id, c.ID, time.Time{}))
		ok(t, s.CompleteBuildRequestOf(id, c.ID, Failure, time.Time{}))
		if br := must[BuildRequest](t)(s.BuildRequest(id)); !br.Complete || br.Results != Failure {
			t.Errorf("request completed by its master: %+v", br)
		}
		if err := s.CompleteBuildRequestOf(id, c.ID, Failure, time.Time{}); !errors.Is(err, ErrClaimed) {
			t.Errorf("complete twice: %v, want ErrClaimed", err)
		}
		// Cancelling acts on any request, claimed or not.
		_, brids, err = s.AddBuildset(NewBuildset{Reason: "r", BuilderIDs: []int64{b.ID}})
		ok(t, err)
		ok(t, s.CompleteBuildRequest(brids[b.ID], Cancelled, time.Time{}))
	})
}

// TestOnMaster: SetBuilderOnMaster and SetWorkerConfiguredOnMaster change
// one master's place only.
func TestOnMaster(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		b := must[Builder](t)(s.EnsureBuilder("b"))
		w := must[Worker](t)(s.EnsureWorker("w"))
		ok(t, s.SetBuilderOnMaster(b.ID, 3, true))
		ok(t, s.SetBuilderOnMaster(b.ID, 1, true))
		ok(t, s.SetBuilderOnMaster(b.ID, 3, true))
		ok(t, s.SetBuilderInfo(b.ID, "d", []string{"t"}))
		got := must[Builder](t)(s.Builder(b.ID))
		if !slices.Equal(got.MasterIDs, []int64{1, 3}) || got.Description != "d" || !slices.Equal(got.Tags, []string{"t"}) {
			t.Errorf("builder %+v, want masters [1 3], description d, tags [t]", got)
		}
		ok(t, s.SetBuilderOnMaster(b.ID, 1, false))
		if got := must[Builder](t)(s.Builder(b.ID)).MasterIDs; !slices.Equal(got, []int64{3}) {
			t.Errorf("builder's masters %v, want [3]", got)
		}
		ok(t, s.SetWorkerConfiguredOnMaster(w.ID, 1, []BuilderMaster{{BuilderID: b.ID, MasterID: 1}}))
		ok(t, s.SetWorkerConfiguredOnMaster(w.ID, 2, []BuilderMaster{{BuilderID: b.ID, MasterID: 2}}))
		ok(t, s.SetWorkerConfiguredOnMaster(w.ID, 1, nil))
		if got := must[Worker](t)(s.Worker(w.ID)).ConfiguredOn; !slices.Equal(got, []BuilderMaster{{BuilderID: b.ID, MasterID: 2}}) {
			t.Errorf("worker configured on %v, want master 2's only", got)
		}
		if err := s.SetWorkerConfiguredOnMaster(w.ID, 1, []BuilderMaster{{BuilderID: b.ID, MasterID: 2}}); err == nil {
			t.Errorf("configured on master 1 with master 2's builder: no error")
		}
	})
}
