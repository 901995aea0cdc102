package store

import (
	"slices"
	"testing"
	"time"
)

// TestAbandonStoppedMaster: a master stopped (inactive) with a running
// build and claimed requests, as finish_steps_on_restart leaves them, has
// them abandoned by AbandonStoppedMaster as ExpireMaster would: the build
// ends RETRY, the requests are pending again, its worker and builder let
// it go; its record is left as its stop wrote it (inactive, last seen
// kept, no second masters/N/stopped event). Nothing is done to a master
// stopped since stoppedBefore, to an active one, nor twice; and a master
// that came back before the abandonment keeps its builds.
func TestAbandonStoppedMaster(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		var evs keptEvents
		s := be.openWith(t, Options{Events: &evs})
		f := newExpireFixture(t, s)
		ok(t, s.SetMasterActive(f.dead.ID, false, f.lastSeen)) // its clean stop

		if x, err := s.AbandonStoppedMaster(f.dead.ID, f.lastSeen, time.Time{}); err != nil || x {
			t.Fatalf("abandon the work of a master stopped at stoppedBefore: %v, %v; want false", x, err)
		}
		if x, err := s.AbandonStoppedMaster(f.alive.ID, time.Now().Add(time.Hour), time.Time{}); err != nil || x {
			t.Fatalf("abandon the work of an active master: %v, %v; want false", x, err)
		}
		if b := must[Build](t)(s.Build(f.bld.ID)); b.Complete {
			t.Fatalf("build of a master stopped within the grace ended: %+v", b)
		}
		end := time.Now().UTC().Truncate(time.Millisecond)
		if x, err := s.AbandonStoppedMaster(f.dead.ID, f.lastSeen.Add(time.Second), end); err != nil || !x {
			t.Fatalf("abandon the work of a stopped master: %v, %v; want true", x, err)
		}
		if x, err := s.AbandonStoppedMaster(f.dead.ID, time.Now().Add(time.Hour), end); err != nil || x {
			t.Errorf("abandon the work of a stopped master twice: %v, %v; want false", x, err)
		}
		if m := masterOf(t, s, f.dead.ID); m.Active || !m.LastSeen.Equal(f.lastSeen) {
			t.Errorf("stopped master: active %v last seen %s; want inactive, last seen kept at %s", m.Active, m.LastSeen, f.lastSeen)
		}
		if b := must[Build](t)(s.Build(f.bld.ID)); !b.Complete || b.Results != Retry || !b.CompleteAt.Equal(end) {
			t.Errorf("stopped master's build: complete %v results %d at %s; want RETRY at %s", b.Complete, b.Results, b.CompleteAt, end)
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
		waitEvents(t, &evs, "builds/"+itoa(f.bld.ID)+"/finished")
		if n := len(waitEvents(t, &evs, "masters/"+itoa(f.dead.ID)+"/stopped")); n != 1 {
			t.Errorf("%d masters/N/stopped events, want 1 (its own stop's)", n)
		}

		// A master that came back (EnsureMaster) before the abandonment
		// keeps what it left running.
		back := must[Master](t)(s.EnsureMaster("back"))
		_, brids, err := s.AddBuildset(NewBuildset{Reason: "r", BuilderIDs: []int64{f.b.ID}})
		ok(t, err)
		ok(t, s.ClaimBuildRequest(brids[f.b.ID], back.ID, time.Time{}))
		bld := must[Build](t)(s.AddBuild(NewBuild{BuilderID: f.b.ID, BuildRequestID: brids[f.b.ID], WorkerID: f.w.ID, MasterID: back.ID}))
		stop := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
		ok(t, s.SetMasterActive(back.ID, false, stop))
		must[Master](t)(s.EnsureMaster("back"))
		if x, err := s.AbandonStoppedMaster(back.ID, time.Now().Add(time.Hour), time.Time{}); err != nil || x {
			t.Errorf("abandon the work of a master that came back: %v, %v; want false", x, err)
		}
		if b := must[Build](t)(s.Build(bld.ID)); b.Complete {
			t.Errorf("build of a master that came back ended: %+v", b)
		}
		if br := must[BuildRequest](t)(s.BuildRequest(brids[f.b.ID])); !br.Claimed || br.ClaimedByMasterID != back.ID {
			t.Errorf("request of a master that came back: claimed %v by %d; want claimed by %d", br.Claimed, br.ClaimedByMasterID, back.ID)
		}

		// A stopped master whose build had finished (it stopped before it
		// completed the request) has the request completed with the
		// build's result, not built again.
		gone := must[Master](t)(s.EnsureMaster("gone"))
		_, brids, err = s.AddBuildset(NewBuildset{Reason: "r", BuilderIDs: []int64{f.b.ID}})
		ok(t, err)
		ok(t, s.ClaimBuildRequest(brids[f.b.ID], gone.ID, time.Time{}))
		bld = must[Build](t)(s.AddBuild(NewBuild{BuilderID: f.b.ID, BuildRequestID: brids[f.b.ID], WorkerID: f.w.ID, MasterID: gone.ID}))
		ok(t, s.FinishBuild(bld.ID, Success, time.Time{}))
		ok(t, s.SetMasterActive(gone.ID, false, stop))
		if x, err := s.AbandonStoppedMaster(gone.ID, time.Now().Add(time.Hour), time.Time{}); err != nil || !x {
			t.Errorf("abandon the claimed request of a stopped master: %v, %v; want true", x, err)
		}
		if br := must[BuildRequest](t)(s.BuildRequest(brids[f.b.ID])); !br.Complete || br.Results != Success {
			t.Errorf("request whose build finished: complete %v results %d; want SUCCESS", br.Complete, br.Results)
		}
	})
}
