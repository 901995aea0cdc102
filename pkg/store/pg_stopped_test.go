package store

import (
	"testing"
	"time"
)

// TestPGStoppedMasterComesBackRacesAbandon: a master stopped with builds
// left to resume comes back (EnsureMaster) while two other masters
// abandon its work at once. Either it comes back first (its build keeps
// running, its request stays claimed, nobody abandoned anything) or one
// abandonment wins (the build ended RETRY, the request pending again)
// and the other finds nothing left; never both, never twice.
func TestPGStoppedMasterComesBackRacesAbandon(t *testing.T) {
	t.Parallel()
	ps := openMasters(t, 3)
	a, b, c := ps[0], ps[1], ps[2]
	must[Master](t)(b.EnsureMaster("b"))
	must[Master](t)(c.EnsureMaster("c"))
	bl := must[Builder](t)(a.EnsureBuilder("b"))
	w := must[Worker](t)(a.EnsureWorker("w"))
	wins := map[string]int{}
	for i := range 20 {
		name := "stopped" + itoa(int64(i))
		m := must[Master](t)(b.EnsureMaster(name))
		_, brids, err := b.AddBuildset(NewBuildset{Reason: "r", BuilderIDs: []int64{bl.ID}})
		ok(t, err)
		brid := brids[bl.ID]
		ok(t, b.ClaimBuildRequest(brid, m.ID, time.Time{}))
		bld := must[Build](t)(b.AddBuild(NewBuild{BuilderID: bl.ID, BuildRequestID: brid, WorkerID: w.ID, MasterID: m.ID}))
		now := must[time.Time](t)(b.Now())
		ok(t, b.SetMasterActive(m.ID, false, now.Add(-time.Minute)))
		var abandoned [3]bool
		var errs [3]error
		race(3, func(j int) {
			switch j {
			case 0:
				_, errs[0] = a.EnsureMaster(name)
			case 1:
				abandoned[1], errs[1] = b.AbandonStoppedMaster(m.ID, now.Add(-time.Second), now)
			case 2:
				abandoned[2], errs[2] = c.AbandonStoppedMaster(m.ID, now.Add(-time.Second), now)
			}
		})
		for _, err := range errs {
			ok(t, err)
		}
		if abandoned[1] && abandoned[2] {
			t.Fatalf("round %d: both masters abandoned the stopped master's work", i)
		}
		done := abandoned[1] || abandoned[2]
		gotBuild := must[Build](t)(a.Build(bld.ID))
		br := must[BuildRequest](t)(a.BuildRequest(brid))
		if !masterOf(t, a, m.ID).Active {
			t.Fatalf("round %d: the master that came back is inactive", i)
		}
		if gotBuild.Complete != done || (done && gotBuild.Results != Retry) || br.Claimed == done {
			t.Fatalf("round %d: abandoned %v, but build complete %v results %d, request claimed %v", i, done, gotBuild.Complete, gotBuild.Results, br.Claimed)
		}
		if done {
			wins["abandon"]++
		} else {
			wins["came back"]++
			ok(t, b.EndBuild(bld.ID, "", Success, time.Time{}))
			ok(t, b.CompleteBuildRequestOf(brid, m.ID, Success, time.Time{}))
		}
	}
	t.Logf("wins: %v", wins)
}
