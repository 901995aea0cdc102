package scheduler

import (
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// timedConfigs are an hourly nightly and an hourly periodic scheduler on
// branch main.
func timedConfigs(onlyIfChanged bool) []config.Scheduler {
	return []config.Scheduler{
		{Type: "nightly", Name: "n", BuilderNames: []string{"b"}, Cron: "0 * * * *", Branch: "main", OnlyIfChanged: onlyIfChanged},
		{Type: "periodic", Name: "p", BuilderNames: []string{"b"}, Period: config.Duration{Duration: time.Hour}, Branch: "main", OnlyIfChanged: onlyIfChanged},
	}
}

// timedState returns the state the scheduler called name has in the
// store.
func (e *changeEnv) timedState(name string) (json.RawMessage, bool) {
	e.t.Helper()
	v, ok, err := e.db.GetState(stateObject(name), timedKey)
	if err != nil {
		e.t.Fatal(err)
	}
	return v, ok
}

// crashBuilding stages on the store a master killed while the scheduler
// called name actuated for the time at: its state is before's, with at
// recorded as Building.
func (e *changeEnv) crashBuilding(name string, before json.RawMessage, at time.Time) {
	e.t.Helper()
	var st timedState
	if before != nil {
		if err := json.Unmarshal(before, &st); err != nil {
			e.t.Fatal(err)
		}
	}
	st.Building = at
	v, err := json.Marshal(st)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.SetState(stateObject(name), timedKey, v); err != nil {
		e.t.Fatal(err)
	}
}

// A master killed with SIGKILL between a change's arrival and the timed
// build of only_if_changed neither loses the change nor builds it twice.
// Each case runs a nightly or periodic scheduler to its first (baseline)
// build, stages a crash on the store, stops the scheduler (which writes
// nothing: the store holds only what was committed), and restarts twice
// on the reopened store file, running an hour each time: the first
// restart builds the change once, the second nothing.
func TestTimedCatchUpAfterCrash(t *testing.T) {
	t.Parallel()
	main := func(rev string) store.Change { return store.Change{Branch: "main", Revision: rev} }
	tests := []struct {
		name string
		// crash runs while the scheduler runs, before the master dies; it
		// returns the changes stored.
		crash func(e *changeEnv, s *Set, name string) []store.Change
		// down stores changes while the master is down.
		down func(e *changeEnv) []store.Change
		want func(cs []store.Change) [][]int64 // the buildsets' changes after the baseline's
	}{{
		name: "stored, never offered",
		crash: func(e *changeEnv, s *Set, name string) []store.Change {
			return []store.Change{e.change(main("1")), e.change(main("2"))}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID, cs[1].ID}} },
	}, {
		name: "stored while the master was down",
		crash: func(e *changeEnv, s *Set, name string) []store.Change {
			return nil
		},
		down: func(e *changeEnv) []store.Change {
			return []store.Change{e.change(main("1"))}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID}} },
	}, {
		name: "offered out of order, the older one not yet",
		crash: func(e *changeEnv, s *Set, name string) []store.Change {
			c1, c2 := e.change(main("1")), e.change(main("2"))
			s.AddChanges([]store.Change{c2}) // a webhook's, before the poller's c1
			return []store.Change{c1, c2}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID, cs[1].ID}} },
	}, {
		name: "gathered",
		crash: func(e *changeEnv, s *Set, name string) []store.Change {
			c := e.change(main("1"))
			s.AddChanges([]store.Change{c})
			return []store.Change{c}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID}} },
	}, {
		name: "stored on another branch, never offered",
		crash: func(e *changeEnv, s *Set, name string) []store.Change {
			return []store.Change{e.change(store.Change{Branch: "dev"})}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{} },
	}, {
		name: "built, state not written",
		crash: func(e *changeEnv, s *Set, name string) []store.Change {
			c := e.change(main("1"))
			s.AddChanges([]store.Change{c})
			before, _ := e.timedState(name)
			time.Sleep(time.Hour) // the next time builds c
			synctest.Wait()
			at := e.submitted()
			if len(at) != 2 {
				e.t.Fatalf("%d buildsets, want the baseline and c's", len(at))
			}
			// The state written after the buildset, lost with the master.
			e.crashBuilding(name, before, at[1])
			return []store.Change{c}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID}} },
	}, {
		name: "built, another stored but never offered",
		crash: func(e *changeEnv, s *Set, name string) []store.Change {
			c1 := e.change(main("1"))
			s.AddChanges([]store.Change{c1})
			before, _ := e.timedState(name)
			time.Sleep(time.Hour)
			synctest.Wait()
			e.crashBuilding(name, before, e.submitted()[1])
			c2 := e.change(main("2"))
			return []store.Change{c1, c2}
		},
		want: func(cs []store.Change) [][]int64 { return [][]int64{{cs[0].ID}, {cs[1].ID}} },
	}}
	for _, tc := range tests {
		for _, sc := range timedConfigs(true) {
			t.Run(tc.name+"/"+sc.Type, func(t *testing.T) {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) {
					e := newChangeEnv(t)
					cfg := []config.Scheduler{sc}
					old := e.change(main("before")) // before the scheduler existed: never built
					s := New(cfg, e.db, e.wake, nil)
					stop := runSet(t, s)
					time.Sleep(time.Hour + time.Minute)
					synctest.Wait()
					if diff := cmp.Diff([][]int64{nil}, e.buildsets()); diff != "" {
						t.Fatalf("baseline buildsets (-want +got):\n%s", diff)
					}
					cs := tc.crash(e, s, sc.Name)
					stop() // the master is killed: Run's stop writes nothing
					if tc.down != nil {
						cs = append(cs, tc.down(e)...)
					}

					for i := range 2 { // restart twice: the second finds nothing to do
						e.reopen()
						s = New(cfg, e.db, e.wake, nil)
						stop = runSet(t, s)
						time.Sleep(time.Hour)
						synctest.Wait()
						stop()
						want := append([][]int64{nil}, tc.want(cs)...)
						if diff := cmp.Diff(want, e.buildsets()); diff != "" {
							t.Errorf("buildsets after restart %d (-want +got):\n%s", i+1, diff)
						}
					}
					for _, ids := range e.buildsets() {
						for _, id := range ids {
							if id == old.ID {
								t.Errorf("change %d, stored before the scheduler existed, was built", old.ID)
							}
						}
					}
					v, _ := e.timedState(sc.Name)
					var st timedState
					if err := json.Unmarshal(v, &st); err != nil {
						t.Fatal(err)
					}
					top, _ := e.db.Changes(store.ChangeFilter{Desc: true, Limit: 1})
					if st.LastChange == nil || *st.LastChange != top[0].ID || len(st.Changes) != 0 {
						t.Errorf("state %s after the catch-up, want no change gathered and last_change %d", v, top[0].ID)
					}
				})
			})
		}
	}
}

// A timed scheduler killed while it builds for a time, after recording
// the time as Building, adds one buildset for that time after a restart:
// none more if the buildset was added before the crash, one at once if
// not; the next comes at the next time, as if the master had not died.
// With only_if_changed, the change it built is no reason for another. So
// for its very first build too (where one not added waits, as a first time
// missed while down does, for the next time).
func TestTimedCrashWhileBuilding(t *testing.T) {
	t.Parallel()
	for _, onlyIfChanged := range []bool{false, true} {
		for _, sc := range timedConfigs(onlyIfChanged) {
			for _, first := range []bool{false, true} {
				for _, added := range []bool{true, false} {
					if first && !added {
						continue
					}
					name := sc.Type
					if onlyIfChanged {
						name += "/only_if_changed"
					}
					if first {
						name += "/first"
					}
					if !added {
						name += "/not_added"
					}
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						synctest.Test(t, func(t *testing.T) {
							testCrashWhileBuilding(t, sc, onlyIfChanged, first, added)
						})
					})
				}
			}
		}
	}
}

func testCrashWhileBuilding(t *testing.T, sc config.Scheduler, onlyIfChanged, first, added bool) {
	e := newChangeEnv(t)
	cfg := []config.Scheduler{sc}
	firstAt := time.Hour // a nightly's first build is at the next hour
	if sc.Type == "periodic" {
		firstAt = 0 // a periodic's at once
	}
	s := New(cfg, e.db, e.wake, nil)
	before, _ := e.timedState(sc.Name)
	stop := runSet(t, s)
	builds, wait := 1, firstAt
	if !first {
		time.Sleep(firstAt)
		synctest.Wait()
		if onlyIfChanged {
			c := e.change(store.Change{Branch: "main"})
			s.AddChanges([]store.Change{c})
		}
		before, _ = e.timedState(sc.Name)
		builds, wait = 2, time.Hour
	}
	at := time.Now().Add(wait)
	if added {
		time.Sleep(wait)
		synctest.Wait()
		got := e.submitted()
		if len(got) != builds || !got[builds-1].Equal(at) {
			t.Fatalf("buildsets at %v before the crash, want %d, the last at %v", got, builds, at)
		}
	} else {
		time.Sleep(wait - time.Minute)
		synctest.Wait()
	}
	// The state as it was between recording the time and writing the
	// state after the buildset.
	e.crashBuilding(sc.Name, before, at)
	stop()
	if !added {
		time.Sleep(time.Minute) // down at the time
	}

	e.reopen()
	s = New(cfg, e.db, e.wake, nil)
	stop = runSet(t, s)
	defer func() { stop() }()
	synctest.Wait()
	got := e.submitted()
	if len(got) != builds || !got[builds-1].Equal(at) {
		t.Fatalf("buildsets at %v just after the restart, want %d, the last at %v", got, builds, at)
	}
	next := at.Add(time.Hour)
	time.Sleep(next.Sub(time.Now()))
	synctest.Wait()
	got = e.submitted()
	switch {
	case onlyIfChanged && len(got) != builds:
		t.Errorf("%d buildsets after the next time, want still %d: no change came", len(got), builds)
	case !onlyIfChanged && (len(got) != builds+1 || !got[builds].Equal(next)):
		t.Errorf("buildsets at %v, want %d, the last at %v", got, builds+1, next)
	}
	v, _ := e.timedState(sc.Name)
	var st timedState
	if err := json.Unmarshal(v, &st); err != nil {
		t.Fatalf("state %s: %v", v, err)
	}
	if !st.Building.IsZero() || len(st.Changes) != 0 {
		t.Errorf("state %s, want nothing building or gathered", v)
	}
}
