package scheduler

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestSkipCI: a change whose commit message says [ci skip] or [skip ci]
// builds nothing, by default; skip_ci sets other patterns or none.
func TestSkipCI(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	def := sb(0)
	none := sb(0)
	none.Name, none.SkipCI = "none", []string{}
	own := sb(0)
	own.Name, own.SkipCI = "own", []string{`^WIP`}
	s := New([]config.Scheduler{def, none, own}, e.db, e.wake, nil)
	c1 := e.change(store.Change{Branch: "main", Revision: "r1", Comments: "fix the parser\n\n[ci skip]"})
	c2 := e.change(store.Change{Branch: "main", Revision: "r2", Comments: "docs [ skip  ci ]"})
	c3 := e.change(store.Change{Branch: "main", Revision: "r3", Comments: "WIP: try"})
	c4 := e.change(store.Change{Branch: "main", Revision: "r4", Comments: "a real change"})
	s.AddChanges([]store.Change{c1, c2, c3, c4})
	all, err := e.db.Buildsets(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int64{}
	for _, bs := range all {
		got[bs.SchedulerName] = append(got[bs.SchedulerName], bs.ChangeIDs...)
	}
	want := map[string][]int64{
		"sb":   {c3.ID, c4.ID},
		"none": {c1.ID, c2.ID, c3.ID, c4.ID},
		"own":  {c1.ID, c2.ID, c4.ID},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes built per scheduler (-want +got):\n%s", diff)
	}
}
