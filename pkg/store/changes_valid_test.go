package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"
)

// Both stores refuse the same changes, with ErrInvalidChange and a reason,
// store nothing of them and lose no id: a NUL byte in a source text
// (PostgreSQL's text columns take none) and a time JSON cannot hold (it
// made PostgreSQL's pgJSON panic). A NUL byte elsewhere, in the JSON, is
// taken by both and reads back as sent.
func TestChangeRefusedAlike(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		bad := map[string]Change{
			"codebase":   {Codebase: "a\x00b"},
			"branch":     {Branch: "main\x00"},
			"repository": {Repository: "\x00"},
			"project":    {Project: "p\x00q"},
			"time":       {When: time.Unix(99999999999999, 0)},
			"time<0":     {When: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
			"author":     {Author: "a\x00b"},
			"comments":   {Comments: "x\x00"},
			"file":       {Files: []string{"f\x00"}},
			"property":   {Properties: Properties{"p": {Value: json.RawMessage(`"v\u0000"`), Source: "Change"}}},
		}
		for name, c := range bad {
			for how, add := range map[string]func() error{
				"AddChange": func() error { _, err := s.AddChange(c); return err },
				"AddChanges": func() error {
					_, err := s.AddChanges([]Change{{Author: "fine"}, c})
					return err
				},
				"AddChangesAndState": func() error {
					_, err := s.AddChangesAndState([]Change{c}, "src", "k", json.RawMessage(`1`))
					return err
				},
			} {
				err := add()
				if !errors.Is(err, ErrInvalidChange) {
					t.Errorf("%s with a bad %s: %v, want ErrInvalidChange", how, name, err)
				}
				if f := strings.TrimSuffix(name, "<0"); err != nil && !strings.Contains(err.Error(), f) {
					t.Errorf("%s with a bad %s: %q does not say what", how, name, err)
				}
			}
		}
		if n := must[int](t)(s.CountChanges(ChangeFilter{})); n != 0 {
			t.Fatalf("%d changes stored from refused ones", n)
		}
		if _, found, _ := s.GetState("src", "k"); found {
			t.Error("state set with refused changes")
		}
		// A backslash before "u0000" is no NUL.
		c := must[Change](t)(s.AddChange(Change{Author: `a\u0000b`, Files: []string{`f\\u0000`},
			Properties: Properties{"p": {Value: json.RawMessage(`"v\\u0000"`), Source: "Change"}},
			When:       time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)}))
		if c.ID != 1 {
			t.Errorf("first change stored after refusals got id %d: ids were lost", c.ID)
		}
		got := must[Change](t)(s.Change(c.ID))
		if got.Author != `a\u0000b` || got.Files[0] != `f\\u0000` || !got.When.Equal(c.When) ||
			string(got.Properties["p"].Value) != `"v\\u0000"` {
			t.Errorf("read back %+v, stored %+v", got, c)
		}
	})
}

// CountChanges counts the changes stored, not the ids given: a PostgreSQL
// store's change ids may have gaps (a rolled-back insert takes its id
// along), and its copy on bbolt must count, check and go on right.
func TestCopyDBChangeIDGaps(t *testing.T) {
	src := pg.NewDatabase(t)
	p, err := OpenPG(src, Options{})
	ok(t, err)
	must[Change](t)(p.AddChange(Change{Author: "a"}))
	ctx := context.Background()
	_, err = p.pool.Exec(ctx, "SELECT nextval('changes_id_seq'), nextval('changes_id_seq')")
	ok(t, err)
	must[Change](t)(p.AddChange(Change{Author: "b"}))
	if n := must[int](t)(p.CountChanges(ChangeFilter{})); n != 2 {
		t.Fatalf("PostgreSQL counts %d changes, want 2", n)
	}
	ok(t, p.Close())

	dst := filepath.Join(t.TempDir(), "copy.db")
	copyOK(t, src, dst)
	db := openCopy(t, dst)
	if n := must[int](t)(db.CountChanges(ChangeFilter{})); n != 2 {
		t.Errorf("the bbolt copy counts %d changes, want 2", n)
	}
	c := must[Change](t)(db.AddChange(Change{Author: "c"}))
	if c.ID != 5 {
		t.Errorf("next change on the copy got id %d, want 5", c.ID)
	}
	if n := must[int](t)(db.CountChanges(ChangeFilter{})); n != 3 {
		t.Errorf("the bbolt copy counts %d changes after one more, want 3", n)
	}
	if cs := must[[]Change](t)(db.Changes(ChangeFilter{Desc: true, Limit: 1})); len(cs) != 1 || cs[0].ID != 5 {
		t.Errorf("newest change: %+v", cs)
	}
}

// A bbolt file from before the changes' count has it made at Open.
func TestChangeCountUpgraded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, Options{})
	ok(t, err)
	for range 3 {
		must[Change](t)(db.AddChange(Change{Author: "a"}))
	}
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error { return bucket(tx, bucketBuildCount).Delete(countChanges) }))
	ok(t, db.Close())
	db = openCopy(t, path)
	if n := must[int](t)(db.CountChanges(ChangeFilter{})); n != 3 {
		t.Errorf("%d changes counted after the upgrade, want 3", n)
	}
}

// A record that does not marshal is the statement's error, never a panic
// (which dropped the connection and lost the master's request).
func TestPGJSONErrorNoPanic(t *testing.T) {
	p, err := OpenPG(pg.NewDatabase(t), Options{})
	ok(t, err)
	defer p.Close()
	err = p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgPutChange(ctx, tx, Change{ID: 1, SourceStampID: 1, When: time.Unix(99999999999999, 0)})
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "year outside of range") {
		t.Fatalf("storing a time out of JSON's range: %v", err)
	}
	if len(err.Error()) > 400 {
		t.Errorf("the error prints the record: %v", err)
	}
	if n := must[int](t)(p.CountChanges(ChangeFilter{})); n != 0 {
		t.Errorf("%d changes stored", n)
	}
}

// Both stores refuse an object state name or key PostgreSQL cannot hold.
func TestStateKeyRefusedAlike(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		for _, k := range [][2]string{{"src", "k\x00"}, {"src\x00", "k"}, {"src", "\xff"}} {
			if err := s.SetState(k[0], k[1], json.RawMessage(`1`)); err == nil || !strings.Contains(err.Error(), "without NUL") {
				t.Errorf("set state %q: %v", k, err)
			}
		}
	})
}

// A bbolt store from before the stores refused NUL characters, holding
// such records, is refused for a copy to PostgreSQL before anything is
// copied, each record named.
func TestCopyDBRefusesWhatPGCannotHold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := Open(path, Options{})
	ok(t, err)
	must[Change](t)(db.AddChange(Change{Author: "fine"}))
	c := must[Change](t)(db.AddChange(Change{Author: "x"}))
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
		c.Author = "a\x00b" // as an older gbb stored it
		if err := put(tx, bucketChange, c.ID, &c); err != nil {
			return err
		}
		return bucket(tx, bucketObjectState).Put(stateKey("src", "k\x00"), []byte(`1`))
	}))
	ok(t, db.Close())
	to := pg.NewDatabase(t)
	_, err = CopyDB(context.Background(), path, to, CopyOptions{})
	for _, want := range []string{"2 records PostgreSQL cannot hold", "changes 2: a NUL character in its record",
		`object state "src\x00k\x00": its key "k\x00" is no UTF-8 text`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("copy of a store holding NUL characters: %v, want %q", err, want)
		}
	}
	p, err := OpenPG(to, Options{})
	ok(t, err)
	defer p.Close()
	if n := must[int](t)(p.CountChanges(ChangeFilter{})); n != 0 {
		t.Errorf("%d changes copied before the refusal", n)
	}
	// bbolt holds them: a copy to bbolt goes.
	copyOK(t, path, filepath.Join(t.TempDir(), "copy.db"))
}

// One database under two URLs (127.0.0.1 and localhost) is one store.
func TestCopyDBSameDatabaseOtherURL(t *testing.T) {
	from := pg.NewDatabase(t)
	p, err := OpenPG(from, Options{})
	ok(t, err)
	must[Change](t)(p.AddChange(Change{Author: "a"}))
	ok(t, p.Close())
	to := strings.Replace(from, "127.0.0.1", "localhost", 1)
	if to == from {
		t.Fatalf("URL %s names no 127.0.0.1", from)
	}
	_, err = CopyDB(context.Background(), from, to, CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), "are the same store") {
		t.Fatalf("copy of a database into itself under another URL: %v", err)
	}
	// The mark is gone, and another database is no same store.
	other := pg.NewDatabase(t)
	copyOK(t, from, other)
	p, err = OpenPG(from, Options{})
	ok(t, err)
	defer p.Close()
	var left bool
	ok(t, p.pool.QueryRow(context.Background(), `SELECT to_regclass('gbb_copy_db_mark') IS NOT NULL`).Scan(&left))
	if left {
		t.Error("copy-db left its mark table in the source")
	}
}
