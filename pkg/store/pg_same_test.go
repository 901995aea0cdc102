package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// evlog is a Publisher that keeps each event as its key and JSON.
type evlog struct {
	mu    sync.Mutex
	lines []string
}

func (e *evlog) Publish(key string, rec any) {
	b, _ := json.Marshal(rec)
	e.mu.Lock()
	e.lines = append(e.lines, key+" "+string(b))
	e.mu.Unlock()
}

func (e *evlog) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.lines
	e.lines = nil
	return l
}

// sameSetup makes masters, builders, buildsets and requests on db.
func sameSetup(t *testing.T, db Store) {
	must[Master](t)(db.EnsureMaster("m"))
	must[Master](t)(db.EnsureMaster("m2"))
	a := must[Builder](t)(db.EnsureBuilder("a"))
	b := must[Builder](t)(db.EnsureBuilder("b"))
	ss := SourceStamp{Codebase: "cb", Branch: "main", Revision: "abc", Repository: "r", Project: "p"}
	_, _, err := db.AddBuildset(NewBuildset{Reason: "one", SourceStamps: []SourceStamp{ss}, BuilderIDs: []int64{a.ID, b.ID}, SubmittedAt: t0})
	ok(t, err)
	_, _, err = db.AddBuildset(NewBuildset{Reason: "two", BuilderIDs: []int64{a.ID}, SubmittedAt: t0})
	ok(t, err)
	_, _, err = db.AddBuildset(NewBuildset{Reason: "three", SourceStamps: []SourceStamp{ss}, BuilderIDs: []int64{b.ID}, SubmittedAt: t0})
	ok(t, err)
	ok(t, db.ClaimBuildRequest(1, 1, t0))
	ok(t, db.ClaimBuildRequest(2, 1, t0))
	ok(t, db.ClaimBuildRequest(3, 2, t0))
	ok(t, db.CompleteBuildRequest(4, Skipped, t0.Add(time.Minute)))
}

// sameRequest, sameBuildset and sameSourceStamp show a record, or that
// it is gone.
func sameRequest(s Store, id int64) string {
	br, err := s.BuildRequest(id)
	return fmt.Sprintf("%+v %v", br, err != nil)
}

func sameBuildset(s Store, id int64) string {
	bs, err := s.Buildset(id)
	return fmt.Sprintf("%+v %v", bs, err != nil)
}

func sameSourceStamp(s Store, id int64) string {
	_, err := s.SourceStamp(id)
	return fmt.Sprint(err != nil)
}

// script runs the same calls on s and returns what each returned and
// published.
func script(t *testing.T, s Store, ev *evlog) []string {
	var out []string
	note := func(name string, vals ...any) {
		var parts []string
		for _, v := range vals {
			switch v := v.(type) {
			case error:
				parts = append(parts, "err: "+v.Error())
			case nil:
				parts = append(parts, "nil")
			default:
				b, _ := json.Marshal(v)
				parts = append(parts, string(b))
			}
		}
		out = append(out, name+" => "+strings.Join(parts, " | "))
		for _, e := range ev.take() {
			out = append(out, "  event "+e)
		}
	}
	var notified int
	var nmu sync.Mutex
	nb := func(builder, br, master int64, at time.Time) NewBuild {
		return NewBuild{BuilderID: builder, BuildRequestID: br, WorkerID: 1, MasterID: master, StartedAt: at, StateString: "starting",
			Properties: Properties{"p": {Value: json.RawMessage(`"v"`), Source: "s"}}}
	}
	b1, err := s.AddBuild(nb(1, 1, 1, t0))
	note("AddBuild", b1, err)
	b2, err := s.AddBuild(nb(2, 2, 1, t0.Add(time.Second)))
	note("AddBuild", b2, err)
	b3, err := s.AddBuild(nb(1, 3, 2, t0.Add(2*time.Second)))
	note("AddBuild", b3, err)
	b, err := s.AddBuild(nb(1, 0, 1, t0.Add(3*time.Second)))
	note("AddBuild no request", b.Number, err)
	_, err = s.AddBuild(nb(9, 0, 1, t0))
	note("AddBuild bad builder", err)
	_, err = s.AddBuild(nb(1, 99, 1, t0))
	note("AddBuild bad request", err)
	note("Build", must[Build](t)(s.Build(b1.ID)))
	_, err = s.Build(99)
	note("Build missing", err)
	note("BuildByNumber", must[Build](t)(s.BuildByNumber(1, 2)))
	_, err = s.BuildByNumber(1, 20)
	note("BuildByNumber missing", err)
	ids := func(bs []Build, err error) []int64 {
		ok(t, err)
		var o []int64
		for _, b := range bs {
			o = append(o, b.ID)
		}
		return o
	}
	tr, fa := true, false
	for _, f := range []BuildFilter{{}, {Desc: true}, {BuilderID: 1}, {BuilderID: 1, Desc: true, Limit: 1}, {BuilderID: 1, Offset: 1},
		{BuildRequestID: 3}, {WorkerID: 1}, {WorkerID: 2}, {Complete: &tr}, {Complete: &fa}, {Before: 3, Desc: true}, {BuilderID: 1, Before: 4, Desc: true},
		{Complete: &fa, BuilderID: 2}, {Limit: 2, Offset: 1, Desc: true}} {
		n, err := s.CountBuilds(f)
		fc := f
		fc.Complete = nil
		note(fmt.Sprintf("Builds %+v %v %v", fc, f.Complete != nil, f.Complete != nil && *f.Complete), ids(s.Builds(f)), n, err)
	}
	note("SetBuildStateString", s.SetBuildStateString(b1.ID, "building"))
	note("SetBuildStateString missing", s.SetBuildStateString(99, "x"))
	note("SetBuildProperty", s.SetBuildProperty(b1.ID, "q", Property{Value: json.RawMessage(`1`), Source: "t", Secrets: []string{"<S>"}}))

	st1, err := s.StartNewStep(b1.ID, "git", t0.Add(time.Second))
	note("StartNewStep", st1, err)
	st2, err := s.AddStep(b1.ID, "git")
	note("AddStep", st2, err)
	st3, err := s.AddStep(b1.ID, "git")
	note("AddStep", st3, err)
	_, err = s.AddStep(99, "x")
	note("AddStep missing", err)
	note("StartStep", s.StartStep(st2.ID, t0.Add(2*time.Second)))
	note("SetStepStateString", s.SetStepStateString(st2.ID, "running"))
	note("SetStepHidden", s.SetStepHidden(st2.ID, true))
	note("AddStepURL", s.AddStepURL(st2.ID, "n", "u"))
	note("AddStepURL", s.AddStepURL(st2.ID, "n", "u"))
	note("AddStepURL", s.AddStepURL(st2.ID, "n2", "u2"))
	note("FinishStep", s.FinishStep(st1.ID, Success, t0.Add(3*time.Second)))
	note("EndStep", s.EndStep(st2.ID, "done", Warnings, t0.Add(4*time.Second)))
	note("FinishStep missing", s.FinishStep(99, 0, t0))
	note("Step", must[Step](t)(s.Step(st2.ID)))
	_, err = s.Step(99)
	note("Step missing", err)
	note("Steps", must[[]Step](t)(s.Steps(b1.ID)))
	note("Steps none", must[[]Step](t)(s.Steps(b2.ID)))
	_, err = s.Steps(99)
	note("Steps missing", err)
	note("StepByNumber", must[Step](t)(s.StepByNumber(b1.ID, 2)))
	_, err = s.StepByNumber(b1.ID, 7)
	note("StepByNumber missing", err)
	note("StepByName", must[Step](t)(s.StepByName(b1.ID, "git_2")))
	_, err = s.StepByName(b1.ID, "nope")
	note("StepByName missing", err)

	l1, err := s.AddLog(st1.ID, "stdio", "s")
	note("AddLog", l1, err)
	_, err = s.AddLog(st1.ID, "stdio", "s")
	note("AddLog dup", err)
	_, err = s.AddLog(st1.ID, "x", "q")
	note("AddLog bad type", err)
	_, err = s.AddLog(99, "x", "t")
	note("AddLog missing", err)
	l2, err := s.AddLog(st1.ID, "std io", "t")
	note("AddLog", l2, err)
	l3, err := s.AddLog(st1.ID, "std/io", "h")
	note("AddLog", l3, err)
	long := strings.Repeat("x", 60)
	l4, err := s.AddLog(st1.ID, long, "t")
	note("AddLog long", l4, err)
	l5, err := s.AddLog(st1.ID, long+"y", "t")
	note("AddLog long2", l5, err)
	_, err = s.AppendLog(l1.ID, "no newline")
	note("AppendLog bad", err)
	for i := 0; i < 5; i++ {
		var lines strings.Builder
		for j := 0; j <= i; j++ {
			fmt.Fprintf(&lines, "ochunk %d line %d\n", i, j)
		}
		first, err := s.AppendLog(l1.ID, lines.String())
		note("AppendLog", first, err)
	}
	for _, r := range [][2]int64{{0, 100}, {0, 0}, {1, 2}, {2, 6}, {5, 5}, {-3, 3}, {14, 20}, {15, 20}, {7, 3}, {3, 11}} {
		str, err := s.LogLines(l1.ID, r[0], r[1])
		note(fmt.Sprintf("LogLines %v", r), str, err)
	}
	_, err = s.LogLines(99, 0, 1)
	note("LogLines missing", err)
	var sb strings.Builder
	note("WriteLog", s.WriteLog(l1.ID, &sb, nil), sb.String())
	sb.Reset()
	note("WriteLog fn", s.WriteLog(l1.ID, &sb, strings.ToUpper), sb.String())
	note("WriteLog missing", s.WriteLog(99, &sb, nil))
	note("FinishLog", s.FinishLog(l1.ID))
	_, err = s.AppendLog(l1.ID, "late\n")
	note("AppendLog finished", err)
	_, err = s.AppendLog(99, "x\n")
	note("AppendLog missing", err)
	note("Log", must[Log](t)(s.Log(l1.ID)))
	_, err = s.Log(99)
	note("Log missing", err)
	note("Logs", must[[]Log](t)(s.Logs(st1.ID)))
	note("Logs none", must[[]Log](t)(s.Logs(st2.ID)))
	_, err = s.Logs(99)
	note("Logs missing", err)
	note("LogBySlug", must[Log](t)(s.LogBySlug(st1.ID, "std_io_2")))
	_, err = s.LogBySlug(st1.ID, "nope")
	note("LogBySlug missing", err)

	rp := ResumePoint{BuildID: b1.ID, MasterID: 1, Builder: "a", Worker: "w", StepID: st3.ID, LogID: l1.ID, StepIndex: 2, StepName: "git",
		ResumeKey: "k", Offset: 10, At: t0, Warnings: &WarningState{Rules: "r", Lines: [][]byte{{0xff}}}}
	note("SetResumePoint", s.SetResumePoint(rp))
	rp2 := rp
	rp2.BuildID, rp2.MasterID = b3.ID, 2
	note("SetResumePoint", s.SetResumePoint(rp2))
	note("SetResumePoint missing", s.SetResumePoint(ResumePoint{BuildID: 99}))
	note("ResumePoints", must[[]ResumePoint](t)(s.ResumePoints(1)))
	note("ResumePoints 3", len(must[[]ResumePoint](t)(s.ResumePoints(3))))
	note("DeleteResumePoint", s.DeleteResumePoint(b3.ID))
	note("DeleteResumePoint none", s.DeleteResumePoint(b3.ID))

	s.SetOutbox(func() { nmu.Lock(); notified++; nmu.Unlock() })
	note("OutboxCursor new", must[int64](t)(s.OutboxCursor("r1")))
	b5, err := s.AddBuild(nb(2, 0, 2, t0.Add(5*time.Second)))
	note("AddBuild outbox", b5, err)
	note("EndBuild", s.EndBuild(b2.ID, "ended", Failure, t0.Add(6*time.Second)))
	note("EndBuild missing", s.EndBuild(99, "x", 0, t0))
	note("FinishBuild", s.FinishBuild(b5.ID, Success, t0.Add(7*time.Second)))
	note("FinishBuild missing", s.FinishBuild(99, 0, t0))
	note("SetResumePoint complete", s.SetResumePoint(ResumePoint{BuildID: b5.ID}))
	okb, err := s.AbandonBuild(b1.ID, t0.Add(8*time.Second))
	note("AbandonBuild", okb, err)
	note("ResumePoints after", must[[]ResumePoint](t)(s.ResumePoints(1)))
	okb, err = s.AbandonBuild(b1.ID, t0.Add(8*time.Second))
	note("AbandonBuild again", okb, err)
	_, err = s.AbandonBuild(99, t0)
	note("AbandonBuild missing", err)
	note("request 1", sameRequest(s, 1))
	st4, _ := s.StartNewStep(b3.ID, "shell", t0)
	lg, _ := s.AddLog(st4.ID, "stdio", "s")
	s.AppendLog(lg.ID, "hello\n")
	ev.take()
	ended, err := s.AbandonBuilds(2, t0.Add(9*time.Second))
	note("AbandonBuilds", ended, err)
	ended, err = s.AbandonBuilds(1, t0.Add(9*time.Second))
	note("AbandonBuilds 1", ended, err)
	for id := int64(1); id <= 4; id++ {
		note("request", sameRequest(s, id))
	}
	note("AddWorkerMissing", s.AddWorkerMissing("w", t0))
	entries := must[[]OutboxEntry](t)(s.OutboxAfter(0, 100))
	for i := range entries {
		if entries[i].Event == OutboxWorkerMissing {
			entries[i].At = time.Time{}
		}
	}
	note("OutboxAfter", entries)
	note("OutboxAfter 2", must[[]OutboxEntry](t)(s.OutboxAfter(2, 1)))
	seq, found, err := s.OutboxFinishedSeq(b2.ID)
	note("OutboxFinishedSeq", seq, found, err)
	seq, found, err = s.OutboxFinishedSeq(b1.ID)
	note("OutboxFinishedSeq abandoned", seq, found, err)
	seq, found, err = s.OutboxFinishedSeq(99)
	note("OutboxFinishedSeq none", seq, found, err)
	note("OutboxCursor r1", must[int64](t)(s.OutboxCursor("r1")))
	note("OutboxCursor r2", must[int64](t)(s.OutboxCursor("r2")))
	note("SkipOutbox", s.SkipOutbox("r1", 2))
	note("OutboxCursor r1", must[int64](t)(s.OutboxCursor("r1")))
	d := Delivery{Reporter: "r1", Seq: 3, BuildID: b2.ID, Event: OutboxFinished, State: DeliveryPending, Attempts: 1, LastError: "boom", CreatedAt: t0, UpdatedAt: t0, NextAt: t0.Add(time.Hour)}
	note("SaveDelivery", s.SaveDelivery(d, false))
	dB := d
	dB.Reporter, dB.State = "B", DeliveryFailed
	note("SaveDelivery", s.SaveDelivery(dB, true))
	da := d
	da.Reporter, da.State = "a", DeliveryDelivered
	note("SaveDelivery", s.SaveDelivery(da, true))
	dw := Delivery{Reporter: "r1", Seq: 9, Event: OutboxWorkerMissing, Worker: "w", State: DeliveryPending, CreatedAt: t0, UpdatedAt: t0}
	note("SaveDelivery", s.SaveDelivery(dw, false))
	got, found, err := s.Delivery("r1", b2.ID, 3)
	note("Delivery", got, found, err)
	got, found, err = s.Delivery("r9", b2.ID, 3)
	note("Delivery none", got, found, err)
	note("Deliveries", must[[]Delivery](t)(s.Deliveries(b2.ID)))
	note("FailedDeliveries", must[int](t)(s.FailedDeliveries()))
	note("OutboxCursor B", must[int64](t)(s.OutboxCursor("B")))
	note("PruneOutbox", s.PruneOutbox([]string{"r1", "a"}))
	entries = must[[]OutboxEntry](t)(s.OutboxAfter(0, 100))
	for i := range entries {
		if entries[i].Event == OutboxWorkerMissing {
			entries[i].At = time.Time{}
		}
	}
	note("OutboxAfter pruned", entries)
	ds := must[[]Delivery](t)(s.Deliveries(0))
	for i := range ds {
		ds[i].UpdatedAt = time.Time{}
	}
	note("Deliveries 0", ds)
	note("FailedDeliveries", must[int](t)(s.FailedDeliveries()))
	note("PruneOutbox none", s.PruneOutbox(nil))
	note("OutboxAfter pruned", must[[]OutboxEntry](t)(s.OutboxAfter(0, 100)))
	note("OutboxCursor r1", must[int64](t)(s.OutboxCursor("r1")))
	s.SetOutbox(nil)

	// The janitor.
	b6, _ := s.AddBuild(nb(2, 0, 1, t0.Add(20*time.Second)))
	ev.take()
	n, err := s.DeleteLogsBefore(t0.Add(7 * time.Second))
	note("DeleteLogsBefore", n, err)
	n, err = s.DeleteLogsBefore(t0.Add(10 * time.Second))
	note("DeleteLogsBefore", n, err)
	n, err = s.DeleteLogsBefore(t0.Add(10 * time.Second))
	note("DeleteLogsBefore again", n, err)
	str, err := s.LogLines(l1.ID, 0, 100)
	note("LogLines deleted", str, err)
	note("Logs after", must[[]Log](t)(s.Logs(st1.ID)))
	for id := int64(1); id <= 3; id++ {
		// Request 2's build had ended when AbandonBuilds completed it.
		if br := must[BuildRequest](t)(s.BuildRequest(id)); !br.Complete {
			ok(t, s.CompleteBuildRequest(id, Success, t0.Add(5*time.Second)))
		}
	}
	ev.take()
	n, err = s.DeleteBuildsBefore(t0.Add(10 * time.Second))
	note("DeleteBuildsBefore", n, err)
	note("Builds after", ids(s.Builds(BuildFilter{})))
	for id := int64(1); id <= 4; id++ {
		note("request", sameRequest(s, id))
		note("buildset", sameBuildset(s, id))
	}
	note("sourcestamp gone", sameSourceStamp(s, 1))
	_ = b6
	nmu.Lock()
	out = append(out, fmt.Sprintf("notified %d", notified))
	nmu.Unlock()
	return out
}

// TestSameOnBothStores runs one script of calls of the builds part
// (builds, steps, logs, resume points, abandoning, the outbox and the
// janitor) on a bbolt and a PostgreSQL store and compares, call by call,
// what each returned (errors' texts included) and published.
func TestSameOnBothStores(t *testing.T) {
	t.Parallel()
	var transcripts [][]string
	for _, be := range backends() {
		ev := &evlog{}
		s := be.openWith(t, Options{Events: ev})
		sameSetup(t, s)
		ev.take()
		transcripts = append(transcripts, script(t, s, ev))
	}
	if diff := cmp.Diff(transcripts[0], transcripts[1]); diff != "" {
		t.Errorf("bbolt (-) and PostgreSQL (+) differ:\n%s", diff)
	}
	// Each write that added outbox entries told the reporters once.
	for i, tr := range transcripts {
		if last := tr[len(tr)-1]; last != "notified 7" {
			t.Errorf("%s: %s, want notified 7", backends()[i].name, last)
		}
	}
}
