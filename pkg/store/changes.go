package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Buckets of changes and of the state change sources keep.
const (
	bucketChange      = "change"       // changeid → Change
	bucketObjectState = "object_state" // object name NUL key → JSON value
)

// Change is one change to a repository, as buildbot's changes: usually one
// commit, announced by a change source.
type Change struct {
	ID            int64 // buildbot's changeid, assigned by the store from 1
	Author        string
	Committer     string
	Comments      string
	Branch        string
	Revision      string
	Repository    string
	Project       string
	Codebase      string
	Category      string
	RevLink       string
	When          time.Time // when the change was made (commit time); zero means now
	Files         []string
	Properties    Properties
	SourceStampID int64 // the change's sourcestamp, created with it by the store
	// ParentChangeIDs is the previous change of the same codebase, branch,
	// repository and project, set by the store when it adds the change
	// (changeparent.go), as buildbot's; empty for the first, and for the
	// changes stored before gbb kept it.
	ParentChangeIDs []int64 `json:",omitempty"`
}

// ChangeFilter selects changes; zero fields match all.
type ChangeFilter struct {
	Branch     string
	Repository string
	Project    string
	Limit      int  // at most this many; zero means no limit
	Offset     int  // skip this many matches first
	Desc       bool // newest (highest id) first; default oldest first
}

// AddChange stores c with a new id and the sourcestamp of its codebase,
// branch, revision, repository and project: the one stored for that
// content, or a new one. It returns the change
// as stored.
func (db *DB) AddChange(c Change) (Change, error) {
	var out Change
	err := db.update(func(tx *bolt.Tx) (err error) {
		out, err = addChange(tx, c)
		return err
	}, func(e emit) { e.change(out) })
	if err != nil {
		return Change{}, fmt.Errorf("add change: %w", err)
	}
	return out, nil
}

// AddChangesAndState stores changes, in order, and sets the state key of
// objectName to value in one transaction: either all of it is stored or
// none. A change source uses it to record what it has announced together
// with the changes, so that a crash neither announces a change twice nor
// loses one. It returns the changes as stored.
func (db *DB) AddChangesAndState(changes []Change, objectName, key string, value json.RawMessage) ([]Change, error) {
	if err := checkStateKey(objectName, key, value); err != nil {
		return nil, fmt.Errorf("add changes: %w", err)
	}
	var out []Change
	err := db.update(func(tx *bolt.Tx) error {
		var err error
		if out, err = addChanges(tx, changes); err != nil {
			return err
		}
		return bucket(tx, bucketObjectState).Put(stateKey(objectName, key), bytes.Clone(value))
	}, func(e emit) {
		for _, c := range out {
			e.change(c)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("add changes for %s: %w", objectName, err)
	}
	return out, nil
}

// AddChanges stores changes from outside (webhooks, sendchange) in one
// transaction, in order, and returns them as stored: all or none.
func (db *DB) AddChanges(changes []Change) ([]Change, error) {
	var out []Change
	err := db.update(func(tx *bolt.Tx) error {
		var err error
		out, err = addChanges(tx, changes)
		return err
	}, func(e emit) {
		for _, c := range out {
			e.change(c)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("add changes: %w", err)
	}
	return out, nil
}

func addChanges(tx *bolt.Tx, changes []Change) ([]Change, error) {
	out := make([]Change, 0, len(changes))
	for _, c := range changes {
		c, err := addChange(tx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func addChange(tx *bolt.Tx, c Change) (Change, error) {
	c.When = at(c.When)
	if err := c.valid(); err != nil {
		return Change{}, err
	}
	var err error
	if c.ID, err = nextID(tx, bucketChange); err != nil {
		return Change{}, err
	}
	if err := addCount(tx, countChanges, 1); err != nil {
		return Change{}, err
	}
	c.Files = slices.Clone(c.Files)
	c.Properties = maps.Clone(c.Properties)
	c.cleanSource()
	ss, err := findSourceStamp(tx, c.sourceStamp(), time.Now().UTC())
	if err != nil {
		return Change{}, err
	}
	c.SourceStampID = ss.ID
	if err := linkParent(tx, &c); err != nil {
		return Change{}, err
	}
	if err := put(tx, bucketChange, c.ID, &c); err != nil {
		return Change{}, err
	}
	return c, nil
}

// ErrInvalidChange is the error, wrapped, of a change no store takes: a
// NUL byte anywhere in it, or a time JSON cannot hold. Both stores refuse
// the same changes with it (a change hook answers 400).
var ErrInvalidChange = errors.New("store: invalid change")

// valid says why c cannot be stored, if it cannot. PostgreSQL takes no
// NUL byte in a text column (a change's source), and although a json
// column stores "\u0000", every JSON operator on the row then fails
// ("unsupported Unicode escape sequence"), the store's check and copy-db
// included: so no NUL byte anywhere, its properties' JSON included. A
// record's time must be within JSON's years 0 to 9999 (time.MarshalJSON
// refuses any other). Bytes that are not UTF-8 are no reason: the store
// replaces them (see jsonString).
func (c *Change) valid() error {
	for _, f := range []struct{ name, v string }{
		{"codebase", c.Codebase}, {"branch", c.Branch}, {"repository", c.Repository}, {"project", c.Project},
		{"author", c.Author}, {"committer", c.Committer}, {"comments", c.Comments}, {"revision", c.Revision},
		{"category", c.Category}, {"revlink", c.RevLink},
	} {
		if strings.ContainsRune(f.v, 0) {
			return fmt.Errorf("%w: its %s %q holds a NUL byte", ErrInvalidChange, f.name, f.v)
		}
	}
	if y := c.When.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("%w: its time %d (Unix seconds) is outside the years 0 to 9999", ErrInvalidChange, c.When.Unix())
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidChange, err)
	}
	if jsonHasNUL(data) {
		return fmt.Errorf("%w: a file name or property holds a NUL byte", ErrInvalidChange)
	}
	return nil
}

// jsonHasNUL says whether the JSON text data holds a NUL character: a NUL
// byte, or the escape \u0000 (not an escaped backslash followed by
// "u0000").
func jsonHasNUL(data []byte) bool {
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case 0:
			return true
		case '\\':
			if i+5 < len(data) && data[i+1] == 'u' && string(data[i+2:i+6]) == "0000" {
				return true
			}
			i++ // the escaped character
		}
	}
	return false
}

// sourceStamp is the content of c's sourcestamp.
func (c *Change) sourceStamp() SourceStamp {
	return SourceStamp{
		Codebase:   c.Codebase,
		Branch:     c.Branch,
		Revision:   c.Revision,
		Repository: c.Repository,
		Project:    c.Project,
	}
}

// cleanSource makes c's source, which its sourcestamp's hash and its
// parent's index key cover, what it reads back as (see jsonString).
func (c *Change) cleanSource() {
	ss := c.sourceStamp()
	ss.clean()
	c.Codebase, c.Branch, c.Revision, c.Repository, c.Project = ss.Codebase, ss.Branch, ss.Revision, ss.Repository, ss.Project
}

// clean makes ss's content what it reads back as (see jsonString), so
// that its hash, taken now, is the one Check takes of it later.
func (ss *SourceStamp) clean() {
	for _, s := range []*string{&ss.Codebase, &ss.Branch, &ss.Revision, &ss.Repository, &ss.Project} {
		*s = jsonString(*s)
	}
}

// jsonString is s as it reads back from its JSON: each byte that is not
// UTF-8 replaced by U+FFFD, as encoding/json does (git allows any bytes in
// a branch name). PostgreSQL's text columns take UTF-8 only.
func jsonString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// Change returns the change with the given id.
func (db *DB) Change(id int64) (Change, error) {
	var c Change
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		c, err = get[Change](tx, bucketChange, id)
		return err
	})
	if err != nil {
		return Change{}, fmt.Errorf("get change: %w", err)
	}
	return c, nil
}

// Changes lists the changes that match f, by id.
func (db *DB) Changes(f ChangeFilter) ([]Change, error) {
	var out []Change
	err := db.bolt.View(func(tx *bolt.Tx) error {
		out = nil
		skip := f.Offset
		c := bucket(tx, bucketChange).Cursor()
		first, next := c.First, c.Next
		if f.Desc {
			first, next = c.Last, c.Prev
		}
		for k, v := first(); k != nil; k, v = next() {
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
			if match, err := f.matches(k, v); err != nil || !match {
				if err != nil {
					return err
				}
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			var ch Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return fmt.Errorf("decode change %d: %w", btoi(k), err)
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	return out, nil
}

// CountChanges is how many changes match f's filters (not its Offset and
// Limit). With no filters it is the count AddChange keeps (countChanges),
// read without a walk; Check verifies it.
func (db *DB) CountChanges(f ChangeFilter) (int, error) {
	var n int
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if f.Branch == "" && f.Repository == "" && f.Project == "" {
			n = buildCount(tx, countChanges)
			return nil
		}
		n = 0
		return bucket(tx, bucketChange).ForEach(func(k, v []byte) error {
			match, err := f.matches(k, v)
			if match {
				n++
			}
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("count changes: %w", err)
	}
	return n, nil
}

// GetState returns the value stored under key for objectName (a change
// source's unique name, say), and whether there is one.
func (db *DB) GetState(objectName, key string) (json.RawMessage, bool, error) {
	var value json.RawMessage
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if v := bucket(tx, bucketObjectState).Get(stateKey(objectName, key)); v != nil {
			value = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("get state %s %s: %w", objectName, key, err)
	}
	return value, value != nil, nil
}

// SetState stores value, which must be valid JSON, under key for
// objectName, replacing any value there.
func (db *DB) SetState(objectName, key string, value json.RawMessage) error {
	if err := checkStateKey(objectName, key, value); err != nil {
		return fmt.Errorf("set state: %w", err)
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketObjectState).Put(stateKey(objectName, key), bytes.Clone(value))
	})
	if err != nil {
		return fmt.Errorf("set state %s %s: %w", objectName, key, err)
	}
	return nil
}

func checkStateKey(objectName, key string, value json.RawMessage) error {
	switch {
	case objectName == "" || key == "":
		return errors.New("object name and key must not be empty")
	case pgBadText(objectName) || pgBadText(key):
		// PostgreSQL's text columns take neither; nor does bbolt, alike.
		return fmt.Errorf("object name %q and key %q must be UTF-8 without NUL bytes", objectName, key)
	case !json.Valid(value):
		return fmt.Errorf("state %s %s: value is not valid JSON", objectName, key)
	}
	return nil
}

func stateKey(objectName, key string) []byte {
	return []byte(objectName + "\x00" + key)
}

// checkChanges verifies that every change's sourcestamp exists and names
// the change's source.
func checkChanges(tx *bolt.Tx) []error {
	var errs []error
	if c := bucket(tx, bucketChange); c.Stats().KeyN > 0 {
		if last, _ := c.Cursor().Last(); uint64(btoi(last)) > c.Sequence() {
			errs = append(errs, fmt.Errorf("changes: change %d stored, only %d ids given", btoi(last), c.Sequence()))
		}
	}
	bucket(tx, bucketChange).ForEach(func(k, v []byte) error {
		id := btoi(k)
		var c Change
		if err := json.Unmarshal(v, &c); err != nil {
			errs = append(errs, fmt.Errorf("change %d: %w", id, err))
			return nil
		}
		if c.ID != id {
			errs = append(errs, fmt.Errorf("change %d: stored with id %d", id, c.ID))
		}
		ss, err := get[SourceStamp](tx, bucketSourceStamp, c.SourceStampID)
		if err != nil {
			errs = append(errs, fmt.Errorf("change %d: %w", id, err))
			return nil
		}
		if ss.Revision != c.Revision || ss.Branch != c.Branch || ss.Repository != c.Repository ||
			ss.Project != c.Project || ss.Codebase != c.Codebase {
			errs = append(errs, fmt.Errorf("change %d: sourcestamp %d names another source", id, ss.ID))
		}
		return nil
	})
	bucket(tx, bucketObjectState).ForEach(func(k, v []byte) error {
		if !bytes.ContainsRune(k, 0) || !json.Valid(v) {
			errs = append(errs, fmt.Errorf("object state %q: malformed", k))
		}
		return nil
	})
	return errs
}
