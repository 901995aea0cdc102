package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketBuildCount counts the builds, the buildsets and the build
// requests, so that a page's total needs no walk of an index (a walk reads
// pages in proportion to history: bbolt's Bucket.Stats over
// build_by_builder touched 90 MB of the mapped file with 100,000 builds,
// over buildrequest 58 MB). Keys: countAll → all builds, builderid → that
// builder's, countBuildsets and countBuildsetsIncomplete → all buildsets
// and the incomplete ones, countRequests and countRequestsIncomplete →
// all requests and the incomplete ones, requestCountKey(builderid) → that
// builder's requests; values are big-endian uint64. AddBuild,
// AddBuildset, CompleteBuildRequest and the janitor's deletions keep it,
// in their own transactions; Open builds it for an older store; Check
// verifies.
const bucketBuildCount = "build_count"

var (
	countAll                 = []byte("all")
	countBuildsets           = []byte("buildsets")
	countBuildsetsIncomplete = []byte("buildsets_incomplete")
	countRequests            = []byte("requests_all")
	countRequestsIncomplete  = []byte("requests_incomplete")
	// countChanges counts the changes: CountChanges with no filter reads
	// it. Change ids may have gaps (a PostgreSQL store, copied here,
	// skips the ids of rolled-back inserts), so the last id is no count.
	countChanges = []byte("changes")
)

// requestCountKey is the key of builderID's request count: 17 bytes, so
// it never meets a builder's 8-byte build count.
func requestCountKey(builderID int64) []byte {
	return append([]byte("requests/"), itob(builderID)...)
}

// countRequest adds delta to the counts of all requests and of
// builderID's, and incompleteDelta to the incomplete ones'.
func countRequest(tx *bolt.Tx, builderID int64, delta, incompleteDelta int64) error {
	for _, c := range []struct {
		k     []byte
		delta int64
	}{{countRequests, delta}, {requestCountKey(builderID), delta}, {countRequestsIncomplete, incompleteDelta}} {
		if c.delta == 0 {
			continue
		}
		if err := addCount(tx, c.k, c.delta); err != nil {
			return err
		}
	}
	return nil
}

// addCount adds delta to the count under k.
func addCount(tx *bolt.Tx, k []byte, delta int64) error {
	b := bucket(tx, bucketBuildCount)
	n := int64(0)
	if v := b.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return b.Put(k, binary.BigEndian.AppendUint64(nil, uint64(max(n+delta, 0))))
}

// countBuild adds delta to the counts of all builds and of builderID's.
func countBuild(tx *bolt.Tx, builderID int64, delta int64) error {
	for _, k := range [][]byte{countAll, itob(builderID)} {
		if err := addCount(tx, k, delta); err != nil {
			return err
		}
	}
	return nil
}

// buildCount returns the count under key k (countAll or a builder id).
func buildCount(tx *bolt.Tx, k []byte) int {
	if v := bucket(tx, bucketBuildCount).Get(k); len(v) == 8 {
		return int(binary.BigEndian.Uint64(v))
	}
	return 0
}

// countsFromIndex computes the counts from build_by_builder,
// buildrequest_by_builder, the buildset, change and incomplete buckets: the
// walk the counts spare the readers, done by Open once and by Check.
func countsFromIndex(tx *bolt.Tx) map[string]int {
	counts := map[string]int{
		string(countAll):                 0,
		string(countBuildsets):           bucket(tx, bucketBuildset).Stats().KeyN,
		string(countBuildsetsIncomplete): bucket(tx, bucketBuildsetIncomplete).Stats().KeyN,
		string(countRequests):            0,
		string(countRequestsIncomplete):  bucket(tx, bucketRequestIncomplete).Stats().KeyN,
		string(countChanges):             bucket(tx, bucketChange).Stats().KeyN,
	}
	bucket(tx, bucketBuildByBuilder).ForEach(func(k, _ []byte) error {
		counts[string(countAll)]++
		counts[string(k[:8])]++
		return nil
	})
	bucket(tx, bucketRequestByBuilder).ForEach(func(k, _ []byte) error {
		counts[string(countRequests)]++
		counts[string(requestCountKey(btoi(k[:8])))]++
		return nil
	})
	return counts
}

// buildCounts fills the counts from the indexes; Open runs it when the
// bucket is new or lacks a count.
func buildCounts(tx *bolt.Tx) error {
	b := bucket(tx, bucketBuildCount)
	for k, n := range countsFromIndex(tx) {
		if err := b.Put([]byte(k), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
			return err
		}
	}
	return nil
}

// checkCounts verifies the counts against the indexes.
func checkCounts(tx *bolt.Tx) []error {
	var errs []error
	want := countsFromIndex(tx)
	bucket(tx, bucketBuildCount).ForEach(func(k, v []byte) error {
		if n := buildCount(tx, k); n != want[string(k)] && !(n == 0 && want[string(k)] == 0) {
			errs = append(errs, fmt.Errorf("build count %x: %d, builds indexed %d", k, n, want[string(k)]))
		}
		delete(want, string(k))
		return nil
	})
	for k, n := range want {
		if n != 0 {
			errs = append(errs, fmt.Errorf("build count %x: missing, builds indexed %d", k, n))
		}
	}
	return errs
}

// countBuildsFast answers CountBuilds from the counts when f filters by
// builder and completeness only; ok is false otherwise.
func countBuildsFast(tx *bolt.Tx, f BuildFilter) (n int, ok bool) {
	if f.BuildRequestID != 0 || f.WorkerID != 0 || f.Before != 0 {
		return 0, false
	}
	k := countAll
	if f.BuilderID != 0 {
		k = itob(f.BuilderID)
	}
	all := buildCount(tx, k)
	if f.Complete == nil {
		return all, true
	}
	// The running builds are few: count them, for the builder if any.
	running := 0
	c := bucket(tx, bucketBuildIncomplete).Cursor()
	for id, _ := c.First(); id != nil; id, _ = c.Next() {
		if f.BuilderID != 0 {
			b, err := get[Build](tx, bucketBuild, btoi(id))
			if err != nil || b.BuilderID != f.BuilderID {
				continue
			}
		}
		running++
	}
	if *f.Complete {
		return all - running, true
	}
	return running, true
}
