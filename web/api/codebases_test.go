package api

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// A force scheduler's codebase fields are buildbot's CodebaseParameter
// spec: testdata/force_codebase_fields.json is buildbot 3.7's
// forceScheduler2Data for codebases "" and "lib" (with its branch and
// repository defaults), made with Debian's buildbot package.
func TestForceCodebaseFieldsAsBuildbot(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/force_codebase_fields.json")
	if err != nil {
		t.Fatal(err)
	}
	var want any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	obj := forceschedulerObj(scheduler.ForceInfo{Name: "f", BuilderNames: []string{"b"}, Codebases: []scheduler.ForceCodebase{
		{Codebase: ""},
		{Codebase: "lib", Defaults: store.SourceStamp{Codebase: "lib", Branch: "stable", Repository: "https://example.org/lib.git"}},
	}})
	// Through JSON, as the API sends it, without gbb's empty tooltips.
	b, err := json.Marshal(obj["all_fields"].([]any)[1:])
	if err != nil {
		t.Fatal(err)
	}
	var got any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, dropKey(got, "tooltip")); diff != "" {
		t.Errorf("codebase fields (-buildbot +gbb):\n%s", diff)
	}
}

// dropKey returns v without the key k in any object.
func dropKey(v any, k string) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = dropKey(x, k)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for name, x := range v {
			if name != k {
				out[name] = dropKey(x, k)
			}
		}
		return out
	}
	return v
}
