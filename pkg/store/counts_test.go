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

// CountBuilds answers from the counts as a walk of the indexes would,
// through adds, the janitor's deletions and a reopen that rebuilds them.
func TestBuildCounts(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, Options{})
	ok(t, err)
	a, b, _ := setup(t, db)
	for i := range 9 {
		builder, end := a.ID, t0.Add(time.Duration(i)*time.Hour)
		if i%3 == 0 {
			builder = b.ID
		}
		if i == 4 || i == 6 {
			end = time.Time{} // running
		}
		finishedBuild(t, db, builder, end, 1)
	}
	check := func(db *DB) {
		t.Helper()
		err := db.bolt.View(func(tx *bolt.Tx) error {
			for _, builder := range []int64{0, a.ID, b.ID} {
				for _, complete := range []*bool{nil, ptr(false), ptr(true)} {
					f := BuildFilter{BuilderID: builder, Complete: complete}
					n, fast := countBuildsFast(tx, f)
					if !fast {
						t.Errorf("%+v: not answered from the counts", f)
					}
					walked := 0
					eachBuildID(tx, f, func(int64) bool { walked++; return true })
					if n != walked {
						t.Errorf("%+v: count %d, walk %d", f, n, walked)
					}
				}
			}
			return nil
		})
		ok(t, err)
		ok(t, db.Check())
	}
	check(db)
	// The janitor deletes builds ended before t0+5h (keeping each
	// builder's newest).
	n := must[int](t)(db.DeleteBuildsBefore(t0.Add(5 * time.Hour)))
	if n == 0 {
		t.Fatal("the janitor deleted nothing: the test checks nothing")
	}
	check(db)
	// A store made before the counts: Open counts.
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(bucketBuildCount)) }))
	ok(t, db.Close())
	db = openAt(t, path)
	check(db)
	// Check finds a wrong count.
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return countBuild(tx, a.ID, 1) }))
	if err := db.Check(); err == nil {
		t.Error("Check passed with a wrong build count")
	}
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return countBuild(tx, a.ID, -1) }))
}

// BuildsetPage and CountBuildsets answer as filtering every buildset
// would, through the janitor's deletions.
func TestBuildsetPage(t *testing.T) {
	t.Parallel()
	db := openTest(t)
	a, _, _ := setup(t, db)
	for i := range 12 {
		_, brids, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}, SubmittedAt: t0})
		ok(t, err)
		if i%3 != 0 {
			ok(t, db.CompleteBuildRequest(brids[a.ID], Cancelled, t0.Add(time.Duration(i)*time.Minute)))
		}
	}
	compare := func(when string) {
		t.Helper()
		all := must[[]Buildset](t)(db.Buildsets(nil))
		for _, complete := range []*bool{nil, ptr(false), ptr(true)} {
			var want []int64
			for _, bs := range all {
				if complete == nil || bs.Complete == *complete {
					want = append(want, bs.ID)
				}
			}
			f := BuildsetFilter{Complete: complete}
			if n := must[int](t)(db.CountBuildsets(f)); n != len(want) {
				t.Errorf("%s: count %+v: %d, want %d", when, f, n, len(want))
			}
			for _, page := range []struct {
				desc     bool
				off, lim int
			}{{false, 0, 0}, {true, 0, 0}, {false, 1, 3}, {true, 2, 2}} {
				f.Desc, f.Offset, f.Limit = page.desc, page.off, page.lim
				w := slices.Clone(want)
				if page.desc {
					slices.Reverse(w)
				}
				w = w[min(page.off, len(w)):]
				if page.lim > 0 {
					w = w[:min(page.lim, len(w))]
				}
				var got []int64
				for _, bs := range must[[]Buildset](t)(db.BuildsetPage(f)) {
					got = append(got, bs.ID)
				}
				if diff := cmp.Diff(w, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("%s: %+v (-want +got):\n%s", when, f, diff)
				}
			}
		}
	}
	compare("before the janitor")
	// Cancelled requests without builds age out with their buildsets.
	must[int](t)(db.DeleteBuildsBefore(t0.Add(5 * time.Minute)))
	if n := len(must[[]Buildset](t)(db.Buildsets(nil))); n == 12 {
		t.Fatal("the janitor deleted no buildset: the test checks nothing")
	}
	compare("after the janitor")
}
