package scheduler

import (
	"encoding/json"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// A master killed between storing a change and offering it to the
// schedulers, or between adding a buildset and recording it, neither loses
// the change nor builds it twice once it starts again. Each case is a
// crash, staged on the store, then restarts.
func TestCatchUpAfterCrash(t *testing.T) {
	t.Parallel()
	main := func(rev string) store.Change { return store.Change{Branch: "main", Revision: rev} }
	tests := []struct {
		name  string
		timer time.Duration
		crash func(e *changeEnv, s *Set) []store.Change // returns the changes stored
		want  func(cs []store.Change) [][]int64
	}{{
		name: "stored, never offered",
		crash: func(e *changeEnv, s *Set) []store.Change {
			return []store.Change{e.change(main("1")), e.change(main("2"))}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID}, {cs[1].ID}} },
	}, {
		name: "buildset added, lastChange not written",
		crash: func(e *changeEnv, s *Set) []store.Change {
			c := e.change(main("1"))
			s.AddChanges([]store.Change{c})
			if err := e.db.SetState("scheduler:sb", lastKey, json.RawMessage(fmt.Sprint(c.ID-1))); err != nil {
				t.Fatal(err)
			}
			return []store.Change{c}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID}} },
	}, {
		name: "offered out of order, the older one not yet",
		crash: func(e *changeEnv, s *Set) []store.Change {
			c1, c2 := e.change(main("1")), e.change(main("2"))
			s.AddChanges([]store.Change{c2}) // a webhook's, before the poller's c1
			return []store.Change{c1, c2}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[1].ID}, {cs[0].ID}} },
	}, {
		name:  "timer: pending written, lastChange not",
		timer: time.Minute,
		crash: func(e *changeEnv, s *Set) []store.Change {
			c := e.change(main("1"))
			s.AddChanges([]store.Change{c})
			if err := e.db.SetState("scheduler:sb", lastKey, json.RawMessage(fmt.Sprint(c.ID-1))); err != nil {
				t.Fatal(err)
			}
			return []store.Change{c}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID}} },
	}, {
		name:  "timer: fired, pending not cleared",
		timer: time.Minute,
		crash: func(e *changeEnv, s *Set) []store.Change {
			c1, c2 := e.change(main("1")), e.change(main("2"))
			s.AddChanges([]store.Change{c1, c2})
			// The buildset the timer adds, without the pending state's
			// clearing that follows it.
			b, _ := e.db.BuilderByName("b")
			if _, _, err := e.db.AddBuildset(store.NewBuildset{SchedulerName: "sb", ChangeIDs: []int64{c1.ID, c2.ID}, BuilderIDs: []int64{b.ID}}); err != nil {
				t.Fatal(err)
			}
			return []store.Change{c1, c2}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID, cs[1].ID}} },
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				e := newChangeEnv(t)
				cfg := []config.Scheduler{sb(tc.timer)}
				old := e.change(main("before")) // before the scheduler existed: never built
				s := New(cfg, e.db, e.wake, nil)
				cs := tc.crash(e, s) // and the master is killed

				for range 2 { // restart twice: the second finds nothing to do
					e.reopen()
					s = New(cfg, e.db, e.wake, nil)
					stop := runSet(t, s)
					time.Sleep(2 * tc.timer)
					synctest.Wait()
					stop()
				}
				if diff := cmp.Diff(tc.want(cs), e.buildsets()); diff != "" {
					t.Errorf("buildsets (-want +got):\n%s", diff)
				}
				for _, ids := range e.buildsets() {
					for _, id := range ids {
						if id == old.ID {
							t.Errorf("change %d, stored before the scheduler existed, was built", old.ID)
						}
					}
				}
				top := cs[len(cs)-1].ID
				if v, _, _ := e.db.GetState("scheduler:sb", lastKey); string(v) != fmt.Sprint(top) {
					t.Errorf("lastChange %s after the catch-up, want the newest change, %d", v, top)
				}
			})
		})
	}
}

// A scheduler added by a reconfig starts from the newest change, and one
// removed then added again does not build what it missed.
func TestReconfigureStartsFromNewest(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	s := New(nil, e.db, e.wake, nil)
	c1 := e.change(store.Change{Branch: "main"})
	s.AddChanges([]store.Change{c1})
	s.Reconfigure([]config.Scheduler{sb(0)})
	c2 := e.change(store.Change{Branch: "main"})
	s.AddChanges([]store.Change{c2})
	s.Reconfigure(nil)
	c3 := e.change(store.Change{Branch: "main"})
	s.AddChanges([]store.Change{c3})
	s.Reconfigure([]config.Scheduler{sb(0)})
	e.reopen()
	New([]config.Scheduler{sb(0)}, e.db, e.wake, nil)
	if diff := cmp.Diff([][]int64{{c2.ID}}, e.buildsets()); diff != "" {
		t.Errorf("buildsets (-want +got):\n%s", diff)
	}
}

// A change stored before a reconfig that replaces its (changed) scheduler
// but offered only after it (the offer waited for the reconfig, or came
// from another master through the store's events: soak seed 3) is built
// by the successor, once; so is one offered before, not twice.
func TestReconfigureChangedTakesLateChange(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	s := New([]config.Scheduler{sb(0)}, e.db, e.wake, nil)
	c1 := e.change(store.Change{Branch: "main"})
	s.AddChanges([]store.Change{c1})
	c2 := e.change(store.Change{Branch: "main"}) // stored, its offer late
	changed := sb(0)
	changed.Properties = map[string]any{"x": "z"}
	s.Reconfigure([]config.Scheduler{changed})
	s.AddChanges([]store.Change{c2})
	if diff := cmp.Diff([][]int64{{c1.ID}, {c2.ID}}, e.buildsets()); diff != "" {
		t.Errorf("buildsets (-want +got):\n%s", diff)
	}
	if v, _, _ := e.db.GetState("scheduler:sb", lastKey); string(v) != fmt.Sprint(c2.ID) {
		t.Errorf("lastChange %s, want %d", v, c2.ID)
	}
}
