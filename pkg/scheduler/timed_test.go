package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// submitted returns the local submission time of each buildset.
func (e *changeEnv) submitted() []time.Time {
	e.t.Helper()
	all, err := e.db.Buildsets(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []time.Time
	for _, bs := range all {
		out = append(out, bs.SubmittedAt.In(time.Local))
	}
	return out
}

func TestPeriodic(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		cfg := []config.Scheduler{{Type: "periodic", Name: "p", BuilderNames: []string{"b"}, Period: config.Duration{Duration: time.Hour}}}
		s := New(cfg, e.db, e.wake, nil)
		stop := runSet(t, s)
		start := time.Now()
		synctest.Wait()
		// As buildbot's: a periodic scheduler that never ran builds at once.
		if got := len(e.submitted()); got != 1 {
			t.Fatalf("%d buildsets at start, want 1", got)
		}
		time.Sleep(3*time.Hour + time.Minute)
		synctest.Wait()
		if got := len(e.submitted()); got != 4 {
			t.Errorf("%d buildsets after 3 periods, want 4", got)
		}
		bs, _ := e.db.Buildset(2)
		if bs.Reason != "The Periodic scheduler named 'p' triggered this build" || !bs.SubmittedAt.Equal(start.Add(time.Hour)) {
			t.Errorf("buildset %+v", bs)
		}
		stop()

		// After a restart it goes on from the last time, not from scratch;
		// the times missed while down give one build at once.
		e.reopen()
		s = New(cfg, e.db, e.wake, nil)
		stop = runSet(t, s)
		synctest.Wait()
		if got := len(e.submitted()); got != 4 {
			t.Errorf("%d buildsets after a restart, want still 4", got)
		}
		stop()
		time.Sleep(5 * time.Hour)
		s = New(cfg, e.db, e.wake, nil)
		stop = runSet(t, s)
		defer func() { stop() }()
		synctest.Wait()
		if got := len(e.submitted()); got != 5 {
			t.Errorf("%d buildsets after 5 hours down, want 5", got)
		}
	})
}

func TestNightly(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"0 3 * * *", "0 3,15 * * 1-5"} {
		t.Run(spec, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				e := newChangeEnv(t)
				cfg := []config.Scheduler{{Type: "nightly", Name: "n", BuilderNames: []string{"b"}, Cron: spec, Branch: "main"}}
				s := New(cfg, e.db, e.wake, nil)
				stop := runSet(t, s)
				defer func() { stop() }()
				time.Sleep(7 * 24 * time.Hour)
				synctest.Wait()
				sched, _ := config.ParseCron(spec)
				var want []time.Time
				now := time.Now().In(time.Local)
				for at := sched.Next(now.Add(-7 * 24 * time.Hour)); !at.After(now); at = sched.Next(at) {
					want = append(want, at)
				}
				if len(want) < 5 {
					t.Fatalf("expected at least 5 times in a week, got %v", want)
				}
				got := e.submitted()
				if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
					t.Errorf("times (-want +got):\n%s", diff)
				}
				for _, at := range got {
					if at.Minute() != 0 || at.Hour()%12 != 3 {
						t.Errorf("built at %v", at)
					}
				}
				bs, _ := e.db.Buildset(1)
				if bs.Reason != "The Nightly scheduler named 'n' triggered this build" || bs.SourceStamps[0].Branch != "main" {
					t.Errorf("buildset %+v", bs)
				}

				// No second build for the same time after a restart.
				stop()
				e.reopen()
				s = New(cfg, e.db, e.wake, nil)
				stop = runSet(t, s)
				synctest.Wait()
				if n := len(e.submitted()); n != len(want) {
					t.Errorf("%d buildsets after a restart, want %d", n, len(want))
				}
			})
		})
	}
}

func TestNightlyOnlyIfChanged(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		cfg := []config.Scheduler{{Type: "nightly", Name: "n", BuilderNames: []string{"b"}, Cron: "0 * * * *", Branch: "main", OnlyIfChanged: true}}
		s := New(cfg, e.db, e.wake, nil)
		stop := runSet(t, s)
		defer func() { stop() }()
		// The first time builds, as buildbot's: there is no baseline yet.
		time.Sleep(time.Hour + time.Minute)
		synctest.Wait()
		if diff := cmp.Diff([][]int64{nil}, e.buildsets()); diff != "" {
			t.Fatalf("buildsets (-want +got):\n%s", diff)
		}
		// No change: skipped; a change on another branch does not count.
		s.AddChanges([]store.Change{e.change(store.Change{Branch: "dev"})})
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := e.buildsets(); len(got) != 1 {
			t.Fatalf("buildsets without a change: %v", got)
		}
		c1 := e.change(store.Change{Branch: "main", Revision: "a"})
		c2 := e.change(store.Change{Branch: "main", Revision: "b"})
		s.AddChanges([]store.Change{c1})
		stop() // the gathered change survives a restart
		e.reopen()
		s = New(cfg, e.db, e.wake, nil)
		stop = runSet(t, s)
		s.AddChanges([]store.Change{c2})
		time.Sleep(time.Hour)
		synctest.Wait()
		if diff := cmp.Diff([][]int64{nil, {c1.ID, c2.ID}}, e.buildsets()); diff != "" {
			t.Errorf("buildsets (-want +got):\n%s", diff)
		}
		bs, _ := e.db.Buildset(2)
		if bs.SourceStamps[0].Revision != "b" {
			t.Errorf("sourcestamps %+v", bs.SourceStamps)
		}
	})
}

func TestTrigger(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	c, _ := e.db.EnsureBuilder("c")
	s := New([]config.Scheduler{
		{Type: "triggerable", Name: "t", BuilderNames: []string{"b", "c"}, Properties: map[string]any{"a": "sched", "keep": 1}},
		{Type: "force", Name: "f", BuilderNames: []string{"b"}},
	}, e.db, e.wake, nil)
	a, _ := NewProperty("set", "Trigger")
	bsid, brids, err := s.Trigger(context.Background(), "t", TriggerRequest{
		SourceStamps: []store.SourceStamp{{ID: 99, Branch: "main", Revision: "abc", Codebase: "cb"}},
		Properties:   store.Properties{"a": a},
		WaitedFor:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(brids) != 2 || brids[c.ID] == 0 || e.woke != 1 {
		t.Errorf("brids %v, woken %d", brids, e.woke)
	}
	br, _ := e.db.BuildRequest(brids[c.ID])
	if !br.WaitedFor {
		t.Errorf("request not waited for: %+v", br)
	}
	bs, _ := e.db.Buildset(bsid)
	got := map[string]any{}
	for k, p := range bs.Properties {
		var v any
		json.Unmarshal(p.Value, &v)
		got[k] = []any{v, p.Source}
	}
	want := map[string]any{"a": []any{"set", "Trigger"}, "keep": []any{1.0, "Scheduler"}, "scheduler": []any{"t", "Scheduler"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}
	if bs.Reason != "The Triggerable scheduler named 't' triggered this build" || bs.SourceStamps[0].Revision != "abc" || bs.SourceStamps[0].ID == 99 {
		t.Errorf("buildset %+v", bs)
	}
	for _, name := range []string{"nope", "f"} {
		if _, _, err := s.Trigger(context.Background(), name, TriggerRequest{}); !errors.Is(err, ErrNotTriggerable) {
			t.Errorf("Trigger(%q): %v, want ErrNotTriggerable", name, err)
		}
	}
}
