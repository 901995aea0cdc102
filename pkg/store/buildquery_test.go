package store

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestBuildsPaged checks Builds with Desc, Offset and Limit, and
// CountBuilds, against filtering (Before included), ordering and slicing every build in
// memory, for each filter.
func TestBuildsPaged(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, b, m := setup(t, db)
		w1 := must[Worker](t)(db.EnsureWorker("w1"))
		w2 := must[Worker](t)(db.EnsureWorker("w2"))
		_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}})
		ok(t, err)
		for i := range 23 {
			nb := NewBuild{BuilderID: a.ID, WorkerID: w1.ID, MasterID: m.ID}
			if i%3 == 0 {
				nb.BuilderID, nb.WorkerID = b.ID, w2.ID
			}
			if i%4 == 0 {
				nb.BuildRequestID = brids[nb.BuilderID]
			}
			bd := must[Build](t)(db.AddBuild(nb))
			if i%5 != 2 {
				ok(t, db.FinishBuild(bd.ID, Success, t0))
			}
		}
		all := must[[]Build](t)(db.Builds(BuildFilter{}))
		if len(all) != 23 {
			t.Fatalf("%d builds, want 23", len(all))
		}
		matches := func(f BuildFilter, bd Build) bool {
			return (f.BuilderID == 0 || bd.BuilderID == f.BuilderID) &&
				(f.BuildRequestID == 0 || bd.BuildRequestID == f.BuildRequestID) &&
				(f.WorkerID == 0 || bd.WorkerID == f.WorkerID) &&
				(f.Complete == nil || bd.Complete == *f.Complete) &&
				(f.Before == 0 || bd.ID < f.Before)
		}
		var filters []BuildFilter
		for _, builder := range []int64{0, a.ID, b.ID, 99} {
			for _, req := range []int64{0, brids[a.ID], brids[b.ID]} {
				for _, wk := range []int64{0, w1.ID, w2.ID} {
					for _, complete := range []*bool{nil, ptr(true), ptr(false)} {
						for _, before := range []int64{0, 1, 9, all[22].ID, all[22].ID + 1, 99} {
							filters = append(filters, BuildFilter{BuilderID: builder, BuildRequestID: req, WorkerID: wk, Complete: complete, Before: before})
						}
					}
				}
			}
		}
		for _, f := range filters {
			var want []Build
			for _, bd := range all {
				if matches(f, bd) {
					want = append(want, bd)
				}
			}
			name := fmt.Sprintf("builder %d request %d worker %d before %d", f.BuilderID, f.BuildRequestID, f.WorkerID, f.Before)
			if f.Complete != nil {
				name += fmt.Sprint(" complete ", *f.Complete)
			}
			if n := must[int](t)(db.CountBuilds(f)); n != len(want) {
				t.Errorf("CountBuilds(%s) = %d, want %d", name, n, len(want))
			}
			for _, desc := range []bool{false, true} {
				ordered := slices.Clone(want)
				if desc {
					slices.Reverse(ordered)
				}
				for _, page := range [][2]int{{0, 0}, {0, 1}, {0, 5}, {3, 5}, {5, 0}, {20, 10}, {30, 1}} {
					f.Desc, f.Offset, f.Limit = desc, page[0], page[1]
					exp := ordered[min(f.Offset, len(ordered)):]
					if f.Limit > 0 && f.Limit < len(exp) {
						exp = exp[:f.Limit]
					}
					got := must[[]Build](t)(db.Builds(f))
					if diff := cmp.Diff(exp, got, cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("Builds(%s, desc %v, offset %d, limit %d) (-want +got):\n%s", name, desc, f.Offset, f.Limit, diff)
					}
				}
			}
		}
	})
}
