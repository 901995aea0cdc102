package build

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// What a trigger step passes on, as buildbot's
// prepareSourcestampListForTrigger.
func TestPassStamps(t *testing.T) {
	t.Parallel()
	two := []store.SourceStamp{
		{ID: 7, Codebase: "lib", Branch: "main", Repository: "lib.git"},
		{ID: 6, Codebase: "app", Branch: "main", Revision: "a1", Repository: "app.git"},
	}
	one := []store.SourceStamp{{Codebase: "x", Branch: "main"}}
	pinned := []config.TriggerSourceStamp{{Codebase: "lib", Revision: "l0"}, {Codebase: "app", Branch: "rel"}}
	tests := []struct {
		name  string
		build []store.SourceStamp
		sc    config.Step
		got   map[string]string
		want  []store.SourceStamp
	}{
		{"the build's, at what it got per codebase", two, config.Step{UpdateSourceStamp: true}, map[string]string{"app": "a2", "lib": "l2"}, []store.SourceStamp{
			{ID: 6, Codebase: "app", Branch: "main", Revision: "a2", Repository: "app.git"},
			{ID: 7, Codebase: "lib", Branch: "main", Revision: "l2", Repository: "lib.git"},
		}},
		{"a string got_revision is codebase \"\"", two, config.Step{UpdateSourceStamp: true}, map[string]string{"": "zz"}, []store.SourceStamp{
			{ID: 6, Codebase: "app", Branch: "main", Revision: "a1", Repository: "app.git"},
			{ID: 7, Codebase: "lib", Branch: "main", Repository: "lib.git"},
		}},
		{"or the build's one stamp", one, config.Step{UpdateSourceStamp: true}, map[string]string{"": "x1"}, []store.SourceStamp{
			{Codebase: "x", Branch: "main", Revision: "x1"},
		}},
		{"update_source_stamp = false", two, config.Step{}, map[string]string{"app": "a2"}, []store.SourceStamp{
			{ID: 6, Codebase: "app", Branch: "main", Revision: "a1", Repository: "app.git"},
			{ID: 7, Codebase: "lib", Branch: "main", Repository: "lib.git"},
		}},
		{"always_use_latest", two, config.Step{AlwaysUseLatest: true}, nil, nil},
		{"source_stamps", two, config.Step{SourceStamps: pinned}, map[string]string{"app": "a2"}, []store.SourceStamp{
			{Codebase: "app", Branch: "rel"}, {Codebase: "lib", Revision: "l0"},
		}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, passStamps(tc.build, tc.sc, tc.got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// got_revision is read as buildbot's getAllGotRevisions: a string is
// codebase "", a table is by codebase.
func TestGotRevisions(t *testing.T) {
	t.Parallel()
	prop := func(v any) store.Properties {
		p, err := scheduler.NewProperty(v, "Git")
		if err != nil {
			t.Fatal(err)
		}
		return store.Properties{"got_revision": p}
	}
	if diff := cmp.Diff(map[string]string{"": "r1"}, gotRevisions(prop("r1"))); diff != "" {
		t.Errorf("string (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"app": "a", "lib": "l"}, gotRevisions(prop(map[string]any{"app": "a", "lib": "l"}))); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	if got := gotRevisions(nil); len(got) != 0 {
		t.Errorf("no property: %v", got)
	}
}
