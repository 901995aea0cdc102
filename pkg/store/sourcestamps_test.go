package store

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A change's sourcestamp and the buildset made for it share one id, as
// buildbot's (its console and grid join builds to changes by it); other
// content gets another.
func TestSourceStampShared(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		b := must[Builder](t)(db.EnsureBuilder("b"))
		c := must[Change](t)(db.AddChange(Change{Codebase: "cb", Branch: "main", Revision: "r1", Repository: "https://example.org/r.git", Project: "p"}))
		same := SourceStamp{Codebase: "cb", Branch: "main", Revision: "r1", Repository: "https://example.org/r.git", Project: "p"}
		other := same
		other.Revision = "r2"
		bsid, _ := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{
			SourceStamps: []SourceStamp{same, other}, ChangeIDs: []int64{c.ID}, BuilderIDs: []int64{b.ID},
		}))
		bs := must[Buildset](t)(db.Buildset(bsid))
		if got := bs.SourceStamps[0].ID; got != c.SourceStampID {
			t.Errorf("buildset's sourcestamp %d, change's %d: want one id", got, c.SourceStampID)
		}
		if bs.SourceStamps[1].ID == c.SourceStampID {
			t.Errorf("another revision got the change's sourcestamp %d", c.SourceStampID)
		}
		if !bs.SourceStamps[0].CreatedAt.Equal(must[SourceStamp](t)(db.SourceStamp(c.SourceStampID)).CreatedAt) {
			t.Errorf("shared sourcestamp's created_at changed: %+v", bs.SourceStamps[0])
		}
		// Every field counts: a change of another project is another source.
		c2 := must[Change](t)(db.AddChange(Change{Codebase: "cb", Branch: "main", Revision: "r1", Repository: "https://example.org/r.git", Project: "q"}))
		if c2.SourceStampID == c.SourceStampID {
			t.Errorf("change of project q shares sourcestamp %d of project p", c.SourceStampID)
		}
		c3 := must[Change](t)(db.AddChange(Change{Codebase: "cb", Branch: "main", Revision: "r1", Repository: "https://example.org/r.git", Project: "p"}))
		if c3.SourceStampID != c.SourceStampID {
			t.Errorf("second change of the same source: sourcestamp %d, want %d", c3.SourceStampID, c.SourceStampID)
		}
	})
}

// A store written before sourcestamps were shared keeps its records and
// ids; on reopening, new sourcestamps of an old content reuse the oldest
// one's id.
//
// bbolt only: it upgrades a file of an older gbb (PostgreSQL has migrations).
func TestSourceStampSharedOldStore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, Options{})
	ok(t, err)
	b := must[Builder](t)(db.EnsureBuilder("b"))
	c := must[Change](t)(db.AddChange(Change{Branch: "main", Revision: "r1", Repository: "repo"}))
	// Make it as an older gbb left it: the buildset for the change got a
	// second sourcestamp of the same content, and there is no index.
	var oldBS int64
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{bucketSourceStampByHash, bucketSourceStampRefs} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		ss := SourceStamp{Branch: "main", Revision: "r1", Repository: "repo", CreatedAt: t0}
		var err error
		if ss.ID, err = nextID(tx, bucketSourceStamp); err != nil {
			return err
		}
		if err := put(tx, bucketSourceStamp, ss.ID, &ss); err != nil {
			return err
		}
		oldBS = ss.ID
		return nil
	}))
	ok(t, db.Close())

	db = openBoltAt(t, path)
	if got := must[Change](t)(db.Change(c.ID)).SourceStampID; got != c.SourceStampID {
		t.Errorf("old change's sourcestamp became %d, was %d", got, c.SourceStampID)
	}
	if ss := must[SourceStamp](t)(db.SourceStamp(oldBS)); ss.Revision != "r1" || ss.ID != oldBS {
		t.Errorf("old duplicate sourcestamp %d: %+v", oldBS, ss)
	}
	bsid, _ := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{
		SourceStamps: []SourceStamp{{Branch: "main", Revision: "r1", Repository: "repo"}}, ChangeIDs: []int64{c.ID}, BuilderIDs: []int64{b.ID},
	}))
	if got := must[Buildset](t)(db.Buildset(bsid)).SourceStamps[0].ID; got != c.SourceStampID {
		t.Errorf("new buildset of an old change's source: sourcestamp %d, want the oldest, %d", got, c.SourceStampID)
	}
	if got := must[Change](t)(db.AddChange(Change{Branch: "main", Revision: "r1", Repository: "repo"})).SourceStampID; got != c.SourceStampID {
		t.Errorf("new change of an old source: sourcestamp %d, want %d", got, c.SourceStampID)
	}
}

// The janitor deletes a buildset's sourcestamp only when nothing else
// names it: a change's, shared with its old buildset, stays; one that only
// the deleted buildset named goes, and its content gets a new one later.
func TestSourceStampSharedJanitor(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a := must[Builder](t)(db.EnsureBuilder("a"))
		old := t0.Add(-10 * 24 * time.Hour)
		x := SourceStamp{Branch: "main", Revision: "x", Repository: "repo"}
		y := SourceStamp{Branch: "main", Revision: "y", Repository: "repo"}
		c := must[Change](t)(db.AddChange(Change{Branch: "main", Revision: "x", Repository: "repo"}))
		build := func(ss SourceStamp, changes []int64, end time.Time) int64 {
			bsid, brids := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{
				SourceStamps: []SourceStamp{ss}, ChangeIDs: changes, BuilderIDs: []int64{a.ID}, SubmittedAt: end.Add(-time.Hour),
			}))
			b := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids[a.ID], StartedAt: end.Add(-time.Hour)}))
			ok(t, db.FinishBuild(b.ID, Success, end))
			ok(t, db.CompleteBuildRequest(brids[a.ID], Success, end))
			return bsid
		}
		bsX := build(x, []int64{c.ID}, old)
		bsY := build(y, nil, old)
		ssY := must[Buildset](t)(db.Buildset(bsY)).SourceStamps[0].ID
		build(SourceStamp{Branch: "main", Revision: "z", Repository: "repo"}, nil, t0) // the newest build stays

		if n, err := db.DeleteBuildsBefore(t0.Add(-24 * time.Hour)); err != nil || n != 2 {
			t.Fatalf("DeleteBuildsBefore = %d, %v; want 2", n, err)
		}
		for _, id := range []int64{bsX, bsY} {
			if _, err := db.Buildset(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("buildset %d: %v, want it deleted", id, err)
			}
		}
		if _, err := db.SourceStamp(c.SourceStampID); err != nil {
			t.Errorf("the change's sourcestamp went with its buildset: %v", err)
		}
		if _, err := db.SourceStamp(ssY); !errors.Is(err, ErrNotFound) {
			t.Errorf("sourcestamp %d that only a deleted buildset named: %v, want deleted", ssY, err)
		}
		ok(t, db.Check())
		if bss, err := db.BuildsetsOfSourceStamp(c.SourceStampID); err != nil || len(bss) != 0 {
			t.Errorf("buildsets of the change's sourcestamp after the janitor: %v, %v; want none", bss, err)
		}
		if got := must[Change](t)(db.AddChange(Change{Branch: "main", Revision: "x", Repository: "repo"})).SourceStampID; got != c.SourceStampID {
			t.Errorf("a new change of x: sourcestamp %d, want %d", got, c.SourceStampID)
		}
		bsid, _ := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{SourceStamps: []SourceStamp{y}, BuilderIDs: []int64{a.ID}}))
		again := must[Buildset](t)(db.Buildset(bsid)).SourceStamps[0]
		if again.ID == ssY || must[SourceStamp](t)(db.SourceStamp(again.ID)).Revision != "y" {
			t.Errorf("y again: sourcestamp %+v, want a new one", again)
		}
	})
}

// The buildsets of a sourcestamp (a change's builds): every buildset
// naming it, by id, also after a reopen; on bbolt they come from an index,
// which reopening a store made before it fills.
func TestBuildsetsOfSourceStamp(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openUnchecked(t, loc, Options{}) // closed below, then reopened
		b := must[Builder](t)(db.EnsureBuilder("b"))
		c := must[Change](t)(db.AddChange(Change{Branch: "main", Revision: "r1", Repository: "repo"}))
		same := SourceStamp{Branch: "main", Revision: "r1", Repository: "repo"}
		other := SourceStamp{Branch: "main", Revision: "r2", Repository: "repo"}
		add := func(sss ...SourceStamp) int64 {
			bsid, _ := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{SourceStamps: sss, BuilderIDs: []int64{b.ID}}))
			return bsid
		}
		bs1, bs2, bs3 := add(same), add(other, same), add(other)
		ssOther := must[Buildset](t)(db.Buildset(bs3)).SourceStamps[0].ID
		want := map[int64][]int64{c.SourceStampID: {bs1, bs2}, ssOther: {bs2, bs3}, 999: nil}
		checkAll := func(when string) {
			t.Helper()
			for ssid, ids := range want {
				bss, err := db.BuildsetsOfSourceStamp(ssid)
				ok(t, err)
				var got []int64
				for _, bs := range bss {
					got = append(got, bs.ID)
				}
				if !slices.Equal(got, ids) {
					t.Errorf("%s: buildsets of sourcestamp %d: %v, want %v", when, ssid, got, ids)
				}
			}
		}
		checkAll("new store")
		if bdb, isBolt := db.(*DB); isBolt { // bbolt's index is a bucket, which a store made before it lacks
			ok(t, bdb.bolt.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(bucketBuildsetBySourceStamp)) }))
		}
		ok(t, db.Close())
		db = be.openAt(t, loc, Options{})
		checkAll("reopened (on bbolt, a store made before the index)")
	})
}
