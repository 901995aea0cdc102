package store

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// setup makes builders a and b and a master.
func setup(t testing.TB, db Store) (a, b Builder, m Master) {
	t.Helper()
	return must[Builder](t)(db.EnsureBuilder("a")), must[Builder](t)(db.EnsureBuilder("b")), must[Master](t)(db.EnsureMaster("m"))
}

func TestBuildsets(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, b, _ := setup(t, db)
		props := Properties{"owner": {Value: json.RawMessage(`"<me>"`), Source: "force"}}
		ss := SourceStamp{Codebase: "cb", Branch: "main", Revision: "abc", Repository: "https://x/y.git", Project: "p"}
		nb := NewBuildset{
			Reason:        "forced",
			ExternalID:    "ext",
			SchedulerName: "force",
			SourceStamps:  []SourceStamp{ss},
			Properties:    props,
			BuilderIDs:    []int64{a.ID, b.ID},
			Priority:      3,
			SubmittedAt:   t0.In(time.FixedZone("x", 3600)),
		}
		bsid, brids, err := db.AddBuildset(nb)
		ok(t, err)
		if diff := cmp.Diff(map[int64]int64{a.ID: 1, b.ID: 2}, brids); diff != "" {
			t.Errorf("brids (-want +got):\n%s", diff)
		}
		wantSS := ss
		wantSS.ID, wantSS.CreatedAt = 1, t0
		wantBS := Buildset{
			ID: bsid, ExternalID: "ext", Reason: "forced", SubmittedAt: t0, Results: -1,
			SourceStamps: []SourceStamp{wantSS}, Properties: props, SchedulerName: "force",
		}
		if diff := cmp.Diff(wantBS, must[Buildset](t)(db.Buildset(bsid))); diff != "" {
			t.Errorf("Buildset (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(wantSS, must[SourceStamp](t)(db.SourceStamp(1))); diff != "" {
			t.Errorf("SourceStamp (-want +got):\n%s", diff)
		}
		wantBR := BuildRequest{ID: 1, BuildsetID: bsid, BuilderID: a.ID, Priority: 3, SubmittedAt: t0, Results: -1}
		if diff := cmp.Diff(wantBR, must[BuildRequest](t)(db.BuildRequest(1))); diff != "" {
			t.Errorf("BuildRequest (-want +got):\n%s", diff)
		}

		// A second buildset on a only.
		bsid2, brids2, err := db.AddBuildset(NewBuildset{Reason: "second", BuilderIDs: []int64{a.ID}})
		ok(t, err)
		br3 := brids2[a.ID]

		ok(t, db.ClaimBuildRequest(1, 1, t0))
		if err := db.ClaimBuildRequest(1, 2, t0); !errors.Is(err, ErrClaimed) {
			t.Errorf("claim twice: %v, want ErrClaimed", err)
		}
		ok(t, db.ClaimBuildRequest(br3, 1, t0))
		ok(t, db.UnclaimBuildRequest(br3))
		ok(t, db.ClaimBuildRequest(br3, 1, t0))

		ids := func(brs []BuildRequest, err error) []int64 {
			t.Helper()
			ok(t, err)
			var out []int64
			for _, br := range brs {
				out = append(out, br.ID)
			}
			return out
		}
		for _, tc := range []struct {
			name string
			f    BuildRequestFilter
			want []int64
		}{
			{"all", BuildRequestFilter{}, []int64{1, 2, 3}},
			{"builder a", BuildRequestFilter{BuilderID: a.ID}, []int64{1, 3}},
			{"buildset 1", BuildRequestFilter{BuildsetID: bsid}, []int64{1, 2}},
			{"claimed", BuildRequestFilter{Claimed: ptr(true)}, []int64{1, 3}},
			{"unclaimed on b", BuildRequestFilter{BuilderID: b.ID, Claimed: ptr(false)}, []int64{2}},
			{"incomplete", BuildRequestFilter{Complete: ptr(false)}, []int64{1, 2, 3}},
			{"complete", BuildRequestFilter{Complete: ptr(true)}, nil},
		} {
			if diff := cmp.Diff(tc.want, ids(db.BuildRequests(tc.f))); diff != "" {
				t.Errorf("BuildRequests %s (-want +got):\n%s", tc.name, diff)
			}
		}

		// Completing one request of two leaves the buildset incomplete.
		ok(t, db.CompleteBuildRequest(1, Warnings, t0))
		if err := db.CompleteBuildRequest(1, Success, t0); !errors.Is(err, ErrClaimed) {
			t.Errorf("complete twice: %v, want ErrClaimed", err)
		}
		if err := db.ClaimBuildRequest(1, 1, t0); !errors.Is(err, ErrClaimed) {
			t.Errorf("claim complete: %v, want ErrClaimed", err)
		}
		if bs := must[Buildset](t)(db.Buildset(bsid)); bs.Complete {
			t.Errorf("buildset complete after one of two requests")
		}
		// The second, unclaimed (cancelled), completes it with the worst result.
		t1 := t0.Add(time.Minute)
		ok(t, db.CompleteBuildRequest(2, Failure, t1))
		bs := must[Buildset](t)(db.Buildset(bsid))
		if !bs.Complete || bs.Results != Failure || !bs.CompleteAt.Equal(t1) {
			t.Errorf("buildset after all requests: complete %v results %d at %v, want true %d %v", bs.Complete, bs.Results, bs.CompleteAt, Failure, t1)
		}
		if diff := cmp.Diff([]int64{1, 2}, ids(db.BuildRequests(BuildRequestFilter{Complete: ptr(true)}))); diff != "" {
			t.Errorf("complete requests (-want +got):\n%s", diff)
		}
		bsids := func(complete *bool) []int64 {
			t.Helper()
			var out []int64
			for _, bs := range must[[]Buildset](t)(db.Buildsets(complete)) {
				out = append(out, bs.ID)
			}
			return out
		}
		if diff := cmp.Diff([]int64{bsid, bsid2}, bsids(nil)); diff != "" {
			t.Errorf("all buildsets (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int64{bsid}, bsids(ptr(true))); diff != "" {
			t.Errorf("complete buildsets (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int64{bsid2}, bsids(ptr(false))); diff != "" {
			t.Errorf("incomplete buildsets (-want +got):\n%s", diff)
		}

		// Errors.
		if _, _, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{99}}); !errors.Is(err, ErrNotFound) {
			t.Errorf("AddBuildset on a missing builder: %v, want ErrNotFound", err)
		}
		if _, _, err := db.AddBuildset(NewBuildset{}); err == nil {
			t.Error("AddBuildset without builders succeeded")
		}
		for name, err := range map[string]error{
			"Buildset":             func() error { _, err := db.Buildset(99); return err }(),
			"SourceStamp":          func() error { _, err := db.SourceStamp(99); return err }(),
			"BuildRequest":         func() error { _, err := db.BuildRequest(99); return err }(),
			"ClaimBuildRequest":    db.ClaimBuildRequest(99, 1, t0),
			"UnclaimBuildRequest":  db.UnclaimBuildRequest(99),
			"CompleteBuildRequest": db.CompleteBuildRequest(99, Success, t0),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s(99): %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestBuildsetWorstResult(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		var builders []int64
		for _, name := range []string{"a", "b", "c"} {
			builders = append(builders, must[Builder](t)(db.EnsureBuilder(name)).ID)
		}
		for _, tc := range []struct {
			results []int
			want    int
		}{
			{[]int{Success, Success, Success}, Success},
			{[]int{Skipped, Skipped, Skipped}, Skipped},
			{[]int{Skipped, Success, Skipped}, Success},
			{[]int{Success, Warnings, Success}, Warnings},
			{[]int{Failure, Exception, Warnings}, Exception},
			{[]int{Retry, Exception, Success}, Retry},
			{[]int{Retry, Cancelled, Failure}, Cancelled},
		} {
			bsid, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: builders})
			ok(t, err)
			for i, r := range tc.results {
				ok(t, db.CompleteBuildRequest(brids[builders[i]], r, t0))
			}
			if bs := must[Buildset](t)(db.Buildset(bsid)); !bs.Complete || bs.Results != tc.want {
				t.Errorf("results %v: buildset complete %v with %d, want %d", tc.results, bs.Complete, bs.Results, tc.want)
			}
		}
	})
}

func TestBuilds(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, b, m := setup(t, db)
		w := must[Worker](t)(db.EnsureWorker("w"))
		_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}})
		ok(t, err)
		props := Properties{"p": {Value: json.RawMessage(`1`), Source: "s"}}
		b1 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids[a.ID], WorkerID: w.ID, MasterID: m.ID, StartedAt: t0, StateString: "starting", Properties: props}))
		want := Build{ID: 1, Number: 1, BuilderID: a.ID, BuildRequestID: brids[a.ID], WorkerID: w.ID, MasterID: m.ID, StartedAt: t0, Results: -1, StateString: "starting", Properties: props}
		if diff := cmp.Diff(want, b1); diff != "" {
			t.Errorf("AddBuild (-want +got):\n%s", diff)
		}
		b2 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: b.ID, BuildRequestID: brids[b.ID], MasterID: m.ID}))
		b3 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids[a.ID], WorkerID: w.ID, MasterID: m.ID}))
		if b2.Number != 1 || b3.Number != 2 {
			t.Errorf("numbers: b %d, a's second %d; want 1 and 2", b2.Number, b3.Number)
		}
		if b2.StartedAt.IsZero() {
			t.Error("StartedAt zero means now, got zero")
		}

		ok(t, db.SetBuildStateString(b1.ID, "building"))
		ok(t, db.SetBuildProperty(b1.ID, "got_revision", Property{Value: json.RawMessage(`"abc"`), Source: "Git"}))
		ok(t, db.SetBuildProperty(b2.ID, "x", Property{Value: json.RawMessage(`[1,2]`), Source: "y"}))
		t1 := t0.Add(time.Hour)
		ok(t, db.FinishBuild(b1.ID, Failure, t1))
		want.StateString = "building"
		want.Properties = Properties{"p": props["p"], "got_revision": {Value: json.RawMessage(`"abc"`), Source: "Git"}}
		want.Complete, want.CompleteAt, want.Results = true, t1, Failure
		if diff := cmp.Diff(want, must[Build](t)(db.Build(b1.ID))); diff != "" {
			t.Errorf("Build after updates (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(b3, must[Build](t)(db.BuildByNumber(a.ID, 2))); diff != "" {
			t.Errorf("BuildByNumber (-want +got):\n%s", diff)
		}
		if _, err := db.BuildByNumber(a.ID, 3); !errors.Is(err, ErrNotFound) {
			t.Errorf("BuildByNumber(a, 3): %v, want ErrNotFound", err)
		}

		ids := func(f BuildFilter) []int64 {
			t.Helper()
			var out []int64
			for _, b := range must[[]Build](t)(db.Builds(f)) {
				out = append(out, b.ID)
			}
			return out
		}
		for _, tc := range []struct {
			name string
			f    BuildFilter
			want []int64
		}{
			{"all", BuildFilter{}, []int64{1, 2, 3}},
			{"builder a", BuildFilter{BuilderID: a.ID}, []int64{1, 3}},
			{"builder b", BuildFilter{BuilderID: b.ID}, []int64{2}},
			{"request", BuildFilter{BuildRequestID: brids[a.ID]}, []int64{1, 3}},
			{"worker", BuildFilter{WorkerID: w.ID}, []int64{1, 3}},
			{"complete", BuildFilter{Complete: ptr(true)}, []int64{1}},
			{"incomplete", BuildFilter{Complete: ptr(false)}, []int64{2, 3}},
			{"incomplete on a", BuildFilter{BuilderID: a.ID, Complete: ptr(false)}, []int64{3}},
			{"missing builder", BuildFilter{BuilderID: 99}, nil},
		} {
			if diff := cmp.Diff(tc.want, ids(tc.f)); diff != "" {
				t.Errorf("Builds %s (-want +got):\n%s", tc.name, diff)
			}
		}

		if _, err := db.AddBuild(NewBuild{BuilderID: 99}); !errors.Is(err, ErrNotFound) {
			t.Errorf("AddBuild on a missing builder: %v, want ErrNotFound", err)
		}
		if _, err := db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: 99}); !errors.Is(err, ErrNotFound) {
			t.Errorf("AddBuild for a missing request: %v, want ErrNotFound", err)
		}
		for name, err := range map[string]error{
			"Build":               func() error { _, err := db.Build(99); return err }(),
			"SetBuildStateString": db.SetBuildStateString(99, ""),
			"SetBuildProperty":    db.SetBuildProperty(99, "x", Property{}),
			"FinishBuild":         db.FinishBuild(99, Success, t0),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s(99): %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestSteps(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, _, _ := setup(t, db)
		build := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID}))
		other := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID}))
		var steps []Step
		for _, name := range []string{"git", "compile", "git", "git", "git_2x"} {
			steps = append(steps, must[Step](t)(db.AddStep(build.ID, name)))
		}
		var names []string
		for i, s := range steps {
			names = append(names, s.Name)
			if s.Number != i || s.Results != -1 || s.BuildID != build.ID {
				t.Errorf("step %d: %+v", i, s)
			}
		}
		if diff := cmp.Diff([]string{"git", "compile", "git_2", "git_3", "git_2x"}, names); diff != "" {
			t.Errorf("step names (-want +got):\n%s", diff)
		}
		// Names are per build.
		if s := must[Step](t)(db.AddStep(other.ID, "git")); s.Name != "git" || s.Number != 0 {
			t.Errorf("first step of another build: %+v", s)
		}

		id := steps[1].ID
		ok(t, db.StartStep(id, t0))
		ok(t, db.SetStepStateString(id, "compiling"))
		ok(t, db.SetStepHidden(id, true))
		ok(t, db.AddStepURL(id, "docs", "https://x/"))
		ok(t, db.AddStepURL(id, "docs", "https://x/"))
		t1 := t0.Add(time.Second)
		ok(t, db.FinishStep(id, Warnings, t1))
		want := Step{ID: id, BuildID: build.ID, Number: 1, Name: "compile", StartedAt: t0, Complete: true, CompleteAt: t1,
			Results: Warnings, StateString: "compiling", Hidden: true, URLs: []StepURL{{Name: "docs", URL: "https://x/"}}}
		if diff := cmp.Diff(want, must[Step](t)(db.Step(id))); diff != "" {
			t.Errorf("Step (-want +got):\n%s", diff)
		}
		steps[1] = want
		if diff := cmp.Diff(steps, must[[]Step](t)(db.Steps(build.ID))); diff != "" {
			t.Errorf("Steps (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, must[Step](t)(db.StepByNumber(build.ID, 1))); diff != "" {
			t.Errorf("StepByNumber (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(steps[2], must[Step](t)(db.StepByName(build.ID, "git_2"))); diff != "" {
			t.Errorf("StepByName (-want +got):\n%s", diff)
		}
		for name, err := range map[string]error{
			"AddStep":            func() error { _, err := db.AddStep(99, "x"); return err }(),
			"Step":               func() error { _, err := db.Step(99); return err }(),
			"Steps":              func() error { _, err := db.Steps(99); return err }(),
			"StepByNumber":       func() error { _, err := db.StepByNumber(build.ID, 9); return err }(),
			"StepByName":         func() error { _, err := db.StepByName(build.ID, "nope"); return err }(),
			"StartStep":          db.StartStep(99, t0),
			"SetStepStateString": db.SetStepStateString(99, ""),
			"SetStepHidden":      db.SetStepHidden(99, true),
			"FinishStep":         db.FinishStep(99, Success, t0),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s of a missing record: %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestAbandonBuilds(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, b, m := setup(t, db)
		m2 := must[Master](t)(db.EnsureMaster("m2"))
		_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}})
		ok(t, err)
		_, brids2, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}})
		ok(t, err)
		// On m: request a runs (with a finished and a running step), request b
		// is claimed but has no build yet. On m2: one build of its own.
		ok(t, db.ClaimBuildRequest(brids[a.ID], m.ID, t0))
		ok(t, db.ClaimBuildRequest(brids[b.ID], m.ID, t0))
		ok(t, db.ClaimBuildRequest(brids2[a.ID], m2.ID, t0))
		running := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids[a.ID], MasterID: m.ID}))
		done := must[Step](t)(db.AddStep(running.ID, "done"))
		ok(t, db.FinishStep(done.ID, Success, t0))
		doneLog := must[Log](t)(db.AddLog(done.ID, "stdio", "s"))
		ok(t, db.FinishLog(doneLog.ID))
		busy := must[Step](t)(db.AddStep(running.ID, "busy"))
		ok(t, db.StartStep(busy.ID, t0))
		busyLog := must[Log](t)(db.AddLog(busy.ID, "stdio", "s"))
		must[int64](t)(db.AppendLog(busyLog.ID, "ohello\n"))
		elsewhere := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids2[a.ID], MasterID: m2.ID}))

		t1 := t0.Add(time.Hour)
		ended := must[[]int64](t)(db.AbandonBuilds(m.ID, t1))
		if diff := cmp.Diff([]int64{running.ID}, ended); diff != "" {
			t.Errorf("ended (-want +got):\n%s", diff)
		}
		if got := must[Build](t)(db.Build(running.ID)); !got.Complete || got.Results != Retry || !got.CompleteAt.Equal(t1) {
			t.Errorf("abandoned build: %+v", got)
		}
		if got := must[Step](t)(db.Step(done.ID)); got.Results != Success || !got.CompleteAt.Equal(t0) {
			t.Errorf("finished step changed: %+v", got)
		}
		if got := must[Step](t)(db.Step(busy.ID)); !got.Complete || got.Results != Retry || !got.CompleteAt.Equal(t1) {
			t.Errorf("abandoned step: %+v", got)
		}
		if got := must[Log](t)(db.Log(busyLog.ID)); !got.Complete || got.NumLines != 1 {
			t.Errorf("abandoned log: %+v", got)
		}
		for _, id := range []int64{brids[a.ID], brids[b.ID]} {
			br := must[BuildRequest](t)(db.BuildRequest(id))
			if br.Claimed || br.Complete || br.ClaimedByMasterID != 0 || !br.ClaimedAt.IsZero() {
				t.Errorf("request %d after abandon: %+v", id, br)
			}
			ok(t, db.ClaimBuildRequest(id, m.ID, t1)) // it can run again
		}
		if br := must[BuildRequest](t)(db.BuildRequest(brids2[a.ID])); !br.Claimed || br.ClaimedByMasterID != m2.ID {
			t.Errorf("other master's request: %+v", br)
		}
		if got := must[Build](t)(db.Build(elsewhere.ID)); got.Complete {
			t.Errorf("other master's build ended: %+v", got)
		}
		if ended := must[[]int64](t)(db.AbandonBuilds(m.ID, t1)); len(ended) != 0 {
			t.Errorf("second AbandonBuilds ended %v", ended)
		}
	})
}

func TestReopen(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openUnchecked(t, loc, Options{}) // closed below, then reopened
		a, _, m := setup(t, db)
		ok(t, db.UpdateBuilder(a.ID, "desc", []string{"t"}, []int64{m.ID}))
		w := must[Worker](t)(db.EnsureWorker("w"))
		bsid, brids, err := db.AddBuildset(NewBuildset{Reason: "r", BuilderIDs: []int64{a.ID}, SourceStamps: []SourceStamp{{Branch: "main"}}})
		ok(t, err)
		build := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids[a.ID], WorkerID: w.ID, MasterID: m.ID, StartedAt: t0}))
		ok(t, db.SetBuildProperty(build.ID, "p", Property{Value: json.RawMessage(`{"k":"v"}`), Source: "s"}))
		step := must[Step](t)(db.AddStep(build.ID, "s"))
		lg := must[Log](t)(db.AddLog(step.ID, "stdio", "s"))
		must[int64](t)(db.AppendLog(lg.ID, "oone\notwo\n"))
		must[int64](t)(db.AppendLog(lg.ID, "ethree\n"))

		snapshot := func(db Store) map[string]any {
			t.Helper()
			return map[string]any{
				"masters":  must[[]Master](t)(db.Masters()),
				"builders": must[[]Builder](t)(db.Builders()),
				"workers":  must[[]Worker](t)(db.Workers()),
				"buildset": must[Buildset](t)(db.Buildset(bsid)),
				"requests": must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{})),
				"builds":   must[[]Build](t)(db.Builds(BuildFilter{})),
				"steps":    must[[]Step](t)(db.Steps(build.ID)),
				"logs":     must[[]Log](t)(db.Logs(step.ID)),
				"lines":    must[string](t)(db.LogLines(lg.ID, 0, 100)),
			}
		}
		before := snapshot(db)
		ok(t, db.Check())
		ok(t, db.Close())

		db = be.openAt(t, loc, Options{})
		if diff := cmp.Diff(before, snapshot(db)); diff != "" {
			t.Errorf("after reopen (-before +after):\n%s", diff)
		}
		// Ids and numbers go on where they stopped.
		if b := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID})); b.ID != 2 || b.Number != 2 {
			t.Errorf("build after reopen: id %d number %d, want 2 2", b.ID, b.Number)
		}
		if first := must[int64](t)(db.AppendLog(lg.ID, "ofour\n")); first != 3 {
			t.Errorf("AppendLog after reopen: first %d, want 3", first)
		}
	})
}
