package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// stamps returns the source stamps of buildset bsid without their ids and
// times.
func stamps(t *testing.T, db *store.DB, bsid int64) []store.SourceStamp {
	t.Helper()
	bs, err := db.Buildset(bsid)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]store.SourceStamp, len(bs.SourceStamps))
	for i, ss := range bs.SourceStamps {
		ss.ID, ss.CreatedAt = 0, time.Time{}
		out[i] = ss
	}
	return out
}

var twoCodebases = map[string]config.Codebase{
	"app": {Repository: "https://example.org/app.git", Branch: "main"},
	"lib": {Repository: "https://example.org/lib.git", Branch: "stable", Revision: ""},
}

// A change for codebase app makes a buildset with a stamp for app (the
// change's) and one for lib (as configured, latest revision), as
// buildbot's addBuildsetForChanges; a change of a codebase the scheduler
// does not have is ignored.
func TestCodebasesChangeMakesStampPerCodebase(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	sc := config.Scheduler{Type: "any_branch", Name: "ab", BuilderNames: []string{"b"}, Codebases: twoCodebases}
	s := New([]config.Scheduler{sc}, e.db, e.wake, nil)
	c1 := e.change(store.Change{Codebase: "app", Branch: "main", Revision: "a1", Repository: "https://example.org/app.git", Project: "p"})
	c2 := e.change(store.Change{Codebase: "docs", Branch: "main", Revision: "d1"})
	c3 := e.change(store.Change{Codebase: "lib", Branch: "feature", Revision: "l1", Repository: "https://example.org/lib.git"})
	s.AddChanges([]store.Change{c1, c2, c3})
	if diff := cmp.Diff([][]int64{{c1.ID}, {c3.ID}}, e.buildsets()); diff != "" {
		t.Fatalf("buildsets (-want +got):\n%s", diff)
	}
	want1 := []store.SourceStamp{
		{Codebase: "app", Branch: "main", Revision: "a1", Repository: "https://example.org/app.git", Project: "p"},
		{Codebase: "lib", Branch: "stable", Repository: "https://example.org/lib.git"},
	}
	if diff := cmp.Diff(want1, stamps(t, e.db, 1)); diff != "" {
		t.Errorf("stamps of the app change (-want +got):\n%s", diff)
	}
	want2 := []store.SourceStamp{
		{Codebase: "app", Branch: "main", Repository: "https://example.org/app.git"},
		{Codebase: "lib", Branch: "feature", Revision: "l1", Repository: "https://example.org/lib.git"},
	}
	if diff := cmp.Diff(want2, stamps(t, e.db, 2)); diff != "" {
		t.Errorf("stamps of the lib change (-want +got):\n%s", diff)
	}
	// The change's own stamp is the one its buildset builds (shared ids).
	bs, _ := e.db.Buildset(1)
	got, _ := e.db.Change(c1.ID)
	if bs.SourceStamps[0].ID != got.SourceStampID {
		t.Errorf("buildset stamp %d, change stamp %d: want the same", bs.SourceStamps[0].ID, got.SourceStampID)
	}
}

// A tree-stable timer gathering changes of both codebases builds the
// newest of each.
func TestCodebasesTimerGathersBoth(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		sc := config.Scheduler{Type: "single_branch", Name: "sb", BuilderNames: []string{"b"}, Codebases: twoCodebases,
			TreeStableTimer: config.Duration{Duration: time.Minute}}
		s := New([]config.Scheduler{sc}, e.db, e.wake, nil)
		stop := runSet(t, s)
		defer stop()
		c1 := e.change(store.Change{Codebase: "app", Branch: "main", Revision: "a1"})
		c2 := e.change(store.Change{Codebase: "lib", Branch: "stable", Revision: "l1"})
		c3 := e.change(store.Change{Codebase: "app", Branch: "main", Revision: "a2"})
		s.AddChanges([]store.Change{c1, c2, c3})
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if diff := cmp.Diff([][]int64{{c1.ID, c2.ID, c3.ID}}, e.buildsets()); diff != "" {
			t.Fatalf("buildsets (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]store.SourceStamp{
			{Codebase: "app", Branch: "main", Revision: "a2"},
			{Codebase: "lib", Branch: "stable", Revision: "l1"},
		}, stamps(t, e.db, 1)); diff != "" {
			t.Errorf("stamps (-want +got):\n%s", diff)
		}
	})
}

// A triggerable scheduler with codebases fills in the codebases a trigger
// does not pass, and keeps the others it passes (without project), as
// buildbot's addBuildsetForSourceStampsWithDefaults; without codebases, it
// takes the stamps as they are, or one empty stamp when given none.
func TestCodebasesTrigger(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	if _, err := db.EnsureBuilder("b"); err != nil {
		t.Fatal(err)
	}
	s := New([]config.Scheduler{
		{Type: "triggerable", Name: "with", BuilderNames: []string{"b"}, Codebases: twoCodebases},
		{Type: "triggerable", Name: "without", BuilderNames: []string{"b"}},
	}, db, nil, nil)
	ctx := context.Background()
	tests := []struct {
		name  string
		sched string
		given []store.SourceStamp
		want  []store.SourceStamp
	}{
		{"latest of each", "with", nil, []store.SourceStamp{
			{Codebase: "app", Branch: "main", Repository: "https://example.org/app.git"},
			{Codebase: "lib", Branch: "stable", Repository: "https://example.org/lib.git"},
		}},
		{"one given", "with", []store.SourceStamp{{Codebase: "lib", Branch: "b", Revision: "l9", Repository: "r", Project: "p"}}, []store.SourceStamp{
			{Codebase: "app", Branch: "main", Repository: "https://example.org/app.git"},
			{Codebase: "lib", Branch: "b", Revision: "l9", Repository: "r", Project: "p"},
		}},
		{"an extra codebase", "with", []store.SourceStamp{{Codebase: "zz", Branch: "x", Revision: "z1", Project: "p"}}, []store.SourceStamp{
			{Codebase: "app", Branch: "main", Repository: "https://example.org/app.git"},
			{Codebase: "lib", Branch: "stable", Repository: "https://example.org/lib.git"},
			{Codebase: "zz", Branch: "x", Revision: "z1"},
		}},
		{"without codebases, as given", "without", []store.SourceStamp{{Codebase: "b", Revision: "2"}, {Codebase: "a", Revision: "1"}}, []store.SourceStamp{
			{Codebase: "a", Revision: "1"}, {Codebase: "b", Revision: "2"},
		}},
		{"without codebases, none given", "without", nil, []store.SourceStamp{{}}},
	}
	for _, tc := range tests {
		bsid, _, err := s.Trigger(ctx, tc.sched, TriggerRequest{SourceStamps: tc.given})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, stamps(t, db, bsid)); diff != "" {
			t.Errorf("%s: stamps (-want +got):\n%s", tc.name, diff)
		}
	}
	_, _, err := s.Trigger(ctx, "with", TriggerRequest{SourceStamps: []store.SourceStamp{{Codebase: "app"}, {Codebase: "app"}}})
	if _, ok := errors.AsType[*DuplicateCodebaseError](err); !ok {
		t.Errorf("two stamps of one codebase: err %v, want a DuplicateCodebaseError", err)
	}
}

// A force scheduler with codebases takes each codebase's fields by
// buildbot's full names (branch for "", lib_branch for lib), each
// defaulting to the configured value.
func TestCodebasesForce(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	if _, err := db.EnsureBuilder("b"); err != nil {
		t.Fatal(err)
	}
	cbs := map[string]config.Codebase{"": {Branch: "main"}, "lib": {Branch: "stable", Repository: "lib.git"}}
	s := New([]config.Scheduler{
		{Type: "force", Name: "f", BuilderNames: []string{"b"}, Codebases: cbs,
			Params: []config.ForceParam{{Name: "n", Type: "string", Default: ""}}},
	}, db, nil, nil)
	info := s.ForceSchedulers()[0]
	if diff := cmp.Diff([]ForceCodebase{
		{Codebase: "", Defaults: store.SourceStamp{Branch: "main"}},
		{Codebase: "lib", Defaults: store.SourceStamp{Codebase: "lib", Branch: "stable", Repository: "lib.git"}},
	}, info.Codebases); diff != "" {
		t.Errorf("ForceInfo.Codebases (-want +got):\n%s", diff)
	}
	ctx := context.Background()
	bsid, _, err := s.Force(ctx, "f", ForceRequest{Revision: "r1", Properties: map[string]any{"lib_revision": "l7", "n": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.SourceStamp{
		{Branch: "main", Revision: "r1"},
		{Codebase: "lib", Branch: "stable", Revision: "l7", Repository: "lib.git"},
	}, stamps(t, db, bsid)); diff != "" {
		t.Errorf("stamps (-want +got):\n%s", diff)
	}
	bs, _ := db.Buildset(bsid)
	if _, ok := bs.Properties["lib_revision"]; ok {
		t.Errorf("lib_revision became a property: %v", bs.Properties)
	}
	if string(bs.Properties["n"].Value) != `"v"` {
		t.Errorf("param n = %s, want \"v\"", bs.Properties["n"].Value)
	}
	_, _, err = s.Force(ctx, "f", ForceRequest{Properties: map[string]any{"lib_branch": 3.0}})
	if pe, ok := errors.AsType[*ParamError](err); !ok || pe.Field != "lib_branch" {
		t.Errorf("a number for lib_branch: err %v, want a ParamError on lib_branch", err)
	}
}

// A nightly scheduler with codebases builds the configured stamp of each.
func TestCodebasesStampsWithDefaultsNone(t *testing.T) {
	t.Parallel()
	got, err := stampsWithDefaults(config.Scheduler{Codebases: twoCodebases}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.SourceStamp{
		{Codebase: "app", Branch: "main", Repository: "https://example.org/app.git"},
		{Codebase: "lib", Branch: "stable", Repository: "https://example.org/lib.git"},
	}, got); diff != "" {
		t.Errorf("stamps (-want +got):\n%s", diff)
	}
}

// TestForceRefusesGitOptions: a forced branch, revision or repository that
// git would read as an option (git fetch URL --upload-pack=CMD runs CMD on
// the worker), or holding a control character, is a ParamError on its
// field, with or without codebases, and so is a triggered one; no buildset
// is added. Names with dashes inside pass.
func TestForceRefusesGitOptions(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	if _, err := db.EnsureBuilder("b"); err != nil {
		t.Fatal(err)
	}
	s := New([]config.Scheduler{
		{Type: "force", Name: "plain", BuilderNames: []string{"b"}},
		{Type: "force", Name: "cbs", BuilderNames: []string{"b"}, Codebases: map[string]config.Codebase{"": {Branch: "main"}, "lib": {Branch: "stable"}}},
		{Type: "triggerable", Name: "trig", BuilderNames: []string{"b"}},
	}, db, nil, nil)
	ctx := context.Background()
	upload := "--upload-pack=touch /tmp/x;git-upload-pack"
	for _, tc := range []struct {
		sched, field string
		req          ForceRequest
	}{
		{"plain", "branch", ForceRequest{Branch: upload}},
		{"plain", "revision", ForceRequest{Revision: "--output=/tmp/x"}},
		{"plain", "repository", ForceRequest{Repository: "-u"}},
		{"plain", "branch", ForceRequest{Branch: "main\x00"}},
		{"plain", "branch", ForceRequest{Branch: "main\n"}},
		{"cbs", "branch", ForceRequest{Branch: upload}},
		{"cbs", "lib_branch", ForceRequest{Properties: map[string]any{"lib_branch": upload}}},
		{"cbs", "lib_revision", ForceRequest{Properties: map[string]any{"lib_revision": "-x"}}},
	} {
		_, _, err := s.Force(ctx, tc.sched, tc.req)
		if pe, ok := errors.AsType[*ParamError](err); !ok || pe.Field != tc.field || !strings.Contains(pe.Msg, "git would read it as an option") && !strings.Contains(pe.Msg, "control character") {
			t.Errorf("%s %+v: err %v, want a ParamError on %s", tc.sched, tc.req, err, tc.field)
		}
	}
	_, _, err := s.Trigger(ctx, "trig", TriggerRequest{SourceStamps: []store.SourceStamp{{Codebase: "a", Branch: "main"}, {Codebase: "b", Branch: upload}}})
	if pe, ok := errors.AsType[*ParamError](err); !ok || pe.Field != "source_stamps[1].branch" {
		t.Errorf("trigger: err %v, want a ParamError on source_stamps[1].branch", err)
	}
	if bss, err := db.Buildsets(nil); err != nil || len(bss) != 0 {
		t.Errorf("buildsets after refusals: %d, %v", len(bss), err)
	}
	if _, _, err := s.Force(ctx, "plain", ForceRequest{Branch: "release/1.x-rc-2", Revision: "v1.0-rc1"}); err != nil {
		t.Errorf("branch with dashes inside: %v", err)
	}
}
