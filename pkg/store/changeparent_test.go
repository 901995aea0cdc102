package store

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// parentsOf returns the ParentChangeIDs of changes, by their revision.
func parentsOf(cs ...Change) map[string][]int64 {
	out := map[string][]int64{}
	for _, c := range cs {
		out[c.Revision] = c.ParentChangeIDs
	}
	return out
}

// TestChangeParents: a change's parent is the latest change stored before
// it with the same codebase, branch, repository and project, as
// buildbot's (db/changes.py getParentChangeIds); parent_changeids used to
// be always empty. It holds across AddChange, AddChanges (in order within
// the batch), AddChangesAndState and a reopen.
func TestChangeParents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openUnchecked(t, loc, Options{}) // closed below, then reopened
		src := func(rev, branch string) Change {
			return Change{Author: "a", Revision: rev, Branch: branch, Repository: "https://example.org/r.git", Project: "p", Codebase: "cb"}
		}
		a := must[Change](t)(db.AddChange(src("a", "main")))
		b := must[Change](t)(db.AddChange(src("b", "dev")))
		c := must[Change](t)(db.AddChange(src("c", "main")))
		other := src("d", "main")
		other.Repository = "https://example.org/fork.git"
		d := must[Change](t)(db.AddChange(other))
		other = src("e", "main")
		other.Codebase = ""
		e := must[Change](t)(db.AddChange(other))
		batch := must[[]Change](t)(db.AddChanges([]Change{src("f", "main"), src("g", "main"), src("h", "dev")}))
		withState := must[[]Change](t)(db.AddChangesAndState([]Change{src("i", "main")}, "poller", "k", json.RawMessage(`1`)))
		got := parentsOf(append([]Change{a, b, c, d, e}, append(batch, withState...)...)...)
		want := map[string][]int64{
			"a": nil, "b": nil, "c": {a.ID}, "d": nil, "e": nil,
			"f": {c.ID}, "g": {batch[0].ID}, "h": {b.ID}, "i": {batch[1].ID},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("parents (-want +got):\n%s", diff)
		}
		// As read back, and after a reopen.
		if p := must[Change](t)(db.Change(c.ID)).ParentChangeIDs; !cmp.Equal(p, []int64{a.ID}) {
			t.Errorf("change c read back: parents %v", p)
		}
		ok(t, db.Check())
		ok(t, db.Close())
		db = be.openAt(t, loc, Options{})
		j := must[Change](t)(db.AddChange(src("j", "main")))
		if !cmp.Equal(j.ParentChangeIDs, []int64{withState[0].ID}) {
			t.Errorf("after a reopen: parents %v, want [%d]", j.ParentChangeIDs, withState[0].ID)
		}
	})
}

// TestChangeParentsUpgrade: a store written before gbb kept parents (no
// index, no ParentChangeIDs) keeps its changes as they were (no parents,
// [] in the API), and a change added after the upgrade gets the latest of
// its source among them as parent.
//
// bbolt only: it upgrades a file of an older gbb (PostgreSQL has migrations).
func TestChangeParentsUpgrade(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	db := must[*DB](t)(Open(path, Options{})) // closed below, then reopened
	for _, rev := range []string{"a", "b"} {
		must[Change](t)(db.AddChange(Change{Author: "x", Revision: rev, Branch: "main"}))
	}
	must[Change](t)(db.AddChange(Change{Author: "x", Revision: "c", Branch: "dev"}))
	// Make it the store of an older gbb.
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte(bucketChangeLatest)); err != nil {
			return err
		}
		return bucket(tx, bucketChange).ForEach(func(k, v []byte) error {
			var raw map[string]any
			if err := json.Unmarshal(v, &raw); err != nil {
				return err
			}
			delete(raw, "ParentChangeIDs")
			data, _ := json.Marshal(raw)
			return bucket(tx, bucketChange).Put(k, data)
		})
	}))
	ok(t, db.Close())
	db = openBoltAt(t, path)
	if p := must[Change](t)(db.Change(2)).ParentChangeIDs; p != nil {
		t.Fatalf("an old change has parents %v", p)
	}
	d := must[Change](t)(db.AddChange(Change{Author: "x", Revision: "d", Branch: "main"}))
	e := must[Change](t)(db.AddChange(Change{Author: "x", Revision: "e", Branch: "dev"}))
	if diff := cmp.Diff(map[string][]int64{"d": {2}, "e": {3}}, parentsOf(d, e)); diff != "" {
		t.Errorf("parents after the upgrade (-want +got):\n%s", diff)
	}
}
