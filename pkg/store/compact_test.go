package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCompact: after most builds are deleted, compacting shrinks the file,
// and the compacted store passes Check and keeps the remaining builds.
//
// bbolt only: compaction rewrites bbolt's file.
func TestCompact(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := must[Builder](t)(db.EnsureBuilder("a"))
	rnd := rand.New(rand.NewPCG(1, 2))
	var kept []Build
	const builds = 40
	for i := range builds {
		end := t0.Add(-time.Duration(builds-i) * time.Hour)
		if i >= builds-5 {
			end = t0
		}
		b := finishedBuild(t, db, a.ID, end, 1)
		// 64 KiB of output that compresses badly.
		var out strings.Builder
		for range 1 << 10 {
			fmt.Fprintf(&out, "o%063x\n", rnd.Uint64())
		}
		s := must[Step](t)(db.AddStep(b.ID, "big"))
		l := must[Log](t)(db.AddLog(s.ID, "stdio", "s"))
		must[int64](t)(db.AppendLog(l.ID, out.String()))
		if i >= builds-5 {
			kept = append(kept, b)
		}
	}
	if n, err := db.DeleteBuildsBefore(t0.Add(-time.Minute)); err != nil || n != builds-5 {
		t.Fatalf("DeleteBuildsBefore = %d, %v", n, err)
	}
	ok(t, db.Check())

	// Not while the store is open.
	if _, err := Compact(path, CompactOptions{Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("Compact of an open store: %v, want ErrLocked", err)
	}
	ok(t, db.Close())

	res, err := Compact(path, CompactOptions{KeepBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted %d bytes into %d", res.Before, res.After)
	if res.After*4 > res.Before {
		t.Errorf("compacted %d bytes into %d, want less than a quarter", res.Before, res.After)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != res.After {
		t.Errorf("state.db after: %v, %v", fi, err)
	}
	if fi, err := os.Stat(path + ".bak"); err != nil || fi.Size() != res.Before {
		t.Errorf("backup: %v, %v", fi, err)
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}

	db = openBoltAt(t, path)
	got := must[[]Build](t)(db.Builds(BuildFilter{}))
	if len(got) != len(kept) {
		t.Fatalf("%d builds after compaction, want %d", len(got), len(kept))
	}
	for i, b := range got {
		if b.ID != kept[i].ID || b.Number != kept[i].Number {
			t.Errorf("build %d after compaction: %+v, want %+v", i, b, kept[i])
		}
		for _, l := range logsOf(t, db, b.ID) {
			if text := must[string](t)(db.LogLines(l.ID, 0, l.NumLines)); int64(strings.Count(text, "\n")) != l.NumLines {
				t.Errorf("build %d log %s: %d lines read, %d stored", b.Number, l.Name, strings.Count(text, "\n"), l.NumLines)
			}
		}
	}
	// Ids go on where they were.
	next := finishedBuild(t, db, got[0].BuilderID, t0, 1)
	if next.ID != kept[len(kept)-1].ID+1 || next.Number != kept[len(kept)-1].Number+1 {
		t.Errorf("next build after compaction: id %d number %d", next.ID, next.Number)
	}
}

// TestCompactWithoutBackup: by default the old file is removed.
//
// bbolt only: compaction rewrites bbolt's file.
func TestCompactWithoutBackup(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	finishedBuild(t, db, must[Builder](t)(db.EnsureBuilder("a")).ID, t0, 2)
	ok(t, db.Close())
	res, err := Compact(path, CompactOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Backup != "" {
		t.Errorf("backup kept: %q", res.Backup)
	}
	if _, err := os.Stat(path + ".bak"); !os.IsNotExist(err) {
		t.Errorf("backup left: %v", err)
	}
	db = openBoltAt(t, path)
	if bs := must[[]Build](t)(db.Builds(BuildFilter{})); len(bs) != 1 {
		t.Errorf("builds after compaction: %+v", bs)
	}
	if _, err := Compact(filepath.Join(t.TempDir(), "missing.db"), CompactOptions{}); err == nil {
		t.Errorf("Compact of a missing file succeeded")
	}
}
