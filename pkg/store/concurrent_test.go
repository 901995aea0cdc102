package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		const (
			writers   = 8
			builds    = 5
			steps     = 3
			batches   = 4
			batchSize = 10
		)
		builders := []string{"x", "y"}
		var wg sync.WaitGroup
		for g := range writers {
			wg.Go(func() {
				if err := writeBuilds(db, g, builders[g%len(builders)], builds, steps, batches, batchSize); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()

		for _, name := range builders {
			b := must[Builder](t)(db.BuilderByName(name))
			bs := must[[]Build](t)(db.Builds(BuildFilter{BuilderID: b.ID}))
			var numbers []int64
			var want []int64
			for i, build := range bs {
				numbers = append(numbers, build.Number)
				want = append(want, int64(i+1))
			}
			// Numbers are 1..n with no gap or repeat.
			if diff := cmp.Diff(want, numbers); diff != "" {
				t.Errorf("numbers of builder %s (-want +got):\n%s", name, diff)
			}
		}
		all := must[[]Build](t)(db.Builds(BuildFilter{}))
		if len(all) != writers*builds {
			t.Fatalf("%d builds, want %d", len(all), writers*builds)
		}
		for _, build := range all {
			ss := must[[]Step](t)(db.Steps(build.ID))
			if len(ss) != steps {
				t.Fatalf("build %d: %d steps, want %d", build.ID, len(ss), steps)
			}
			for _, s := range ss {
				for _, l := range must[[]Log](t)(db.Logs(s.ID)) {
					if l.NumLines != batches*batchSize {
						t.Errorf("log %d: %d lines, want %d", l.ID, l.NumLines, batches*batchSize)
					}
				}
			}
		}
		if n := len(must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{Complete: ptr(true)}))); n != writers*builds {
			t.Errorf("%d complete requests, want %d", n, writers*builds)
		}
		if n := len(must[[]Buildset](t)(db.Buildsets(ptr(true)))); n != writers*builds {
			t.Errorf("%d complete buildsets, want %d", n, writers*builds)
		}
		ok(t, db.Check())
	})
}

// writeBuilds runs builds as one master would.
func writeBuilds(db Store, g int, builderName string, builds, steps, batches, batchSize int) error {
	m, err := db.EnsureMaster(fmt.Sprintf("m%d", g))
	if err != nil {
		return err
	}
	builder, err := db.EnsureBuilder(builderName)
	if err != nil {
		return err
	}
	for range builds {
		_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{builder.ID}})
		if err != nil {
			return err
		}
		brid := brids[builder.ID]
		if err := db.ClaimBuildRequest(brid, m.ID, t0); err != nil {
			return err
		}
		build, err := db.AddBuild(NewBuild{BuilderID: builder.ID, BuildRequestID: brid, MasterID: m.ID})
		if err != nil {
			return err
		}
		for s := range steps {
			step, err := db.AddStep(build.ID, "step")
			if err != nil {
				return err
			}
			if step.Number != s {
				return fmt.Errorf("step number %d, want %d", step.Number, s)
			}
			lg, err := db.AddLog(step.ID, "stdio", "s")
			if err != nil {
				return err
			}
			for i := range batches {
				batch := strings.Repeat(fmt.Sprintf("o%d %d\n", g, i), batchSize)
				if _, err := db.AppendLog(lg.ID, batch); err != nil {
					return err
				}
			}
			if err := db.FinishLog(lg.ID); err != nil {
				return err
			}
			if err := db.FinishStep(step.ID, Success, t0); err != nil {
				return err
			}
		}
		if err := db.FinishBuild(build.ID, Success, t0); err != nil {
			return err
		}
		if err := db.CompleteBuildRequest(brid, Success, t0); err != nil {
			return err
		}
	}
	return nil
}

func TestConcurrentClaim(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		b := must[Builder](t)(db.EnsureBuilder("a"))
		_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}})
		ok(t, err)
		var won, lost atomic.Int32
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				err := db.ClaimBuildRequest(brids[b.ID], int64(g+1), t0)
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, ErrClaimed):
					lost.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 || lost.Load() != 7 {
			t.Errorf("claims: %d won, %d lost; want 1 and 7", won.Load(), lost.Load())
		}
	})
}
