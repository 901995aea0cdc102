package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketChangeLatest indexes the latest change of each source: the JSON
// list [codebase, branch, repository, project] → changeid. It is made, from
// the changes stored, by the first change added after an upgrade from a
// store without it; so its absence means "not built yet", not "no
// changes".
const bucketChangeLatest = "change_latest"

// sourceKey is the key of c's source in bucketChangeLatest.
func sourceKey(c *Change) []byte {
	key, _ := json.Marshal([4]string{c.Codebase, c.Branch, c.Repository, c.Project}) // strings always marshal
	return key
}

// linkParent sets c's ParentChangeIDs, as buildbot's addChange: the latest
// change stored before it with the same codebase, branch, repository and
// project, if any; and records c, whose ID must be set, as the latest of
// its source. It runs in the transaction that adds c.
func linkParent(tx *bolt.Tx, c *Change) error {
	b := tx.Bucket([]byte(bucketChangeLatest))
	if b == nil {
		var err error
		if b, err = tx.CreateBucket([]byte(bucketChangeLatest)); err != nil {
			return err
		}
		if err := indexLatestChanges(tx, b); err != nil {
			return fmt.Errorf("index the latest change of each source: %w", err)
		}
	}
	key := sourceKey(c)
	c.ParentChangeIDs = nil
	if v := b.Get(key); v != nil {
		c.ParentChangeIDs = []int64{btoi(v)}
	}
	return b.Put(key, itob(c.ID))
}

// indexLatestChanges fills b with the latest change of each source among
// those stored.
func indexLatestChanges(tx *bolt.Tx, b *bolt.Bucket) error {
	return bucket(tx, bucketChange).ForEach(func(k, v []byte) error {
		var c Change
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decode change %d: %w", btoi(k), err)
		}
		return b.Put(sourceKey(&c), itob(c.ID)) // by id: a later one replaces
	})
}

// checkChangeParents verifies that each change's parent is an earlier
// change of the same source, and that the index of the latest change of
// each source names the latest.
func checkChangeParents(tx *bolt.Tx) []error {
	var errs []error
	latest := map[string]int64{}
	bucket(tx, bucketChange).ForEach(func(k, v []byte) error {
		var c Change
		if json.Unmarshal(v, &c) != nil {
			return nil // checkChanges reports it
		}
		latest[string(sourceKey(&c))] = c.ID
		for _, p := range c.ParentChangeIDs {
			parent, err := get[Change](tx, bucketChange, p)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("change %d: parent: %w", c.ID, err))
			case p >= c.ID || string(sourceKey(&parent)) != string(sourceKey(&c)):
				errs = append(errs, fmt.Errorf("change %d: parent %d is no earlier change of its source", c.ID, p))
			}
		}
		return nil
	})
	b := tx.Bucket([]byte(bucketChangeLatest))
	if b == nil {
		return errs
	}
	for key, id := range latest {
		if v := b.Get([]byte(key)); v == nil || btoi(v) != id {
			errs = append(errs, fmt.Errorf("the latest change of %s is %d, not indexed so", key, id))
		}
	}
	if n := b.Stats().KeyN; n != len(latest) {
		errs = append(errs, fmt.Errorf("%s has %d sources, the changes %d", bucketChangeLatest, n, len(latest)))
	}
	return errs
}
