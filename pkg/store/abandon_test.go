package store

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestAbandonFinishedBuildCompletesRequest: a master ends a build
// (EndBuild) and completes its request (CompleteBuildRequest) in two
// writes; killed between them, it leaves the build finished and the
// request claimed. Abandoning its builds (its own restart on bbolt, a reap
// by another master on PostgreSQL) completes that request with the
// build's result, publishing what CompleteBuildRequest would have, rather
// than unclaiming it to be built a second time; a request whose build
// ended RETRY is still unclaimed.
func TestAbandonFinishedBuildCompletesRequest(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db, rec := openEvents(t, be)
		a, b, m := setup(t, db)
		bsid, brids := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}}))
		ra, rb := brids[a.ID], brids[b.ID]
		ok(t, db.ClaimBuildRequest(ra, m.ID, t0))
		ok(t, db.ClaimBuildRequest(rb, m.ID, t0))
		// a's first build ended RETRY (its worker went away) and its
		// request was claimed again: only the last build counts.
		first := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: ra, MasterID: m.ID, StartedAt: t0}))
		ok(t, db.EndBuild(first.ID, "retry", Retry, t0))
		ok(t, db.UnclaimBuildRequest(ra))
		ok(t, db.ClaimBuildRequest(ra, m.ID, t0))
		ba := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: ra, MasterID: m.ID, StartedAt: t0}))
		ok(t, db.EndBuild(ba.ID, "build successful", Success, t0.Add(time.Second)))
		bb := must[Build](t)(db.AddBuild(NewBuild{BuilderID: b.ID, BuildRequestID: rb, MasterID: m.ID, StartedAt: t0}))
		rec.take()

		t1 := t0.Add(5 * time.Second)
		if ended := must[[]int64](t)(db.AbandonBuilds(m.ID, t1)); !slices.Equal(ended, []int64{bb.ID}) {
			t.Fatalf("AbandonBuilds ended %v, want [%d]", ended, bb.ID)
		}
		got := rec.take()
		for _, want := range []string{
			fmt.Sprintf("buildrequests/%d/complete", ra),
			fmt.Sprintf("buildrequests/%d/unclaimed", rb),
		} {
			if !slices.Contains(got, want) {
				t.Errorf("events %v lack %s", got, want)
			}
		}
		if slices.Contains(got, fmt.Sprintf("buildrequests/%d/unclaimed", ra)) {
			t.Errorf("events %v: the finished build's request was unclaimed", got)
		}
		br := must[BuildRequest](t)(db.BuildRequest(ra))
		if !br.Complete || br.Results != Success || !br.CompleteAt.Equal(t1) {
			t.Errorf("request of the finished build: complete %v results %d at %v; want complete, SUCCESS at %v", br.Complete, br.Results, br.CompleteAt, t1)
		}
		br = must[BuildRequest](t)(db.BuildRequest(rb))
		if br.Complete || br.Claimed {
			t.Errorf("request of the running build: complete %v claimed %v; want unclaimed, to run again", br.Complete, br.Claimed)
		}
		if bs := must[Buildset](t)(db.Buildset(bsid)); bs.Complete {
			t.Errorf("buildset complete with a request to run")
		}

		// b's request runs again, fails, and its master dies before
		// completing it: the buildset completes too, with the worst.
		ok(t, db.ClaimBuildRequest(rb, m.ID, t1))
		bb2 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: b.ID, BuildRequestID: rb, MasterID: m.ID, StartedAt: t1}))
		ok(t, db.EndBuild(bb2.ID, "failed", Failure, t1))
		rec.take()
		t2 := t1.Add(5 * time.Second)
		if ended := must[[]int64](t)(db.AbandonBuilds(m.ID, t2)); len(ended) != 0 {
			t.Errorf("AbandonBuilds ended %v, want none", ended)
		}
		got = rec.take()
		want := []string{
			fmt.Sprintf("buildsets/%d/builders/%d/buildrequests/%d/complete", bsid, b.ID, rb),
			fmt.Sprintf("buildrequests/%d/complete", rb),
			fmt.Sprintf("builders/%d/buildrequests/%d/complete", b.ID, rb),
			fmt.Sprintf("buildsets/%d/complete", bsid),
		}
		if !slices.Equal(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		bs := must[Buildset](t)(db.Buildset(bsid))
		if !bs.Complete || bs.Results != Failure {
			t.Errorf("buildset: complete %v results %d; want complete, FAILURE", bs.Complete, bs.Results)
		}
	})
}
