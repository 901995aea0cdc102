package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestResumePoints(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openUnchecked(t, loc, Options{}) // closed below, then reopened
		a, _, m := setup(t, db)
		m2 := must[Master](t)(db.EnsureMaster("m2"))
		if ps := must[[]ResumePoint](t)(db.ResumePoints(m.ID)); len(ps) != 0 {
			t.Fatalf("resume points of a new store: %+v", ps)
		}
		_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}})
		ok(t, err)
		ok(t, db.ClaimBuildRequest(brids[a.ID], m.ID, t0))
		b := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids[a.ID], MasterID: m.ID}))
		step := must[Step](t)(db.AddStep(b.ID, "first"))
		ok(t, db.StartStep(step.ID, t0))
		l := must[Log](t)(db.AddLog(step.ID, "stdio", "s"))
		must[int64](t)(db.AppendLog(l.ID, "obefore\n"))
		p := ResumePoint{
			BuildID: b.ID, MasterID: m.ID, Builder: a.Name, Worker: "w1", StepID: step.ID, LogID: l.ID,
			StepIndex: 0, StepName: "first", Results: Warnings, ResumeKey: "build1-step1-x", Offset: 7, At: t0,
		}
		ok(t, db.SetResumePoint(p))
		other := p
		other.MasterID, other.BuildID = m2.ID, b.ID+100
		if err := db.SetResumePoint(other); err == nil {
			t.Errorf("resume point of a build that does not exist was recorded")
		}

		// A restart reads it back.
		ok(t, db.Check())
		ok(t, db.Close())
		db = be.openAt(t, loc, Options{})
		if diff := cmp.Diff([]ResumePoint{p}, must[[]ResumePoint](t)(db.ResumePoints(m.ID))); diff != "" {
			t.Errorf("resume points after reopen (-want +got):\n%s", diff)
		}
		if ps := must[[]ResumePoint](t)(db.ResumePoints(m2.ID)); len(ps) != 0 {
			t.Errorf("resume points of another master: %+v", ps)
		}
		// The log stays open for the resumed step.
		must[int64](t)(db.AppendLog(l.ID, "oafter\n"))

		t1 := t0.Add(time.Hour)
		if !must[bool](t)(db.AbandonBuild(b.ID, t1)) {
			t.Fatal("AbandonBuild ended nothing")
		}
		if got := must[Build](t)(db.Build(b.ID)); !got.Complete || got.Results != Retry || !got.CompleteAt.Equal(t1) {
			t.Errorf("abandoned build: %+v", got)
		}
		if got := must[Step](t)(db.Step(step.ID)); !got.Complete || got.Results != Retry {
			t.Errorf("abandoned step: %+v", got)
		}
		if got := must[Log](t)(db.Log(l.ID)); !got.Complete || got.NumLines != 2 {
			t.Errorf("abandoned log: %+v", got)
		}
		if br := must[BuildRequest](t)(db.BuildRequest(brids[a.ID])); br.Claimed || br.Complete {
			t.Errorf("request after AbandonBuild: %+v, want unclaimed", br)
		}
		if ps := must[[]ResumePoint](t)(db.ResumePoints(m.ID)); len(ps) != 0 {
			t.Errorf("resume points after AbandonBuild: %+v", ps)
		}
		if must[bool](t)(db.AbandonBuild(b.ID, t1)) {
			t.Error("AbandonBuild of a complete build ended it again")
		}
		if err := db.SetResumePoint(p); err == nil {
			t.Error("resume point of a complete build was recorded")
		}
		ok(t, db.DeleteResumePoint(b.ID)) // none is fine
	})
}
