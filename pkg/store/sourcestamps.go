package store

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketSourceStampByHash indexes sourcestamps by their content, so that
// the same content gets one id, as buildbot's ss_hash column.
const bucketSourceStampByHash = "sourcestamp_by_hash" // sha256 of the content → ssid

// ssHash is the key of ss's content: its codebase, branch, revision,
// repository and project (buildbot's ss_hash also covers a patch, which
// gbb's sourcestamps do not carry). Its id and creation time are no part
// of it.
func ssHash(ss SourceStamp) []byte {
	b, _ := json.Marshal([]string{ss.Codebase, ss.Branch, ss.Revision, ss.Repository, ss.Project})
	h := sha256.Sum256(b)
	return h[:]
}

// findSourceStamp returns the stored sourcestamp with ss's content, or
// stores ss with a new id, created at created, and returns it: buildbot's
// findSourceStampId. A change's sourcestamp and the buildset made for it
// share one id, which is how buildbot's console and grid join them.
func findSourceStamp(tx *bolt.Tx, ss SourceStamp, created time.Time) (SourceStamp, error) {
	key := ssHash(ss)
	if v := bucket(tx, bucketSourceStampByHash).Get(key); v != nil {
		found, err := get[SourceStamp](tx, bucketSourceStamp, btoi(v))
		if err != nil {
			return SourceStamp{}, fmt.Errorf("sourcestamp of hash %x: %w", key, err)
		}
		return found, nil
	}
	var err error
	if ss.ID, err = nextID(tx, bucketSourceStamp); err != nil {
		return SourceStamp{}, err
	}
	ss.CreatedAt = created
	if err := put(tx, bucketSourceStamp, ss.ID, &ss); err != nil {
		return SourceStamp{}, err
	}
	if err := bucket(tx, bucketSourceStampByHash).Put(key, itob(ss.ID)); err != nil {
		return SourceStamp{}, err
	}
	return ss, nil
}

// indexSourceStamps fills the content index of a store made before it:
// each content maps to its oldest sourcestamp. The older duplicates keep
// their ids (changes and buildsets name them); new sourcestamps of the
// same content reuse the oldest.
func indexSourceStamps(tx *bolt.Tx) error {
	idx := bucket(tx, bucketSourceStampByHash)
	return bucket(tx, bucketSourceStamp).ForEach(func(k, v []byte) error {
		var ss SourceStamp
		if err := json.Unmarshal(v, &ss); err != nil {
			return fmt.Errorf("decode sourcestamp %d: %w", btoi(k), err)
		}
		key := ssHash(ss)
		if idx.Get(key) != nil {
			return nil
		}
		return idx.Put(key, itob(btoi(k)))
	})
}

// checkSourceStamps verifies that the content index names existing
// sourcestamps of that content, and that every sourcestamp's content is
// indexed.
func checkSourceStamps(tx *bolt.Tx) []error {
	var errs []error
	idx := bucket(tx, bucketSourceStampByHash)
	idx.ForEach(func(k, v []byte) error {
		ss, err := get[SourceStamp](tx, bucketSourceStamp, btoi(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("sourcestamp index %x: %w", k, err))
		} else if string(ssHash(ss)) != string(k) {
			errs = append(errs, fmt.Errorf("sourcestamp index %x: sourcestamp %d has other content", k, ss.ID))
		}
		return nil
	})
	bucket(tx, bucketSourceStamp).ForEach(func(k, v []byte) error {
		var ss SourceStamp
		if err := json.Unmarshal(v, &ss); err != nil {
			errs = append(errs, fmt.Errorf("sourcestamp %d: %w", btoi(k), err))
			return nil
		}
		if idx.Get(ssHash(ss)) == nil {
			errs = append(errs, fmt.Errorf("sourcestamp %d: not in the content index", ss.ID))
		}
		return nil
	})
	return errs
}
