package scheduler

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestChangeOfferedTwiceBuildsOnce: with several masters, the leader is
// offered a change by the poller or hook that added it and again by the
// store's event (or by both a catch-up and an event when it just became
// the leader); each scheduler handles it once.
func TestChangeOfferedTwiceBuildsOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		cfg := []config.Scheduler{
			{Type: "single_branch", Name: "now", BuilderNames: []string{"b"}, Branch: "main"},
			{Type: "single_branch", Name: "stable", BuilderNames: []string{"b"}, Branch: "main",
				TreeStableTimer: config.Duration{Duration: time.Minute}},
			{Type: "nightly", Name: "n", BuilderNames: []string{"b"}, Cron: "0 * * * *", Branch: "main", OnlyIfChanged: true},
		}
		s := New(cfg, e.db, e.wake, nil)
		stop := runSet(t, s)
		defer stop()
		time.Sleep(time.Hour + time.Minute) // the nightly's first time: it builds without a change
		synctest.Wait()
		c1 := e.change(store.Change{Branch: "main", Revision: "a"})
		s.AddChanges([]store.Change{c1})
		s.AddChanges([]store.Change{c1})
		time.Sleep(2 * time.Minute) // the tree-stable timer fires
		synctest.Wait()
		s.AddChanges([]store.Change{c1}) // after it fired: still once
		time.Sleep(time.Hour)            // the nightly's next time
		synctest.Wait()
		s.AddChanges([]store.Change{c1}) // after the nightly built it
		time.Sleep(time.Hour)
		synctest.Wait()
		all, err := e.db.Buildsets(nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][][]int64{}
		for _, bs := range all {
			got[bs.SchedulerName] = append(got[bs.SchedulerName], bs.ChangeIDs)
		}
		want := map[string][][]int64{"now": {{c1.ID}}, "stable": {{c1.ID}}, "n": {nil, {c1.ID}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("buildsets by scheduler (-want +got):\n%s", diff)
		}
	})
}

// TestReloadEnabled: a scheduler disabled through the store by another
// master (KeepEnabled) is disabled here after ReloadEnabled, and enabled
// again the same way.
func TestReloadEnabled(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	s := New([]config.Scheduler{{Type: "single_branch", Name: "sb", BuilderNames: []string{"b"}, Branch: "main"}}, e.db, e.wake, nil)
	if err := KeepEnabled(e.db, "sb", false); err != nil {
		t.Fatal(err)
	}
	if !s.Enabled("sb") {
		t.Fatal("disabled before ReloadEnabled")
	}
	s.ReloadEnabled()
	if s.Enabled("sb") {
		t.Fatal("still enabled after ReloadEnabled")
	}
	if on, err := StoredEnabled(e.db, "sb"); err != nil || on {
		t.Errorf("StoredEnabled = %v, %v", on, err)
	}
	s.AddChanges([]store.Change{e.change(store.Change{Branch: "main"})})
	if got := e.buildsets(); len(got) != 0 {
		t.Errorf("a disabled scheduler built: %v", got)
	}
	if err := KeepEnabled(e.db, "sb", true); err != nil {
		t.Fatal(err)
	}
	s.ReloadEnabled()
	c := e.change(store.Change{Branch: "main"})
	s.AddChanges([]store.Change{c})
	if diff := cmp.Diff([][]int64{{c.ID}}, e.buildsets()); diff != "" {
		t.Errorf("buildsets (-want +got):\n%s", diff)
	}
}
