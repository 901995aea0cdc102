package store

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketSourceStampByHash indexes sourcestamps by their content, so that
// the same content gets one id, as buildbot's ss_hash column.
// bucketSourceStampRefs counts the changes and buildsets that name each
// sourcestamp, so that the janitor deletes a shared one only with the last
// buildset that names it (changes are never deleted).
// bucketBuildsetBySourceStamp lists the buildsets that build each
// sourcestamp, so that a change's builds (/changes/N/builds) are found
// without reading every buildset.
const (
	bucketSourceStampByHash     = "sourcestamp_by_hash"     // sha256 of the content → ssid
	bucketSourceStampRefs       = "sourcestamp_refs"        // ssid → big-endian count of changes and buildsets naming it
	bucketBuildsetBySourceStamp = "buildset_by_sourcestamp" // ssid|bsid → ""
)

// BuildsetsOfSourceStamp returns the buildsets that build the sourcestamp
// ssid, by id: buildbot's buildsets of a change (a change and the
// buildsets made for it share its sourcestamp). None is no error.
func (db *DB) BuildsetsOfSourceStamp(ssid int64) ([]Buildset, error) {
	var bss []Buildset
	err := db.bolt.View(func(tx *bolt.Tx) error {
		for _, id := range prefixIDs(tx, bucketBuildsetBySourceStamp, itob(ssid), false) {
			bs, err := get[Buildset](tx, bucketBuildset, id)
			if err != nil {
				return fmt.Errorf("buildset %d of sourcestamp %d: %w", id, ssid, err)
			}
			bss = append(bss, bs)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("buildsets of sourcestamp %d: %w", ssid, err)
	}
	return bss, nil
}

// indexBuildsets fills the buildsets' sourcestamp index of a store made
// before it.
func indexBuildsets(tx *bolt.Tx) error {
	idx := bucket(tx, bucketBuildsetBySourceStamp)
	return bucket(tx, bucketBuildset).ForEach(func(k, v []byte) error {
		var bs Buildset
		if err := json.Unmarshal(v, &bs); err != nil {
			return fmt.Errorf("decode buildset %d: %w", btoi(k), err)
		}
		for _, ss := range bs.SourceStamps {
			if err := idx.Put(key2(ss.ID, bs.ID), nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkBuildsetIndex verifies that each buildset's sourcestamps list it
// in the index, and that every entry is one of those.
func checkBuildsetIndex(tx *bolt.Tx) []error {
	var errs []error
	want := map[string]bool{}
	bucket(tx, bucketBuildset).ForEach(func(k, v []byte) error {
		var bs Buildset
		if err := json.Unmarshal(v, &bs); err != nil {
			return nil // reported by checkSourceStamps
		}
		for _, ss := range bs.SourceStamps {
			want[string(key2(ss.ID, bs.ID))] = true
		}
		return nil
	})
	idx := bucket(tx, bucketBuildsetBySourceStamp)
	idx.ForEach(func(k, _ []byte) error {
		if len(k) != 16 || !want[string(k)] {
			errs = append(errs, fmt.Errorf("index %s: entry %x names no buildset of that sourcestamp", bucketBuildsetBySourceStamp, k))
		}
		return nil
	})
	for k := range want {
		if idx.Get([]byte(k)) == nil {
			errs = append(errs, fmt.Errorf("index %s: buildset %d of sourcestamp %d missing", bucketBuildsetBySourceStamp, btoi([]byte(k)[8:]), btoi([]byte(k))))
		}
	}
	return errs
}

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
// share one id, which is how buildbot's console and grid join them. The
// caller, a change or a buildset, holds one more reference to it.
func findSourceStamp(tx *bolt.Tx, ss SourceStamp, created time.Time) (SourceStamp, error) {
	key := ssHash(ss)
	if v := bucket(tx, bucketSourceStampByHash).Get(key); v != nil {
		found, err := get[SourceStamp](tx, bucketSourceStamp, btoi(v))
		if err != nil {
			return SourceStamp{}, fmt.Errorf("sourcestamp of hash %x: %w", key, err)
		}
		return found, addSourceStampRefs(tx, found.ID, 1)
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
	return ss, addSourceStampRefs(tx, ss.ID, 1)
}

// addSourceStampRefs adds n to the references of the sourcestamp id.
func addSourceStampRefs(tx *bolt.Tx, id, n int64) error {
	refs := bucket(tx, bucketSourceStampRefs)
	var count int64
	if v := refs.Get(itob(id)); v != nil {
		count = btoi(v)
	}
	return refs.Put(itob(id), itob(count+n))
}

// releaseSourceStamps drops a deleted buildset's references to its
// sourcestamps, and deletes each that nothing names any more, with its
// index entry.
func releaseSourceStamps(tx *bolt.Tx, sss []SourceStamp) error {
	refs := bucket(tx, bucketSourceStampRefs)
	for _, ss := range sss {
		count := int64(0)
		if v := refs.Get(itob(ss.ID)); v != nil {
			count = btoi(v)
		}
		if count > 1 {
			if err := refs.Put(itob(ss.ID), itob(count-1)); err != nil {
				return err
			}
			continue
		}
		stored, err := get[SourceStamp](tx, bucketSourceStamp, ss.ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil {
			idx := bucket(tx, bucketSourceStampByHash)
			if key := ssHash(stored); btoi(idx.Get(key)) == ss.ID {
				if err := idx.Delete(key); err != nil {
					return err
				}
			}
		}
		if err := refs.Delete(itob(ss.ID)); err != nil {
			return err
		}
		if err := bucket(tx, bucketSourceStamp).Delete(itob(ss.ID)); err != nil {
			return err
		}
	}
	return nil
}

// sourceStampRefs counts, by scanning them, the changes and buildsets that
// name each sourcestamp.
func sourceStampRefs(tx *bolt.Tx) (map[int64]int64, error) {
	counts := map[int64]int64{}
	err := bucket(tx, bucketChange).ForEach(func(k, v []byte) error {
		var c Change
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decode change %d: %w", btoi(k), err)
		}
		counts[c.SourceStampID]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = bucket(tx, bucketBuildset).ForEach(func(k, v []byte) error {
		var bs Buildset
		if err := json.Unmarshal(v, &bs); err != nil {
			return fmt.Errorf("decode buildset %d: %w", btoi(k), err)
		}
		for _, ss := range bs.SourceStamps {
			counts[ss.ID]++
		}
		return nil
	})
	return counts, err
}

// countSourceStampRefs fills the reference counts of a store made before
// them.
func countSourceStampRefs(tx *bolt.Tx) error {
	counts, err := sourceStampRefs(tx)
	if err != nil {
		return err
	}
	for id, n := range counts {
		if err := bucket(tx, bucketSourceStampRefs).Put(itob(id), itob(n)); err != nil {
			return err
		}
	}
	return nil
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
// sourcestamps of that content, that every sourcestamp's content is
// indexed, and that the reference counts are right.
func checkSourceStamps(tx *bolt.Tx) []error {
	var errs []error
	counts, err := sourceStampRefs(tx)
	if err != nil {
		errs = append(errs, err)
	}
	stored := map[int64]int64{}
	bucket(tx, bucketSourceStampRefs).ForEach(func(k, v []byte) error {
		stored[btoi(k)] = btoi(v)
		return nil
	})
	for id, n := range counts {
		if stored[id] != n {
			errs = append(errs, fmt.Errorf("sourcestamp %d: %d references counted, %d made", id, stored[id], n))
		}
		if bucket(tx, bucketSourceStamp).Get(itob(id)) == nil {
			errs = append(errs, fmt.Errorf("sourcestamp %d: named %d times, missing", id, n))
		}
	}
	for id, n := range stored {
		if _, ok := counts[id]; !ok {
			errs = append(errs, fmt.Errorf("sourcestamp %d: %d references counted, none made", id, n))
		}
	}
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
