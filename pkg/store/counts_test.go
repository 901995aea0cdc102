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
//
// bbolt only: the counts are bbolt's buckets, compared with walks of its
// indexes (CountBuilds on both backends: TestBuildsPaged).
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
	db = openBoltAt(t, path)
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
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
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
	})
}

// CountBuildRequests and CountBuildsets answer as a walk of the requests
// would, through adds, claims, completions, the janitor's deletions and a
// reopen. On bbolt they answer from its counts, not a bucket's every page
// (bbolt's Stats did), and the reopen rebuilds the counts of an older
// store.
func TestBuildRequestCounts(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openUnchecked(t, loc, Options{}) // closed below, then reopened
		a, b, m := setup(t, db)
		for i := range 12 {
			end := t0.Add(time.Duration(i) * time.Hour)
			switch i % 4 {
			case 0: // a build and its request, complete
				finishedBuild(t, db, a.ID, end, 1)
			case 1: // a request for both builders, one claimed
				_, brids := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}, SubmittedAt: end}))
				ok(t, db.ClaimBuildRequest(brids[b.ID], m.ID, end))
			case 2: // cancelled without a build
				_, brids := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}, SubmittedAt: end}))
				ok(t, db.CompleteBuildRequest(brids[b.ID], Cancelled, end))
			case 3: // pending
				must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}, SubmittedAt: end}))
			}
		}
		check := func(when string, db Store) {
			t.Helper()
			all := must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{}))
			for _, builder := range []int64{0, a.ID, b.ID} {
				for _, complete := range []*bool{nil, ptr(false), ptr(true)} {
					want := 0
					for _, br := range all {
						if (builder == 0 || br.BuilderID == builder) && (complete == nil || br.Complete == *complete) {
							want++
						}
					}
					f := BuildRequestFilter{BuilderID: builder, Complete: complete}
					if n := must[int](t)(db.CountBuildRequests(f)); n != want {
						t.Errorf("%s: count %+v: %d, want %d", when, f, n, want)
					}
					if n := len(must[[]BuildRequest](t)(db.BuildRequests(f))); n != want {
						t.Errorf("%s: list %+v: %d, want %d", when, f, n, want)
					}
				}
			}
			ok(t, db.Check())
		}
		check("added", db)
		n := must[int](t)(db.DeleteBuildsBefore(t0.Add(7 * time.Hour)))
		before := len(must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{})))
		if n == 0 || before == 12+3 {
			t.Fatalf("the janitor deleted %d builds and left %d requests: the test checks nothing", n, before)
		}
		check("after the janitor", db)

		// bbolt keeps counts in its own buckets (PostgreSQL counts rows):
		// they must be read, not walked, and an older file's must be made
		// at Open.
		if bdb, isBolt := db.(*DB); isBolt {
			// The counts are read, not walked: a count made wrong on purpose shows
			// through (a walk of the buckets would give the true number), and
			// Check finds it.
			for _, k := range [][]byte{countRequests, countRequestsIncomplete, requestCountKey(a.ID), countBuildsetsIncomplete} {
				ok(t, bdb.bolt.Update(func(tx *bolt.Tx) error { return addCount(tx, k, 1000) }))
			}
			for _, c := range []struct {
				name string
				got  func() (int, error)
			}{
				{"all requests", func() (int, error) { return db.CountBuildRequests(BuildRequestFilter{}) }},
				{"incomplete requests", func() (int, error) { return db.CountBuildRequests(BuildRequestFilter{Complete: ptr(false)}) }},
				{"a's requests", func() (int, error) { return db.CountBuildRequests(BuildRequestFilter{BuilderID: a.ID}) }},
				{"a's complete requests", func() (int, error) {
					return db.CountBuildRequests(BuildRequestFilter{BuilderID: a.ID, Complete: ptr(true)})
				}},
				{"incomplete buildsets", func() (int, error) { return db.CountBuildsets(BuildsetFilter{Complete: ptr(false)}) }},
			} {
				if n := must[int](t)(c.got()); n < 1000 {
					t.Errorf("%s: %d: not read from the counts", c.name, n)
				}
			}
			if err := db.Check(); err == nil {
				t.Error("Check passed with wrong request counts")
			}
			for _, k := range [][]byte{countRequests, countRequestsIncomplete, requestCountKey(a.ID), countBuildsetsIncomplete} {
				ok(t, bdb.bolt.Update(func(tx *bolt.Tx) error { return addCount(tx, k, -1000) }))
			}
			check("restored", db)

			// A store made before the request counts (its build_count holds
			// builds and buildsets only): Open counts the requests.
			ok(t, bdb.bolt.Update(func(tx *bolt.Tx) error {
				counts := tx.Bucket([]byte(bucketBuildCount))
				for _, k := range [][]byte{countRequests, countRequestsIncomplete, requestCountKey(a.ID), requestCountKey(b.ID), countBuildsetsIncomplete} {
					if err := counts.Delete(k); err != nil {
						return err
					}
				}
				return nil
			}))
		}
		ok(t, db.Close())
		db = be.openAt(t, loc, Options{})
		check("reopened", db)
		// And it keeps counting.
		_, brids := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}, SubmittedAt: t0}))
		ok(t, db.ClaimBuildRequest(brids[a.ID], m.ID, t0))
		ok(t, db.CompleteBuildRequest(brids[a.ID], Success, t0))
		check("after the reopen", db)
	})
}
