package master

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// TestReapStoppedMaster: a master stopped (inactive) with a running build
// and a claimed request, as finish_steps_on_restart leaves them, keeps
// them for master_timeout + finish_steps_wait from its stop; then the
// reaper ends the build RETRY and the request is pending again, the
// stopped master staying inactive with its last seen kept. The grace
// follows finish_steps_wait as the config changes.
func TestReapStoppedMaster(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newClusterEnv(t)
		var wait atomic.Int64 // the config's finish_steps_wait
		wait.Store(int64(30 * time.Second))
		e.c.resumeWait = func() time.Duration { return time.Duration(wait.Load()) }
		st := e.st
		gone := must(st.EnsureMaster("gone"))(t)
		b := must(st.EnsureBuilder("b"))(t)
		w := must(st.EnsureWorker("w"))(t)
		_, brids, err := st.AddBuildset(store.NewBuildset{Reason: "r", BuilderIDs: []int64{b.ID}})
		if err != nil {
			t.Fatal(err)
		}
		brid := brids[b.ID]
		if err := st.ClaimBuildRequest(brid, gone.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		bld := must(st.AddBuild(store.NewBuild{BuilderID: b.ID, BuildRequestID: brid, WorkerID: w.ID, MasterID: gone.ID}))(t)
		// Stopped 80s ago: within master_timeout (1m) + finish_steps_wait.
		stopped := time.Now().Add(-80 * time.Second).UTC()
		if err := st.SetMasterActive(gone.ID, false, stopped); err != nil {
			t.Fatal(err)
		}

		stop := e.run(t)
		defer stop()
		<-e.terms
		synctest.Wait()
		if got := must(st.Build(bld.ID))(t); got.Complete {
			t.Fatalf("build of a master stopped 80s ago (grace 90s) ended: %+v", got)
		}
		// finish_steps_wait raised to 2m by a reconfig: 3m of grace.
		wait.Store(int64(2 * time.Minute))
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := must(st.Build(bld.ID))(t); got.Complete {
			t.Fatalf("build of a master stopped 110s ago (grace 3m) ended: %+v", got)
		}
		time.Sleep(75 * time.Second)
		synctest.Wait()
		if got := must(st.Build(bld.ID))(t); !got.Complete || got.Results != store.Retry {
			t.Fatalf("build of a master stopped 3m05s ago: complete %v results %d, want RETRY", got.Complete, got.Results)
		}
		if br := must(st.BuildRequest(brid))(t); br.Claimed || br.Complete {
			t.Errorf("request: claimed %v complete %v, want pending again", br.Claimed, br.Complete)
		}
		for _, m := range must(st.Masters())(t) {
			if m.ID == gone.ID && (m.Active || !m.LastSeen.Equal(stopped)) {
				t.Errorf("stopped master: active %v last seen %s, want inactive, kept at %s", m.Active, m.LastSeen, stopped)
			}
		}
	})
}
