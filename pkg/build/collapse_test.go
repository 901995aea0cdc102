package build

import (
	"encoding/json"
	"testing"

	"github.com/gbb-ci/gbb/pkg/store"
)

// TestCanCollapse follows buildbot 3.7's BuildRequest.canBeCollapsed case
// by case.
func TestCanCollapse(t *testing.T) {
	t.Parallel()
	prop := func(v any, source string) store.Property {
		raw, _ := json.Marshal(v)
		return store.Property{Value: raw, Source: source}
	}
	ss := func(codebase, branch, revision string) store.SourceStamp {
		return store.SourceStamp{Codebase: codebase, Repository: "https://example.org/r.git", Branch: branch, Revision: revision, Project: "p"}
	}
	bs := func(id int64, changes []int64, props store.Properties, stamps ...store.SourceStamp) store.Buildset {
		return store.Buildset{ID: id, ChangeIDs: changes, Properties: props, SourceStamps: stamps}
	}
	forced := func(reason string) store.Properties {
		return store.Properties{"reason": prop(reason, "Force Build Form"), "owner": prop("me", "Force Build Form"), "scheduler": prop("force", "Scheduler")}
	}
	for _, tc := range []struct {
		name     string
		newer    store.Buildset
		older    store.Buildset
		collapse bool
	}{
		{"same buildset", bs(1, nil, nil, ss("", "main", "a")), bs(1, nil, nil, ss("", "main", "b")), true},
		{"forced, same sources, reasons differ", bs(2, nil, forced("two"), ss("", "main", "")), bs(1, nil, forced("one"), ss("", "main", "")), true},
		{"forced, revisions differ", bs(2, nil, forced("x"), ss("", "main", "b")), bs(1, nil, forced("x"), ss("", "main", "a")), false},
		{"both from changes, revisions differ", bs(2, []int64{8}, nil, ss("", "main", "b")), bs(1, []int64{7}, nil, ss("", "main", "a")), true},
		{"only the newer from changes", bs(2, []int64{8}, nil, ss("", "main", "a")), bs(1, nil, nil, ss("", "main", "a")), false},
		{"only the older from changes", bs(2, nil, nil, ss("", "main", "a")), bs(1, []int64{7}, nil, ss("", "main", "a")), false},
		{"branches differ", bs(2, []int64{8}, nil, ss("", "main", "")), bs(1, []int64{7}, nil, ss("", "dev", "")), false},
		{"codebases differ", bs(2, nil, nil, ss("a", "main", "")), bs(1, nil, nil, ss("b", "main", "")), false},
		{"one codebase more", bs(2, nil, nil, ss("a", "main", ""), ss("b", "main", "")), bs(1, nil, nil, ss("a", "main", "")), false},
		{"scheduler properties differ", bs(2, nil, store.Properties{"x": prop(1, "Scheduler")}, ss("", "main", "")), bs(1, nil, store.Properties{"x": prop(2, "Scheduler")}, ss("", "main", "")), false},
		{"scheduler names differ", bs(2, nil, store.Properties{"scheduler": prop("a", "Scheduler")}, ss("", "main", "")), bs(1, nil, store.Properties{"scheduler": prop("b", "Scheduler")}, ss("", "main", "")), true},
		{"a scheduler property only on one", bs(2, nil, store.Properties{"x": prop(1, "Scheduler")}, ss("", "main", "")), bs(1, nil, nil, ss("", "main", "")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := canCollapse(tc.newer, tc.older); got != tc.collapse {
				t.Errorf("canCollapse = %v, want %v", got, tc.collapse)
			}
		})
	}
}
