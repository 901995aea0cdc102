package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestPGChangesRace: masters add changes of one source at once (webhooks
// land on any master); the ids follow each other and each change's parent
// is the change just before it, as if one master had added them all.
func TestPGChangesRace(t *testing.T) {
	t.Parallel()
	const masters, each = 4, 15
	ps := openMasters(t, masters)
	race(masters, func(i int) {
		for n := range each {
			c := Change{Branch: "main", Repository: "repo", Revision: fmt.Sprintf("%d-%d", i, n), When: t0}
			var err error
			if n%2 == 0 {
				_, err = ps[i].AddChange(c)
			} else {
				_, err = ps[i].AddChanges([]Change{c, c})
			}
			if err != nil {
				t.Error(err)
			}
		}
	})
	all := must[[]Change](t)(ps[0].Changes(ChangeFilter{}))
	if want := masters * (each + each/2); len(all) != want {
		t.Fatalf("%d changes, want %d", len(all), want)
	}
	for i, c := range all {
		var parent int64
		if i > 0 {
			parent = all[i-1].ID
		}
		switch {
		case c.ID != int64(i+1):
			t.Errorf("change %d has id %d", i+1, c.ID)
		case i == 0 && len(c.ParentChangeIDs) != 0, i > 0 && (len(c.ParentChangeIDs) != 1 || c.ParentChangeIDs[0] != parent):
			t.Errorf("change %d: parents %v, want [%d]", c.ID, c.ParentChangeIDs, parent)
		}
	}
}

// TestPGSourceStampRace: masters add buildsets of the same source at
// once; that source is stored once, and counts every buildset naming it
// (Check, at cleanup, counts them).
func TestPGSourceStampRace(t *testing.T) {
	t.Parallel()
	const masters, each = 4, 10
	ps := openMasters(t, masters)
	b := must[Builder](t)(ps[0].EnsureBuilder("b"))
	ss := []SourceStamp{{Branch: "main", Revision: "abc", Repository: "repo"}, {Codebase: "lib", Revision: "def"}}
	race(masters, func(i int) {
		for range each {
			if _, _, err := ps[i].AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}, SourceStamps: ss}); err != nil {
				t.Error(err)
			}
			// A change of the first source, too, shares its sourcestamp.
			if _, err := ps[i].AddChange(Change{Branch: "main", Revision: "abc", Repository: "repo"}); err != nil {
				t.Error(err)
			}
		}
	})
	bss := must[[]Buildset](t)(ps[0].Buildsets(nil))
	if len(bss) != masters*each {
		t.Fatalf("%d buildsets, want %d", len(bss), masters*each)
	}
	for _, bs := range bss {
		if len(bs.SourceStamps) != 2 || bs.SourceStamps[0].ID != bss[0].SourceStamps[0].ID || bs.SourceStamps[1].ID != bss[0].SourceStamps[1].ID {
			t.Errorf("buildset %d: sourcestamps %+v, want those of buildset %d", bs.ID, bs.SourceStamps, bss[0].ID)
		}
	}
	first := bss[0].SourceStamps[0].ID
	if n := len(must[[]Buildset](t)(ps[1].BuildsetsOfSourceStamp(first))); n != masters*each {
		t.Errorf("sourcestamp %d: %d buildsets, want %d", first, n, masters*each)
	}
	for _, c := range must[[]Change](t)(ps[1].Changes(ChangeFilter{})) {
		if c.SourceStampID != first {
			t.Errorf("change %d: sourcestamp %d, want %d", c.ID, c.SourceStampID, first)
		}
	}
}

// TestPGStateNames: a state name PostgreSQL cannot hold (a NUL byte, or
// not UTF-8) is refused with a reason, and the changes that came with it
// are not stored either.
func TestPGStateNames(t *testing.T) {
	t.Parallel()
	p := openPGTest(t, pg.NewDatabase(t), Options{})
	for _, name := range [][2]string{{"poller", "k\x00"}, {"p\xff", "k"}} {
		err := p.SetState(name[0], name[1], json.RawMessage(`1`))
		if err == nil || !strings.Contains(err.Error(), "UTF-8 without NUL") {
			t.Errorf("SetState %q: %v, want a refusal saying why", name, err)
		}
		_, err = p.AddChangesAndState([]Change{{Revision: "r"}}, name[0], name[1], json.RawMessage(`1`))
		if err == nil || !strings.Contains(err.Error(), "UTF-8 without NUL") {
			t.Errorf("AddChangesAndState %q: %v, want a refusal saying why", name, err)
		}
		if _, found, err := p.GetState(name[0], name[1]); found || err != nil {
			t.Errorf("GetState %q: found %v, %v", name, found, err)
		}
	}
	if n := must[int](t)(p.CountChanges(ChangeFilter{})); n != 0 {
		t.Errorf("%d changes stored with a refused state", n)
	}
}
