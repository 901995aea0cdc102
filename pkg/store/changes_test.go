package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	bolt "go.etcd.io/bbolt"
)

func TestAddChange(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		in := Change{
			Author:     "A U Thor <author@example.org>",
			Committer:  "C O Mitter <committer@example.org>",
			Comments:   "fix the thing\n\nat last",
			Branch:     "main",
			Revision:   "0123456789abcdef0123456789abcdef01234567",
			Repository: "https://example.org/r.git",
			Project:    "p",
			Codebase:   "cb",
			Category:   "cat",
			RevLink:    "https://example.org/r/commit/0123456789abcdef0123456789abcdef01234567",
			When:       t0,
			Files:      []string{"a.go", "dir/b.go"},
			Properties: Properties{"event": {Value: json.RawMessage(`"push"`), Source: "git"}},
		}
		got := must[Change](t)(db.AddChange(in))
		want := in
		want.ID, want.SourceStampID = 1, 1
		want.Files = []string{"a.go", "dir/b.go"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("AddChange (-want +got):\n%s", diff)
		}
		in.Files[0] = "changed" // the store must not keep the caller's slice
		if diff := cmp.Diff(want, must[Change](t)(db.Change(1))); diff != "" {
			t.Errorf("Change(1) (-want +got):\n%s", diff)
		}
		ss := must[SourceStamp](t)(db.SourceStamp(got.SourceStampID))
		wantSS := SourceStamp{ID: 1, Codebase: "cb", Branch: "main", Revision: in.Revision, Repository: in.Repository, Project: "p"}
		if diff := cmp.Diff(wantSS, ss, cmpopts.IgnoreFields(SourceStamp{}, "CreatedAt")); diff != "" || ss.CreatedAt.IsZero() {
			t.Errorf("sourcestamp (-want +got):\n%s (created %v)", diff, ss.CreatedAt)
		}

		// A zero When means now; a second change gets the next ids.
		second := must[Change](t)(db.AddChange(Change{Revision: "r2"}))
		if second.ID != 2 || second.SourceStampID != 2 || second.When.IsZero() {
			t.Errorf("second change: %+v", second)
		}
		if _, err := db.Change(3); !errors.Is(err, ErrNotFound) {
			t.Errorf("Change(3): %v, want ErrNotFound", err)
		}
	})
}

func TestChangesFilter(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		for i, c := range []Change{
			{Branch: "main", Repository: "r1", Project: "p"},
			{Branch: "dev", Repository: "r1", Project: "p"},
			{Branch: "main", Repository: "r2", Project: "q"},
			{Branch: "main", Repository: "r1", Project: "q"},
		} {
			c.Revision = fmt.Sprint("rev", i+1)
			c.When = t0
			must[Change](t)(db.AddChange(c))
		}
		tests := []struct {
			name string
			f    ChangeFilter
			want []int64
		}{
			{"all", ChangeFilter{}, []int64{1, 2, 3, 4}},
			{"desc", ChangeFilter{Desc: true}, []int64{4, 3, 2, 1}},
			{"limit", ChangeFilter{Limit: 2}, []int64{1, 2}},
			{"last two", ChangeFilter{Limit: 2, Desc: true}, []int64{4, 3}},
			{"branch", ChangeFilter{Branch: "main"}, []int64{1, 3, 4}},
			{"repository", ChangeFilter{Repository: "r1"}, []int64{1, 2, 4}},
			{"project", ChangeFilter{Project: "q"}, []int64{3, 4}},
			{"all three", ChangeFilter{Branch: "main", Repository: "r1", Project: "q"}, []int64{4}},
			{"branch limit desc", ChangeFilter{Branch: "main", Limit: 1, Desc: true}, []int64{4}},
			{"none", ChangeFilter{Branch: "gone"}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				var got []int64
				for _, c := range must[[]Change](t)(db.Changes(tc.f)) {
					got = append(got, c.ID)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("Changes(%+v) (-want +got):\n%s", tc.f, diff)
				}
			})
		}
	})
}

func TestState(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openUnchecked(t, loc, Options{}) // closed below, then reopened
		if v, found, err := db.GetState("GitPoller:r", "lastRev"); err != nil || found || v != nil {
			t.Errorf("GetState before SetState: %s %v %v", v, found, err)
		}
		ok(t, db.SetState("GitPoller:r", "lastRev", json.RawMessage(`{"main":"abc"}`)))
		ok(t, db.SetState("GitPoller:r2", "lastRev", json.RawMessage(`{}`)))
		ok(t, db.SetState("GitPoller:r", "lastRev", json.RawMessage(`{"main":"def"}`)))
		for _, bad := range []struct {
			name, key, value string
		}{
			{"", "k", `1`},
			{"n", "", `1`},
			{"a\x00b", "k", `1`},
			{"n", "k", `{`},
		} {
			if err := db.SetState(bad.name, bad.key, json.RawMessage(bad.value)); err == nil {
				t.Errorf("SetState(%q, %q, %q) succeeded", bad.name, bad.key, bad.value)
			}
		}
		ok(t, db.Close())

		// The state survives a reopen.
		db = be.openAt(t, loc, Options{})
		for name, want := range map[string]string{"GitPoller:r": `{"main":"def"}`, "GitPoller:r2": `{}`} {
			v, found, err := db.GetState(name, "lastRev")
			if err != nil || !found || string(v) != want {
				t.Errorf("GetState(%s) after reopen: %s %v %v, want %s", name, v, found, err, want)
			}
		}
	})
}

func TestAddChangesAndState(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openUnchecked(t, loc, Options{}) // closed below, then reopened
		got := must[[]Change](t)(db.AddChangesAndState(
			[]Change{{Revision: "a", When: t0}, {Revision: "b", When: t0}},
			"poller", "lastRev", json.RawMessage(`{"main":"b"}`)))
		if len(got) != 2 || got[0].ID != 1 || got[1].ID != 2 || got[0].Revision != "a" || got[1].SourceStampID != 2 {
			t.Errorf("AddChangesAndState: %+v", got)
		}
		// No changes: only the state is written.
		if got := must[[]Change](t)(db.AddChangesAndState(nil, "poller", "lastRev", json.RawMessage(`{"main":"c"}`))); len(got) != 0 {
			t.Errorf("AddChangesAndState(nil): %+v", got)
		}
		// A bad state stores none of the changes.
		if _, err := db.AddChangesAndState([]Change{{Revision: "x"}}, "poller", "lastRev", json.RawMessage(`{`)); err == nil {
			t.Error("AddChangesAndState with invalid JSON succeeded")
		}
		ok(t, db.Close())

		db = be.openAt(t, loc, Options{})
		var revs []string
		for _, c := range must[[]Change](t)(db.Changes(ChangeFilter{})) {
			revs = append(revs, c.Revision)
		}
		if diff := cmp.Diff([]string{"a", "b"}, revs); diff != "" {
			t.Errorf("changes after reopen (-want +got):\n%s", diff)
		}
		if v, _, _ := db.GetState("poller", "lastRev"); string(v) != `{"main":"c"}` {
			t.Errorf("state after reopen: %s", v)
		}
		// New ids continue after the stored ones.
		if c := must[Change](t)(db.AddChange(Change{Revision: "d"})); c.ID != 3 {
			t.Errorf("id after reopen: %d, want 3", c.ID)
		}
	})
}

func TestChangesConcurrent(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		const writers, perWriter = 8, 10
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				name := fmt.Sprint("poller", w)
				for i := range perWriter {
					c := Change{Revision: fmt.Sprintf("%d-%d", w, i), Branch: name}
					state := json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))
					if _, err := db.AddChangesAndState([]Change{c}, name, "lastRev", state); err != nil {
						t.Error(err)
						return
					}
					if _, err := db.Changes(ChangeFilter{Branch: name}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		all := must[[]Change](t)(db.Changes(ChangeFilter{}))
		if len(all) != writers*perWriter {
			t.Fatalf("%d changes, want %d", len(all), writers*perWriter)
		}
		seenSS := map[int64]bool{}
		for i, c := range all {
			if c.ID != int64(i+1) || seenSS[c.SourceStampID] {
				t.Errorf("change %d: id %d sourcestamp %d", i, c.ID, c.SourceStampID)
			}
			seenSS[c.SourceStampID] = true
		}
		for w := range writers {
			name := fmt.Sprint("poller", w)
			if got := must[[]Change](t)(db.Changes(ChangeFilter{Branch: name})); len(got) != perWriter {
				t.Errorf("%s: %d changes, want %d", name, len(got), perWriter)
			}
			if v, _, _ := db.GetState(name, "lastRev"); string(v) != fmt.Sprintf(`{"n":%d}`, perWriter-1) {
				t.Errorf("%s: state %s", name, v)
			}
		}
	})
}

// bbolt only: it breaks bbolt's buckets by hand to see Check find it.
func TestCheckChanges(t *testing.T) {
	t.Parallel()
	db, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	ok(t, err)
	defer db.Close()
	c := must[Change](t)(db.AddChange(Change{Revision: "a", Branch: "main"}))
	ok(t, db.Check())
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketSourceStamp).Delete(itob(c.SourceStampID))
	}))
	err = db.Check()
	if err == nil || !strings.Contains(err.Error(), "change 1: sourcestamp 1: store: not found") {
		t.Errorf("Check with a missing sourcestamp: %v", err)
	}
}

// TestBuildsetChanges: a buildset keeps the changes it was made for, and
// refuses a change that does not exist.
func TestBuildsetChanges(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		b, _ := db.EnsureBuilder("b")
		c1, err := db.AddChange(Change{Revision: "1", Branch: "main"})
		if err != nil {
			t.Fatal(err)
		}
		c2, _ := db.AddChange(Change{Revision: "2", Branch: "main"})
		bsid, _, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}, ChangeIDs: []int64{c1.ID, c2.ID}})
		if err != nil {
			t.Fatal(err)
		}
		bs, err := db.Buildset(bsid)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]int64{c1.ID, c2.ID}, bs.ChangeIDs); diff != "" {
			t.Errorf("ChangeIDs (-want +got):\n%s", diff)
		}
		if _, _, err := db.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}, ChangeIDs: []int64{99}}); !errors.Is(err, ErrNotFound) {
			t.Errorf("buildset of a missing change: %v", err)
		}
	})
}

// TestAddChanges: changes from outside are stored in order, all or none.
func TestAddChanges(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		got, err := db.AddChanges([]Change{{Revision: "a"}, {Revision: "b"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].ID >= got[1].ID || got[1].Revision != "b" {
			t.Errorf("AddChanges = %+v", got)
		}
		all, _ := db.Changes(ChangeFilter{})
		if len(all) != 2 {
			t.Errorf("%d changes stored, want 2", len(all))
		}
	})
}
