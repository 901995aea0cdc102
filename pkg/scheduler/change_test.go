package scheduler

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

func TestChangeFilter(t *testing.T) {
	t.Parallel()
	c := store.Change{Branch: "main", Project: "p", Repository: "r", Category: "c", Codebase: "cb", Files: []string{"src/a/b.go", "README.md"}}
	tests := []struct {
		name      string
		sc        config.Scheduler
		match     bool
		important bool
	}{
		{"no filter", config.Scheduler{}, true, true},
		{"branch", config.Scheduler{Branch: "main"}, true, true},
		{"other branch", config.Scheduler{Branch: "dev"}, false, true},
		{"branch_re", config.Scheduler{BranchRe: "^ma"}, true, true},
		{"branch_re no match", config.Scheduler{BranchRe: "^rel"}, false, true},
		{"project", config.Scheduler{Project: "p"}, true, true},
		{"other project", config.Scheduler{Project: "q"}, false, true},
		{"repository", config.Scheduler{Repository: "x"}, false, true},
		{"category", config.Scheduler{Category: "c", Repository: "r"}, true, true},
		{"other category", config.Scheduler{Category: "d"}, false, true},
		{"codebase", config.Scheduler{Codebase: "other"}, false, true},
		{"important file", config.Scheduler{Files: []string{"src/**/*.go"}}, true, true},
		{"no important file", config.Scheduler{Files: []string{"docs/*"}}, true, false},
	}
	for _, tc := range tests {
		f := newChangeFilter(tc.sc)
		if got := f.match(c); got != tc.match {
			t.Errorf("%s: match = %v, want %v", tc.name, got, tc.match)
		}
		if got := f.important(c); got != tc.important {
			t.Errorf("%s: important = %v, want %v", tc.name, got, tc.important)
		}
	}
}

// changeEnv is a store with a builder b and a way to add changes.
type changeEnv struct {
	t    *testing.T
	db   *store.DB
	path string
	mu   sync.Mutex
	woke int // guarded by mu
}

func newChangeEnv(t *testing.T) *changeEnv {
	t.Helper()
	e := &changeEnv{t: t, path: filepath.Join(t.TempDir(), "state.db")}
	e.open()
	t.Cleanup(e.close)
	if _, err := e.db.EnsureBuilder("b"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *changeEnv) open() {
	db, err := store.Open(e.path, store.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.db = db
}

func (e *changeEnv) close() {
	if err := e.db.Check(); err != nil {
		e.t.Error(err)
	}
	e.db.Close()
}

// reopen closes and opens the store again, as a master restart does.
func (e *changeEnv) reopen() {
	e.close()
	e.open()
}

func (e *changeEnv) wake() {
	e.mu.Lock()
	e.woke++
	e.mu.Unlock()
}

func (e *changeEnv) change(c store.Change) store.Change {
	e.t.Helper()
	c, err := e.db.AddChange(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// buildsets returns the change ids of each buildset.
func (e *changeEnv) buildsets() [][]int64 {
	e.t.Helper()
	all, err := e.db.Buildsets(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	out := [][]int64{}
	for _, bs := range all {
		out = append(out, bs.ChangeIDs)
	}
	return out
}

func sb(timer time.Duration) config.Scheduler {
	return config.Scheduler{Type: "single_branch", Name: "sb", BuilderNames: []string{"b"}, Branch: "main",
		TreeStableTimer: config.Duration{Duration: timer}, Properties: map[string]any{"x": "y"}}
}

func TestSingleBranchNoTimer(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	sc := sb(0)
	sc.Files = []string{"*.go"}
	s := New([]config.Scheduler{sc}, e.db, e.wake, nil)
	c1 := e.change(store.Change{Branch: "main", Revision: "r1", Repository: "repo", Files: []string{"a.go"}})
	c2 := e.change(store.Change{Branch: "dev", Revision: "r2", Files: []string{"a.go"}})
	c3 := e.change(store.Change{Branch: "main", Revision: "r3", Files: []string{"a.txt"}})
	c4 := e.change(store.Change{Branch: "main", Revision: "r4", Files: []string{"b.go"}})
	s.AddChanges([]store.Change{c1, c2, c3, c4})
	if diff := cmp.Diff([][]int64{{c1.ID}, {c4.ID}}, e.buildsets()); diff != "" {
		t.Errorf("buildsets (-want +got):\n%s", diff)
	}
	bs, _ := e.db.Buildset(1)
	want := store.Buildset{
		Reason:        "The SingleBranchScheduler scheduler named 'sb' triggered this build",
		SchedulerName: "sb",
		SourceStamps:  []store.SourceStamp{{Branch: "main", Revision: "r1", Repository: "repo"}},
	}
	got := store.Buildset{Reason: bs.Reason, SchedulerName: bs.SchedulerName, SourceStamps: bs.SourceStamps}
	got.SourceStamps[0].ID, got.SourceStamps[0].CreatedAt = 0, time.Time{}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("buildset (-want +got):\n%s", diff)
	}
	if string(bs.Properties["x"].Value) != `"y"` || string(bs.Properties["scheduler"].Value) != `"sb"` || bs.Properties["scheduler"].Source != "Scheduler" {
		t.Errorf("properties %v", bs.Properties)
	}
	if e.woke != 2 {
		t.Errorf("woken %d times, want 2", e.woke)
	}
}

// runSet runs s until the returned stop is called.
func runSet(t *testing.T, s *Set) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestTreeStableTimer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		sc := sb(time.Minute)
		sc.Files = []string{"*.go"}
		s := New([]config.Scheduler{sc}, e.db, e.wake, nil)
		stop := runSet(t, s)
		defer stop()

		var ids []int64
		add := func(branch string, file string) {
			c := e.change(store.Change{Branch: branch, Revision: "r", Files: []string{file}})
			s.AddChanges([]store.Change{c})
			if branch == "main" {
				ids = append(ids, c.ID)
			}
		}
		add("main", "a.txt") // unimportant: gathered, starts no timer
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := e.buildsets(); len(got) != 0 {
			t.Fatalf("an unimportant change started a buildset: %v", got)
		}
		add("main", "a.go")
		time.Sleep(50 * time.Second)
		add("dev", "a.go") // another branch: ignored
		add("main", "b.go")
		time.Sleep(50 * time.Second) // the timer restarted: not fired yet
		synctest.Wait()
		if got := e.buildsets(); len(got) != 0 {
			t.Fatalf("fired before the tree was stable: %v", got)
		}
		add("main", "c.txt") // unimportant, but restarts the running timer
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if got := e.buildsets(); len(got) != 0 {
			t.Fatalf("fired before the tree was stable: %v", got)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if diff := cmp.Diff([][]int64{ids}, e.buildsets()); diff != "" {
			t.Errorf("buildsets (-want +got):\n%s", diff)
		}
		if v, _, _ := e.db.GetState("scheduler:sb", "pending"); string(v) != "[]" {
			t.Errorf("pending state after firing: %s", v)
		}
	})
}

func TestAnyBranchTimerPerBranch(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		s := New([]config.Scheduler{{Type: "any_branch", Name: "any", BuilderNames: []string{"b"}, TreeStableTimer: config.Duration{Duration: time.Minute}}}, e.db, e.wake, nil)
		stop := runSet(t, s)
		defer stop()
		a := e.change(store.Change{Branch: "a"})
		b := e.change(store.Change{Branch: "b"})
		a2 := e.change(store.Change{Branch: "a"})
		s.AddChanges([]store.Change{a, b, a2})
		time.Sleep(61 * time.Second)
		synctest.Wait()
		if diff := cmp.Diff([][]int64{{a.ID, a2.ID}, {b.ID}}, e.buildsets()); diff != "" {
			t.Errorf("buildsets (-want +got):\n%s", diff)
		}
		bs, _ := e.db.Buildset(1)
		if bs.Reason != "The AnyBranchScheduler scheduler named 'any' triggered this build" || bs.SourceStamps[0].Branch != "a" {
			t.Errorf("buildset %+v", bs)
		}
	})
}

func TestTreeStableTimerRestart(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		cfg := []config.Scheduler{sb(time.Minute)}
		s := New(cfg, e.db, e.wake, nil)
		stop := runSet(t, s)
		c1 := e.change(store.Change{Branch: "main", Revision: "1"})
		c2 := e.change(store.Change{Branch: "main", Revision: "2"})
		s.AddChanges([]store.Change{c1, c2})
		time.Sleep(30 * time.Second)
		stop() // the master stops with the changes pending

		e.reopen()
		s = New(cfg, e.db, e.wake, nil)
		if got := e.buildsets(); len(got) != 0 {
			t.Fatalf("buildsets before Run: %v", got)
		}
		stop = runSet(t, s)
		defer func() { stop() }()
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if got := e.buildsets(); len(got) != 0 {
			t.Fatalf("fired before the deadline: %v", got)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if diff := cmp.Diff([][]int64{{c1.ID, c2.ID}}, e.buildsets()); diff != "" {
			t.Errorf("buildsets (-want +got):\n%s", diff)
		}
		bs, _ := e.db.Buildset(1)
		if bs.SourceStamps[0].Revision != "2" {
			t.Errorf("sourcestamp %+v, want the newest change's", bs.SourceStamps)
		}

		// A deadline passed while down fires at once.
		stop()
		c3 := e.change(store.Change{Branch: "main", Revision: "3"})
		s = New(cfg, e.db, e.wake, nil)
		s.AddChanges([]store.Change{c3})
		time.Sleep(time.Hour)
		stop = runSet(t, s)
		synctest.Wait()
		if diff := cmp.Diff([][]int64{{c1.ID, c2.ID}, {c3.ID}}, e.buildsets()); diff != "" {
			t.Errorf("buildsets (-want +got):\n%s", diff)
		}
	})
}

func TestReconfigureKeepsPending(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		other := config.Scheduler{Type: "any_branch", Name: "other", BuilderNames: []string{"b"}, TreeStableTimer: config.Duration{Duration: time.Minute}}
		s := New([]config.Scheduler{sb(time.Minute), other}, e.db, e.wake, nil)
		stop := runSet(t, s)
		defer stop()
		c1 := e.change(store.Change{Branch: "main"})
		s.AddChanges([]store.Change{c1})
		time.Sleep(30 * time.Second)

		moved := sb(time.Minute)
		moved.Line = 42 // the same config on another line
		changed := other
		changed.TreeStableTimer.Duration = 2 * time.Minute
		s.Reconfigure([]config.Scheduler{moved, changed})
		time.Sleep(31 * time.Second)
		synctest.Wait()
		// sb fired for c1 (its timer kept running); other fired too, from the
		// state its predecessor stored, at the old deadline.
		if diff := cmp.Diff([][]int64{{c1.ID}, {c1.ID}}, e.buildsets()); diff != "" {
			t.Errorf("buildsets (-want +got):\n%s", diff)
		}

		c2 := e.change(store.Change{Branch: "main"})
		s.AddChanges([]store.Change{c2})
		s.Reconfigure(nil) // removed: stops, adds nothing
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := e.buildsets(); len(got) != 2 {
			t.Errorf("buildsets after removal: %v", got)
		}
	})
}
