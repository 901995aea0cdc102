package master

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestSchedulerIDs: a scheduler keeps its id whatever the config does
// around it, across a reopened store; a new one gets an id never given.
func TestSchedulerIDs(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	ids := func(names ...string) map[string]int64 {
		t.Helper()
		st, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var scheds []config.Scheduler
		for _, n := range names {
			scheds = append(scheds, config.Scheduler{Name: n})
		}
		got, err := schedulerIDs(st, scheds)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, tt := range []struct {
		names []string
		want  map[string]int64
	}{
		{[]string{"a", "b", "c"}, map[string]int64{"a": 1, "b": 2, "c": 3}},
		{[]string{"c", "d"}, map[string]int64{"a": 1, "b": 2, "c": 3, "d": 4}},              // b removed, c moved first
		{[]string{"d", "a", "e"}, map[string]int64{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}}, // a back with its id
		{nil, map[string]int64{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}},
	} {
		if diff := cmp.Diff(tt.want, ids(tt.names...)); diff != "" {
			t.Errorf("config %v: ids (-want +got):\n%s", tt.names, diff)
		}
	}
}
