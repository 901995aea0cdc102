package store

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	bolt "go.etcd.io/bbolt"
)

func ids(brs []BuildRequest) []int64 {
	out := make([]int64, len(brs))
	for i, br := range brs {
		out[i] = br.ID
	}
	return out
}

func TestPendingBuildRequests(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, b, m := setup(t, db)
		add := func(prio int, at time.Time, builders ...int64) map[int64]int64 {
			t.Helper()
			_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: builders, Priority: prio, SubmittedAt: at})
			ok(t, err)
			return brids
		}
		r1 := add(0, t0, a.ID, b.ID)             // a:1 b:2
		r2 := add(5, t0.Add(time.Second), a.ID)  // a:3, higher priority
		r3 := add(-1, t0.Add(-time.Hour), a.ID)  // a:4, lowest priority, oldest
		r4 := add(0, t0.Add(-time.Second), a.ID) // a:5, same priority as 1, older
		r5 := add(0, t0, a.ID)                   // a:6, ties with 1: lower id first
		r6 := add(5, t0.Add(-time.Minute), b.ID) // b:7
		pending := func(limits map[int64]int) []int64 {
			t.Helper()
			return ids(must[[]BuildRequest](t)(db.PendingBuildRequests(limits)))
		}
		all := []int64{r6[b.ID], r2[a.ID], r4[a.ID], r1[a.ID], r1[b.ID], r5[a.ID], r3[a.ID]}
		for _, tc := range []struct {
			name   string
			limits map[int64]int
			want   []int64
		}{
			{"both builders, all", map[int64]int{a.ID: 0, b.ID: 0}, all},
			{"a only", map[int64]int{a.ID: 0}, []int64{r2[a.ID], r4[a.ID], r1[a.ID], r5[a.ID], r3[a.ID]}},
			{"a, first two", map[int64]int{a.ID: 2}, []int64{r2[a.ID], r4[a.ID]}},
			{"a first, b all", map[int64]int{a.ID: 1, b.ID: -1}, []int64{r6[b.ID], r2[a.ID], r1[b.ID]}},
			{"unknown builder", map[int64]int{99: 0}, []int64{}},
			{"none", nil, []int64{}},
		} {
			if diff := cmp.Diff(tc.want, pending(tc.limits)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.name, diff)
			}
		}

		// Claimed and complete requests leave it; unclaimed ones come back.
		ok(t, db.ClaimBuildRequest(r2[a.ID], m.ID, t0))
		ok(t, db.CompleteBuildRequest(r4[a.ID], Cancelled, t0)) // never claimed
		ok(t, db.ClaimBuildRequest(r1[b.ID], m.ID, t0))
		ok(t, db.ClaimBuildRequest(r6[b.ID], m.ID, t0))
		ok(t, db.CompleteBuildRequest(r6[b.ID], Success, t0))
		ok(t, db.Check())
		want := []int64{r1[a.ID], r5[a.ID], r3[a.ID]}
		if diff := cmp.Diff(want, pending(map[int64]int{a.ID: 0, b.ID: 0})); diff != "" {
			t.Errorf("after claims (-want +got):\n%s", diff)
		}
		ok(t, db.UnclaimBuildRequest(r2[a.ID]))
		ok(t, db.UnclaimBuildRequest(r6[b.ID])) // complete: stays out
		want = []int64{r2[a.ID], r1[a.ID], r5[a.ID], r3[a.ID]}
		if diff := cmp.Diff(want, pending(map[int64]int{a.ID: 0, b.ID: 0})); diff != "" {
			t.Errorf("after unclaim (-want +got):\n%s", diff)
		}
		// A master's abandoned claims come back too.
		ended := must[[]int64](t)(db.AbandonBuilds(m.ID, t0))
		if len(ended) != 0 {
			t.Errorf("abandoned builds %v", ended)
		}
		want = []int64{r2[a.ID], r1[a.ID], r1[b.ID], r5[a.ID], r3[a.ID]}
		if diff := cmp.Diff(want, pending(map[int64]int{a.ID: 0, b.ID: 0})); diff != "" {
			t.Errorf("after abandon (-want +got):\n%s", diff)
		}
		// BuildRequests' unclaimed, incomplete filter reads the same index (by id).
		f := false
		got := ids(must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{Claimed: &f, Complete: &f})))
		if diff := cmp.Diff([]int64{r1[a.ID], r1[b.ID], r2[a.ID], r3[a.ID], r5[a.ID]}, got); diff != "" {
			t.Errorf("BuildRequests(unclaimed, incomplete) (-want +got):\n%s", diff)
		}
	})
}

// TestPendingIndexBuiltOnOpen opens a store made before the pending index
// existed (the index bucket removed): Open builds it from the requests.
//
// bbolt only: it upgrades a file of an older gbb (PostgreSQL has migrations).
func TestPendingIndexBuiltOnOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, Options{})
	ok(t, err)
	a, _, m := setup(t, db)
	var brids []int64
	for range 4 {
		_, r, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}})
		ok(t, err)
		brids = append(brids, r[a.ID])
	}
	ok(t, db.ClaimBuildRequest(brids[1], m.ID, t0))
	ok(t, db.CompleteBuildRequest(brids[2], Cancelled, t0))
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte(bucketRequestClaimed)); err != nil {
			return err
		}
		return tx.DeleteBucket([]byte(bucketRequestPending))
	}))
	ok(t, db.Close())

	db = openBoltAt(t, path) // its cleanup checks the index
	got := ids(must[[]BuildRequest](t)(db.PendingBuildRequests(map[int64]int{a.ID: 0})))
	if diff := cmp.Diff([]int64{brids[0], brids[3]}, got); diff != "" {
		t.Errorf("pending after reopen (-want +got):\n%s", diff)
	}
}

// TestCheckPending shows that Check finds a pending index out of step.
//
// bbolt only: it breaks bbolt's index buckets by hand to see Check find it.
func TestCheckPending(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, Options{})
	ok(t, err)
	defer db.Close()
	a, _, m := setup(t, db)
	_, r, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}})
	ok(t, err)
	br := must[BuildRequest](t)(db.BuildRequest(r[a.ID]))
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return bucket(tx, bucketRequestPending).Delete(pendingKey(&br)) }))
	if err := db.Check(); err == nil {
		t.Error("Check passed with a pending request missing from the index")
	}
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return bucket(tx, bucketRequestPending).Put(pendingKey(&br), nil) }))
	ok(t, db.Check())
	ok(t, db.ClaimBuildRequest(br.ID, m.ID, t0))
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return bucket(tx, bucketRequestClaimed).Delete(itob(br.ID)) }))
	if err := db.Check(); err == nil {
		t.Error("Check passed with a claimed request missing from the claimed index")
	}
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return bucket(tx, bucketRequestClaimed).Put(itob(br.ID), itob(m.ID)) }))
	ok(t, db.Check())
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return bucket(tx, bucketRequestPending).Put(pendingKey(&br), nil) }))
	if err := db.Check(); err == nil {
		t.Error("Check passed with a claimed request in the pending index")
	}
}

// BuildRequests and CountBuildRequests answer every combination of filters,
// order and page as filtering all the requests would.
func TestBuildRequestsPaged(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, b, m := setup(t, db)
		for i := range 30 {
			builders := []int64{a.ID}
			if i%3 == 0 {
				builders = append(builders, b.ID)
			}
			_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: builders})
			ok(t, err)
			for _, id := range brids {
				switch i % 4 {
				case 1:
					ok(t, db.ClaimBuildRequest(id, m.ID, t0))
				case 2:
					ok(t, db.ClaimBuildRequest(id, m.ID, t0))
					ok(t, db.CompleteBuildRequest(id, Success, t0))
				case 3:
					ok(t, db.CompleteBuildRequest(id, Cancelled, t0))
				}
			}
		}
		all := must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{}))
		if len(all) != 40 {
			t.Fatalf("%d requests, want 40", len(all))
		}
		bools := []*bool{nil, ptr(false), ptr(true)}
		for _, builder := range []int64{0, a.ID, b.ID} {
			for _, bsid := range []int64{0, 4, 5} {
				for _, claimed := range bools {
					for _, complete := range bools {
						f := BuildRequestFilter{BuilderID: builder, BuildsetID: bsid, Claimed: claimed, Complete: complete}
						var want []int64
						for _, br := range all {
							if (builder == 0 || br.BuilderID == builder) && (bsid == 0 || br.BuildsetID == bsid) &&
								(claimed == nil || br.Claimed == *claimed) && (complete == nil || br.Complete == *complete) {
								want = append(want, br.ID)
							}
						}
						if n := must[int](t)(db.CountBuildRequests(f)); n != len(want) {
							t.Errorf("count %+v: %d, want %d", f, n, len(want))
						}
						for _, page := range []struct {
							desc     bool
							off, lim int
						}{{false, 0, 0}, {true, 0, 0}, {false, 2, 3}, {true, 1, 4}} {
							f.Desc, f.Offset, f.Limit = page.desc, page.off, page.lim
							w := slices.Clone(want)
							if page.desc {
								slices.Reverse(w)
							}
							w = w[min(page.off, len(w)):]
							if page.lim > 0 {
								w = w[:min(page.lim, len(w))]
							}
							got := ids(must[[]BuildRequest](t)(db.BuildRequests(f)))
							if diff := cmp.Diff(w, got, cmpopts.EquateEmpty()); diff != "" {
								t.Errorf("%+v (-want +got):\n%s", f, diff)
							}
						}
					}
				}
			}
		}
	})
}
