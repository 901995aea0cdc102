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
			if got := len(e.buildsets()); got != 2 {
				e.t.Fatalf("%d buildsets, want the baseline and c's", got)
			}
			// The state written after the buildset, lost with the master.
			if err := e.db.SetState(stateObject(name), timedKey, before); err != nil {
				e.t.Fatal(err)
			}
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
			if err := e.db.SetState(stateObject(name), timedKey, before); err != nil {
				e.t.Fatal(err)
			}
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

// A timed scheduler killed after adding a buildset, before recording the
// time, adds no second buildset for that time after a restart: the next
// comes at the next time, as if the master had not died; with
// only_if_changed, the change it built is no reason for another. So for
// its very first build too.
func TestTimedCrashAfterBuildset(t *testing.T) {
	t.Parallel()
	for _, onlyIfChanged := range []bool{false, true} {
		for _, sc := range timedConfigs(onlyIfChanged) {
			for _, first := range []bool{false, true} {
				name := sc.Type
				if onlyIfChanged {
					name += "/only_if_changed"
				}
				if first {
					name += "/first"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					synctest.Test(t, func(t *testing.T) {
						e := newChangeEnv(t)
						cfg := []config.Scheduler{sc}
						firstAt := time.Hour // a nightly's first build is at the next hour
						if sc.Type == "periodic" {
							firstAt = 0 // a periodic's at once
						}
						s := New(cfg, e.db, e.wake, nil)
						before, had := e.timedState(sc.Name)
						stop := runSet(t, s)
						builds, wait := 1, firstAt
						if !first {
							time.Sleep(firstAt)
							synctest.Wait()
							if onlyIfChanged {
								c := e.change(store.Change{Branch: "main"})
								s.AddChanges([]store.Change{c})
							}
							before, had = e.timedState(sc.Name)
							builds, wait = 2, time.Hour
						}
						time.Sleep(wait)
						synctest.Wait()
						got := e.submitted()
						if len(got) != builds {
							t.Fatalf("%d buildsets before the crash, want %d", len(got), builds)
						}
						last := got[len(got)-1]
						// The state written after the buildset, lost with the
						// master.
						if !had {
							before = json.RawMessage(`{}`)
						}
						if err := e.db.SetState(stateObject(sc.Name), timedKey, before); err != nil {
							t.Fatal(err)
						}
						stop()

						e.reopen()
						s = New(cfg, e.db, e.wake, nil)
						stop = runSet(t, s)
						defer func() { stop() }()
						synctest.Wait()
						if n := len(e.submitted()); n != builds {
							t.Fatalf("%d buildsets just after the restart, want still %d", n, builds)
						}
						next := last.Add(time.Hour)
						time.Sleep(next.Sub(time.Now()))
						synctest.Wait()
						got = e.submitted()
						switch {
						case onlyIfChanged && len(got) != builds:
							t.Errorf("%d buildsets after the next time, want still %d: no change came", len(got), builds)
						case !onlyIfChanged && (len(got) != builds+1 || !got[builds].Equal(next)):
							t.Errorf("buildsets at %v, want %d, the last at %v", got, builds+1, next)
						}
					})
				})
			}
		}
	}
}
