package build

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestRecoverRetakesLocks: Recover takes again, before anything else can,
// the locks of the builds left running that wait for their workers; when
// a reconfig made a lock stricter than what they held together, the ones
// that do not fit end RETRY. Giving a build up releases its locks.
func TestRecoverRetakesLocks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		maxCount, kept int
	}{{2, 2}, {1, 1}} {
		t.Run(fmt.Sprintf("max_count=%d", tc.maxCount), func(t *testing.T) {
			t.Parallel()
			db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := db.Check(); err != nil {
					t.Error(err)
				}
				db.Close()
			})
			bc := config.Builder{
				Name:  "b",
				Locks: []config.LockAccess{{Name: "db", Access: config.AccessCounting}},
				Steps: []config.Step{{Type: "shell", Name: "s", Command: config.Command{Script: "true"}}},
			}
			br, err := db.EnsureBuilder("b")
			if err != nil {
				t.Fatal(err)
			}
			var builds []int64
			for i := range 2 {
				_, brids, err := db.AddBuildset(store.NewBuildset{BuilderIDs: []int64{br.ID}})
				if err != nil {
					t.Fatal(err)
				}
				if err := db.ClaimBuildRequest(brids[br.ID], 1, time.Time{}); err != nil {
					t.Fatal(err)
				}
				bld, err := db.AddBuild(store.NewBuild{BuilderID: br.ID, BuildRequestID: brids[br.ID], MasterID: 1})
				if err != nil {
					t.Fatal(err)
				}
				st, err := db.AddStep(bld.ID, "s")
				if err != nil {
					t.Fatal(err)
				}
				l, err := db.AddLog(st.ID, "stdio", "s")
				if err != nil {
					t.Fatal(err)
				}
				err = db.SetResumePoint(store.ResumePoint{
					BuildID: bld.ID, MasterID: 1, Builder: "b", Worker: fmt.Sprintf("w%d", i+1),
					StepID: st.ID, LogID: l.ID, StepName: "s", ResumeKey: fmt.Sprintf("k%d", i+1),
				})
				if err != nil {
					t.Fatal(err)
				}
				builds = append(builds, bld.ID)
			}
			e := New(Config{
				Store: db, MasterID: 1, Builders: []config.Builder{bc},
				Locks:       []config.Lock{{Name: "db", Type: config.LockMaster, MaxCount: tc.maxCount}},
				FinishSteps: config.FinishSteps{OnRestart: true, Wait: time.Minute},
			})
			if err := e.Recover(); err != nil {
				t.Fatal(err)
			}
			var waiting []store.Build
			for _, id := range builds {
				b, err := db.Build(id)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case !b.Complete:
					waiting = append(waiting, b)
				case b.Results != store.Retry:
					t.Errorf("build %d given up with %s, want RETRY", id, ResultName(b.Results))
				}
			}
			if len(waiting) != tc.kept {
				t.Fatalf("%d builds wait for their workers, want %d", len(waiting), tc.kept)
			}
			done, cancel := context.WithCancelCause(context.Background())
			taken := errors.New("taken")
			cancel(taken)
			exclusive := []LockRequest{{Name: "db", Max: tc.maxCount}}
			if _, err := e.locks.Acquire(done, exclusive); !errors.Is(err, taken) {
				t.Fatalf("the lock is free after Recover (err %v), want it held by the waiting builds", err)
			}
			for _, b := range waiting {
				if !e.stopPending(b, "test") {
					t.Fatalf("build %d was not waiting", b.ID)
				}
			}
			release, err := e.locks.Acquire(done, exclusive)
			if err != nil {
				t.Fatalf("the lock once the waiting builds were stopped: %v, want free", err)
			}
			release()
		})
	}
}
