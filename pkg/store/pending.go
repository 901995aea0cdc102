package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketRequestPending indexes the requests waiting for a build (neither
// claimed nor complete) per builder, in the order the distributor takes
// them: builderid | priority, highest first | submitted at | brid → "".
// Every field of the key is fixed when the request is made, so the key is
// found from the request alone; put keeps the index in step with every
// write of a request, whoever writes it.
const bucketRequestPending = "buildrequest_pending"

// bucketRequestClaimed indexes the requests claimed and not complete:
// brid → the claiming master's id. put keeps it too. Recovery reads it
// instead of every incomplete request, and it tells claimed from pending
// among the incomplete ones without decoding them.
const bucketRequestClaimed = "buildrequest_claimed"

// pendingKey is the index key of br.
func pendingKey(br *BuildRequest) []byte {
	k := make([]byte, 0, 32)
	k = binary.BigEndian.AppendUint64(k, uint64(br.BuilderID))
	// Highest priority first: the sign bit flipped sorts signed values,
	// the complement reverses them.
	k = binary.BigEndian.AppendUint64(k, ^(uint64(int64(br.Priority)) ^ 1<<63))
	k = binary.BigEndian.AppendUint64(k, uint64(br.SubmittedAt.UnixNano())^1<<63)
	return binary.BigEndian.AppendUint64(k, uint64(br.ID))
}

// indexPending adds br to the pending and claimed indexes or removes it
// from them, as its state says.
func indexPending(tx *bolt.Tx, br *BuildRequest) error {
	claimed := bucket(tx, bucketRequestClaimed)
	if br.Claimed && !br.Complete {
		if err := claimed.Put(itob(br.ID), itob(br.ClaimedByMasterID)); err != nil {
			return err
		}
	} else if err := claimed.Delete(itob(br.ID)); err != nil {
		return err
	}
	b := bucket(tx, bucketRequestPending)
	if br.Claimed || br.Complete {
		return b.Delete(pendingKey(br))
	}
	return b.Put(pendingKey(br), nil)
}

// buildPendingIndex fills the pending index from the incomplete requests;
// Open runs it when the index is new (a store made before it existed).
func buildPendingIndex(tx *bolt.Tx) error {
	for _, id := range prefixIDs(tx, bucketRequestIncomplete, nil, false) {
		br, err := get[BuildRequest](tx, bucketRequest, id)
		if err != nil {
			return err
		}
		if err := indexPending(tx, &br); err != nil {
			return err
		}
	}
	return nil
}

// claimedBy returns the ids of the incomplete requests claimed by
// masterID, by id.
func claimedBy(tx *bolt.Tx, masterID int64) []int64 {
	var ids []int64
	bucket(tx, bucketRequestClaimed).ForEach(func(k, v []byte) error {
		if btoi(v) == masterID {
			ids = append(ids, btoi(k))
		}
		return nil
	})
	return ids
}

// pendingOrder is the order in which requests are distributed: highest
// priority first, then oldest, then lowest id.
func pendingOrder(a, b BuildRequest) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if c := a.SubmittedAt.Compare(b.SubmittedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// PendingBuildRequests returns the requests waiting for a build (neither
// claimed nor complete) of the builders in limits, in the order they are
// to be distributed: highest priority first, then oldest submitted, then
// lowest id. limits maps a builder id to the most requests wanted of it;
// zero or less means all of them. Only the requests returned are read, so
// the cost does not grow with the requests left waiting or with history.
func (db *DB) PendingBuildRequests(limits map[int64]int) ([]BuildRequest, error) {
	var out []BuildRequest
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := bucket(tx, bucketRequestPending).Cursor()
		for builderID, limit := range limits {
			prefix := itob(builderID)
			n := 0
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				if limit > 0 && n >= limit {
					break
				}
				br, err := get[BuildRequest](tx, bucketRequest, btoi(k[24:]))
				if err != nil {
					return err
				}
				out = append(out, br)
				n++
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list pending buildrequests: %w", err)
	}
	slices.SortFunc(out, pendingOrder)
	return out, nil
}

// checkPending verifies that the pending index holds exactly the requests
// neither claimed nor complete, under the right keys.
func checkPending(tx *bolt.Tx) []error {
	var errs []error
	ix, cl := bucket(tx, bucketRequestPending), bucket(tx, bucketRequestClaimed)
	want, wantClaimed := 0, 0
	for _, id := range prefixIDs(tx, bucketRequestIncomplete, nil, false) {
		br, err := get[BuildRequest](tx, bucketRequest, id)
		if err != nil {
			continue // reported by the request checks
		}
		if v := cl.Get(itob(id)); br.Claimed != (v != nil) || v != nil && btoi(v) != br.ClaimedByMasterID {
			errs = append(errs, fmt.Errorf("buildrequest %d: claimed %v by master %d, index %s says %x", id, br.Claimed, br.ClaimedByMasterID, bucketRequestClaimed, v))
		}
		if br.Claimed {
			wantClaimed++
		}
		in := ix.Get(pendingKey(&br)) != nil
		pending := !br.Claimed && !br.Complete
		switch {
		case pending && !in:
			errs = append(errs, fmt.Errorf("buildrequest %d: pending but not indexed", id))
		case !pending && in:
			errs = append(errs, fmt.Errorf("buildrequest %d: claimed or complete but indexed as pending", id))
		}
		if pending {
			want++
		}
	}
	if n := ix.Stats().KeyN; n != want {
		errs = append(errs, fmt.Errorf("index %s: %d entries for %d pending requests", bucketRequestPending, n, want))
	}
	if n := cl.Stats().KeyN; n != wantClaimed {
		errs = append(errs, fmt.Errorf("index %s: %d entries for %d claimed incomplete requests", bucketRequestClaimed, n, wantClaimed))
	}
	return errs
}

// PendingStats returns how many build requests wait for a build (neither
// claimed nor complete) and when the oldest of them was submitted (zero
// when none waits). It reads only the pending index's keys.
func (db *DB) PendingStats() (n int, oldest time.Time, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		c := bucket(tx, bucketRequestPending).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 32 {
				continue
			}
			n++
			at := time.Unix(0, int64(binary.BigEndian.Uint64(k[16:24])^1<<63))
			if oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count pending build requests: %w", err)
	}
	return n, oldest, nil
}

// Size returns the size of the store's database in bytes.
func (db *DB) Size() (int64, error) {
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n, err
}
