package store

import (
	"bytes"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// CountBuilds is how many builds match f's filters (not its Offset and
// Limit). It reads the indexes only, never a build record, as SQL's
// COUNT(*).
func (db *DB) CountBuilds(f BuildFilter) (int, error) {
	var n int
	err := db.bolt.View(func(tx *bolt.Tx) error {
		n = 0
		var fast bool
		if n, fast = countBuildsFast(tx, f); fast {
			return nil
		}
		eachBuildID(tx, f, func(int64) bool { n++; return true })
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count builds: %w", err)
	}
	return n, nil
}

// eachBuildID calls fn with the id of each build that matches f's filters
// (not its Offset and Limit), by id, newest first when f.Desc, until fn
// returns false. It walks one index, the narrowest that f names, and checks
// the other filters by a lookup in their own index: no record is decoded.
// A builder's builds are walked by number, which follows their ids.
func eachBuildID(tx *bolt.Tx, f BuildFilter, fn func(id int64) bool) {
	var (
		index     string
		prefix    []byte
		fromValue bool // the id is the value, not the key's last 8 bytes
	)
	switch {
	case f.BuilderID != 0:
		index, prefix, fromValue = bucketBuildByBuilder, itob(f.BuilderID), true
	case f.BuildRequestID != 0:
		index, prefix = bucketBuildByRequest, itob(f.BuildRequestID)
	case f.WorkerID != 0:
		index, prefix = bucketBuildByWorker, itob(f.WorkerID)
	case f.Complete != nil && !*f.Complete:
		index = bucketBuildIncomplete
	default:
		index = bucketBuild
	}
	byRequest, byWorker := bucket(tx, bucketBuildByRequest), bucket(tx, bucketBuildByWorker)
	incomplete := bucket(tx, bucketBuildIncomplete)
	match := func(id int64) bool {
		switch {
		case f.BuildRequestID != 0 && index != bucketBuildByRequest && byRequest.Get(key2(f.BuildRequestID, id)) == nil,
			f.WorkerID != 0 && index != bucketBuildByWorker && byWorker.Get(key2(f.WorkerID, id)) == nil,
			f.Complete != nil && index != bucketBuildIncomplete && (incomplete.Get(itob(id)) == nil) != *f.Complete,
			f.Before != 0 && id >= f.Before:
			return false
		}
		return true
	}
	c := bucket(tx, index).Cursor()
	var k, v []byte
	switch {
	case !f.Desc:
		k, v = c.Seek(prefix)
	case f.Before != 0 && !fromValue:
		// Keys end in the id: the first at or after the cursor, then
		// one back.
		if k, _ = c.Seek(append(slices.Clip(prefix), itob(f.Before)...)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	case prefix == nil:
		k, v = c.Last()
	default:
		// The first key after the prefix, then one back.
		if k, _ = c.Seek(itob(btoi(prefix) + 1)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = step(c, f.Desc) {
		id := btoi(k[len(k)-8:])
		if fromValue {
			id = btoi(v)
		}
		if match(id) && !fn(id) {
			return
		}
	}
}

// step moves c forwards, or backwards when back.
func step(c *bolt.Cursor, back bool) ([]byte, []byte) {
	if back {
		return c.Prev()
	}
	return c.Next()
}
