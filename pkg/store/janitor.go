package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// What one janitor transaction may do, so that the master's own writes
// wait for it only briefly: read janitorScan records, delete
// janitorChunks log chunks, or delete janitorBuilds builds.
const (
	janitorScan   = 1000
	janitorChunks = 2000
	janitorBuilds = 50
)

// LogDeleted is the Type a log has once its lines were deleted by
// DeleteLogsBefore, as buildbot's janitor marks them: the log stays listed
// with its NumLines, but no line can be read any more.
const LogDeleted = "d"

// DeleteLogsBefore deletes the lines of every log of the builds that
// completed before t (buildbot's logHorizon): each log becomes
// Type LogDeleted and keeps its NumLines, but its chunks are gone. It runs
// in many short transactions, so the master keeps working meanwhile, and
// an interrupted run is finished by the next one. It returns the number of
// logs it marked deleted.
func (db *DB) DeleteLogsBefore(t time.Time) (n int, err error) {
	for after := int64(0); ; {
		var logIDs []int64
		var done bool
		err := db.bolt.View(func(tx *bolt.Tx) error {
			builds, next, end, err := oldBuilds(tx, after, t, false)
			after, done = next, end
			for _, b := range builds {
				for _, stepID := range prefixIDs(tx, bucketStepByBuild, itob(b.ID), true) {
					for _, logID := range prefixIDs(tx, bucketLogByStep, itob(stepID), false) {
						if logNeedsDeleting(tx, logID) {
							logIDs = append(logIDs, logID)
						}
					}
				}
			}
			return err
		})
		if err != nil {
			return n, fmt.Errorf("delete logs before %s: %w", t.Format(time.RFC3339), err)
		}
		deleted, err := db.deleteLogs(logIDs)
		n += deleted
		if err != nil {
			return n, fmt.Errorf("delete logs before %s: %w", t.Format(time.RFC3339), err)
		}
		if done {
			return n, nil
		}
	}
}

// DeleteBuildsBefore deletes the builds that completed before t (buildbot's
// buildHorizon) with their steps, logs and properties, except the newest
// build of each builder, kept so that build numbers go on from it. A build
// request goes too once it is complete, older than t and left without
// builds, and a buildset (with its sourcestamps) once it is complete and
// left without requests. It runs in many short transactions, so the master
// keeps working meanwhile. It returns the number of builds deleted.
func (db *DB) DeleteBuildsBefore(t time.Time) (n int, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("delete builds before %s: %w", t.Format(time.RFC3339), err)
		}
	}()
	for after := int64(0); ; {
		var builds []Build
		var logIDs []int64
		var done bool
		err := db.bolt.View(func(tx *bolt.Tx) error {
			var err error
			builds, after, done, err = oldBuilds(tx, after, t, true)
			for _, b := range builds {
				for _, stepID := range prefixIDs(tx, bucketStepByBuild, itob(b.ID), true) {
					logIDs = append(logIDs, prefixIDs(tx, bucketLogByStep, itob(stepID), false)...)
				}
			}
			return err
		})
		if err != nil {
			return n, err
		}
		// Log chunks first, in their own bounded transactions; the
		// records then go a few builds at a time.
		if _, err := db.deleteLogs(logIDs); err != nil {
			return n, err
		}
		for len(builds) > 0 {
			batch := builds[:min(len(builds), janitorBuilds)]
			builds = builds[len(batch):]
			err := db.update(func(tx *bolt.Tx) error {
				for _, b := range batch {
					if err := deleteBuild(tx, b, t); err != nil {
						return fmt.Errorf("build %d: %w", b.ID, err)
					}
				}
				return nil
			}, func(e emit) {
				// Buildbot's janitor publishes nothing; live clients
				// hear of each deleted build, as it was, under its keys.
				for _, b := range batch {
					e.build("deleted", b)
				}
			})
			if err != nil {
				return n, err
			}
			n += len(batch)
		}
		if done {
			break
		}
	}
	// Requests that never got a build (skipped, cancelled) age too.
	for after := int64(0); ; {
		var ids []int64
		var done bool
		err := db.bolt.View(func(tx *bolt.Tx) error {
			c := bucket(tx, bucketRequest).Cursor()
			k, v := c.Seek(itob(after + 1))
			for i := 0; k != nil && i < janitorScan; k, v = c.Next() {
				i++
				after = btoi(k)
				var br BuildRequest
				if err := json.Unmarshal(v, &br); err != nil {
					return fmt.Errorf("decode buildrequest %d: %w", after, err)
				}
				if br.Complete && br.CompleteAt.Before(t) && len(prefixIDs(tx, bucketBuildByRequest, itob(br.ID), false)) == 0 {
					ids = append(ids, br.ID)
				}
			}
			done = k == nil
			return nil
		})
		if err != nil {
			return n, err
		}
		for len(ids) > 0 {
			batch := ids[:min(len(ids), janitorBuilds)]
			ids = ids[len(batch):]
			err := db.bolt.Update(func(tx *bolt.Tx) error {
				for _, id := range batch {
					if err := pruneRequest(tx, id, t); err != nil {
						return fmt.Errorf("buildrequest %d: %w", id, err)
					}
				}
				return nil
			})
			if err != nil {
				return n, err
			}
		}
		if done {
			return n, nil
		}
	}
}

// oldBuilds reads up to janitorScan builds with ids above after and returns
// those that completed before t, leaving out the newest of each builder
// when keepNewest. next is the last id read; done says none is left.
func oldBuilds(tx *bolt.Tx, after int64, t time.Time, keepNewest bool) (builds []Build, next int64, done bool, err error) {
	next = after
	c := bucket(tx, bucketBuild).Cursor()
	k, v := c.Seek(itob(after + 1))
	for i := 0; k != nil && i < janitorScan; k, v = c.Next() {
		i++
		next = btoi(k)
		var b Build
		if err := json.Unmarshal(v, &b); err != nil {
			return nil, next, false, fmt.Errorf("decode build %d: %w", next, err)
		}
		if !b.Complete || !b.CompleteAt.Before(t) {
			continue
		}
		if keepNewest {
			if last := lastUnder(tx, bucketBuildByBuilder, b.BuilderID); last != nil && btoi(last[8:]) == b.Number {
				continue
			}
		}
		builds = append(builds, b)
	}
	return builds, next, k == nil, nil
}

// logNeedsDeleting says whether a log has lines or chunks left to delete.
func logNeedsDeleting(tx *bolt.Tx, logID int64) bool {
	l, err := get[Log](tx, bucketLog, logID)
	if err != nil {
		return false
	}
	if l.Type != LogDeleted {
		return true
	}
	k, _ := bucket(tx, bucketLogChunk).Cursor().Seek(itob(logID))
	return k != nil && bytes.HasPrefix(k, itob(logID))
}

// deleteLogs marks the logs deleted and removes their chunks, at most
// janitorChunks per transaction. It returns how many logs it marked.
func (db *DB) deleteLogs(ids []int64) (n int, err error) {
	for len(ids) > 0 {
		var marked []Log // the logs this transaction marked deleted
		err := db.update(func(tx *bolt.Tx) error {
			budget := janitorChunks
			for len(ids) > 0 && budget > 0 {
				id := ids[0]
				l, err := get[Log](tx, bucketLog, id)
				if errors.Is(err, ErrNotFound) {
					ids = ids[1:]
					continue
				}
				if err != nil {
					return err
				}
				if l.Type != LogDeleted {
					l.Type, l.Complete = LogDeleted, true
					if err := put(tx, bucketLog, id, &l); err != nil {
						return err
					}
					marked = append(marked, l)
					n++
					budget--
				}
				removed, more, err := deletePrefix(tx, bucketLogChunk, itob(id), budget)
				if err != nil {
					return err
				}
				budget -= removed
				if !more {
					ids = ids[1:]
				}
			}
			return nil
		}, func(e emit) {
			// A log whose lines are gone is updated, Type LogDeleted.
			for _, l := range marked {
				e.log("deleted", l)
			}
		})
		if err != nil {
			return n, fmt.Errorf("delete log chunks: %w", err)
		}
	}
	return n, nil
}

// deletePrefix deletes up to limit keys under prefix in a bucket; more says
// some are left.
func deletePrefix(tx *bolt.Tx, name string, prefix []byte, limit int) (removed int, more bool, err error) {
	var keys [][]byte
	c := bucket(tx, name).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(keys) == limit {
			more = true
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := bucket(tx, name).Delete(k); err != nil {
			return 0, false, err
		}
	}
	return len(keys), more, nil
}

// deleteAll deletes every key under prefix in a bucket.
func deleteAll(tx *bolt.Tx, name string, prefix []byte) error {
	_, _, err := deletePrefix(tx, name, prefix, -1)
	return err
}

// deleteBuild deletes a build whose log chunks are gone, with its steps and
// logs, then its request if that is left without builds.
func deleteBuild(tx *bolt.Tx, b Build, t time.Time) error {
	if err := deleteDeliveries(tx, b.ID); err != nil {
		return err
	}
	for _, stepID := range prefixIDs(tx, bucketStepByBuild, itob(b.ID), true) {
		for _, logID := range prefixIDs(tx, bucketLogByStep, itob(stepID), false) {
			// Chunks left only if the log was appended to since.
			if err := deleteAll(tx, bucketLogChunk, itob(logID)); err != nil {
				return err
			}
			if err := bucket(tx, bucketLog).Delete(itob(logID)); err != nil {
				return err
			}
		}
		for _, ix := range []string{bucketLogByStep, bucketLogBySlug} {
			if err := deleteAll(tx, ix, itob(stepID)); err != nil {
				return err
			}
		}
		if err := bucket(tx, bucketStep).Delete(itob(stepID)); err != nil {
			return err
		}
	}
	for _, ix := range []string{bucketStepByBuild, bucketStepByName} {
		if err := deleteAll(tx, ix, itob(b.ID)); err != nil {
			return err
		}
	}
	for _, del := range []struct {
		bucket string
		key    []byte
	}{
		{bucketBuildByBuilder, key2(b.BuilderID, b.Number)},
		{bucketBuildByWorker, key2(b.WorkerID, b.ID)},
		{bucketBuildByRequest, key2(b.BuildRequestID, b.ID)},
		{bucketBuildIncomplete, itob(b.ID)},
		{bucketBuild, itob(b.ID)},
	} {
		if err := bucket(tx, del.bucket).Delete(del.key); err != nil {
			return err
		}
	}
	if err := countBuild(tx, b.BuilderID, -1); err != nil {
		return err
	}
	if b.BuildRequestID == 0 {
		return nil
	}
	return pruneRequest(tx, b.BuildRequestID, t)
}

// pruneRequest deletes a build request that is complete since before t and
// has no builds left, then its buildset if that is complete and left
// without requests.
func pruneRequest(tx *bolt.Tx, id int64, t time.Time) error {
	br, err := get[BuildRequest](tx, bucketRequest, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !br.Complete || !br.CompleteAt.Before(t) || len(prefixIDs(tx, bucketBuildByRequest, itob(id), false)) > 0 {
		return nil
	}
	for _, del := range []struct {
		bucket string
		key    []byte
	}{
		{bucketRequestByBuildset, key2(br.BuildsetID, id)},
		{bucketRequestByBuilder, key2(br.BuilderID, id)},
		{bucketRequestIncomplete, itob(id)},
		{bucketRequest, itob(id)},
	} {
		if err := bucket(tx, del.bucket).Delete(del.key); err != nil {
			return err
		}
	}
	// Complete (checked above), so it leaves the incomplete count alone.
	if err := countRequest(tx, br.BuilderID, -1, 0); err != nil {
		return err
	}
	bs, err := get[Buildset](tx, bucketBuildset, br.BuildsetID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bs.Complete || len(prefixIDs(tx, bucketRequestByBuildset, itob(bs.ID), false)) > 0 {
		return nil
	}
	// Its sourcestamps go with the last change or buildset naming them.
	if err := releaseSourceStamps(tx, bs.SourceStamps); err != nil {
		return err
	}
	for _, ss := range bs.SourceStamps {
		if err := bucket(tx, bucketBuildsetBySourceStamp).Delete(key2(ss.ID, bs.ID)); err != nil {
			return err
		}
	}
	if err := bucket(tx, bucketBuildsetIncomplete).Delete(itob(bs.ID)); err != nil {
		return err
	}
	if err := addCount(tx, countBuildsets, -1); err != nil {
		return err
	}
	return bucket(tx, bucketBuildset).Delete(itob(bs.ID))
}
