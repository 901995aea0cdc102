package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// resultRank ranks results from best to worst, as buildbot's worst_status.
func resultRank(r int) int {
	switch r {
	case Skipped:
		return 0
	case Success:
		return 1
	case Warnings:
		return 2
	case Failure:
		return 3
	case Exception:
		return 4
	case Retry:
		return 5
	case Cancelled:
		return 6
	}
	return 7 + r // unknown codes are worse than any known one
}

// WorstResult returns the worse of two results in buildbot's order:
// Skipped < Success < Warnings < Failure < Exception < Retry < Cancelled.
func WorstResult(a, b int) int {
	if resultRank(b) > resultRank(a) {
		return b
	}
	return a
}

// AddBuildset stores a buildset, its sourcestamps (those stored with the
// same content, else new ones: see findSourceStamp) and one
// build request per builder (Results -1). It returns the buildset's id and
// the id of the request made for each builder.
func (db *DB) AddBuildset(nb NewBuildset) (bsid int64, brids map[int64]int64, err error) {
	if len(nb.BuilderIDs) == 0 {
		return 0, nil, errors.New("add buildset: no builders")
	}
	submitted := at(nb.SubmittedAt)
	var (
		bs       Buildset
		requests []BuildRequest
	)
	err = db.batch(func(tx *bolt.Tx) error {
		brids, requests = make(map[int64]int64, len(nb.BuilderIDs)), nil
		for _, builderID := range nb.BuilderIDs {
			if _, ok := brids[builderID]; ok {
				return fmt.Errorf("builder %d given twice", builderID)
			}
			if bucket(tx, bucketBuilder).Get(itob(builderID)) == nil {
				return fmt.Errorf("builder %d: %w", builderID, ErrNotFound)
			}
			brids[builderID] = 0
		}
		if nb.ParentBuildID != 0 && bucket(tx, bucketBuild).Get(itob(nb.ParentBuildID)) == nil {
			return fmt.Errorf("parent build %d: %w", nb.ParentBuildID, ErrNotFound)
		}
		var err error
		if bsid, err = nextID(tx, bucketBuildset); err != nil {
			return err
		}
		bs = Buildset{
			ID:            bsid,
			ExternalID:    nb.ExternalID,
			Reason:        nb.Reason,
			SubmittedAt:   submitted,
			Results:       -1,
			ParentBuildID: nb.ParentBuildID,
			Properties:    maps.Clone(nb.Properties),
			SchedulerName: nb.SchedulerName,
			ChangeIDs:     slices.Clone(nb.ChangeIDs),

			RebuiltBuildID: nb.RebuiltBuildID,
		}
		for _, id := range nb.ChangeIDs {
			if bucket(tx, bucketChange).Get(itob(id)) == nil {
				return fmt.Errorf("change %d: %w", id, ErrNotFound)
			}
		}
		for _, ss := range nb.SourceStamps {
			ss.clean()
			if ss, err = findSourceStamp(tx, ss, submitted); err != nil {
				return err
			}
			bs.SourceStamps = append(bs.SourceStamps, ss)
			if err := bucket(tx, bucketBuildsetBySourceStamp).Put(key2(ss.ID, bsid), nil); err != nil {
				return err
			}
		}
		if err := put(tx, bucketBuildset, bsid, &bs); err != nil {
			return err
		}
		if err := bucket(tx, bucketBuildsetIncomplete).Put(itob(bsid), nil); err != nil {
			return err
		}
		if err := addCount(tx, countBuildsets, 1); err != nil {
			return err
		}
		if err := addCount(tx, countBuildsetsIncomplete, 1); err != nil {
			return err
		}
		for _, builderID := range nb.BuilderIDs {
			id, err := nextID(tx, bucketRequest)
			if err != nil {
				return err
			}
			br := BuildRequest{
				ID:          id,
				BuildsetID:  bsid,
				BuilderID:   builderID,
				Priority:    nb.Priority,
				SubmittedAt: submitted,
				Results:     -1,
				WaitedFor:   nb.WaitedFor,
			}
			if err := put(tx, bucketRequest, id, &br); err != nil {
				return err
			}
			for _, ix := range []struct {
				index string
				key   []byte
			}{
				{bucketRequestByBuildset, key2(bsid, id)},
				{bucketRequestByBuilder, key2(builderID, id)},
				{bucketRequestIncomplete, itob(id)},
			} {
				if err := bucket(tx, ix.index).Put(ix.key, nil); err != nil {
					return err
				}
			}
			if err := countRequest(tx, builderID, 1, 1); err != nil {
				return err
			}
			brids[builderID] = id
			requests = append(requests, br)
		}
		return nil
	}, func(e emit) {
		// buildbot announces the requests, then their buildset.
		for _, br := range requests {
			e.buildRequest("new", br)
		}
		e.buildset("new", bs)
	})
	if err != nil {
		return 0, nil, fmt.Errorf("add buildset: %w", err)
	}
	return bsid, brids, nil
}

// Buildset returns the buildset with the given id.
func (db *DB) Buildset(id int64) (Buildset, error) {
	var bs Buildset
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		bs, err = get[Buildset](tx, bucketBuildset, id)
		return err
	})
	if err != nil {
		return Buildset{}, fmt.Errorf("get buildset: %w", err)
	}
	return bs, nil
}

// Buildsets lists the buildsets by id: all of them when complete is nil,
// else those whose Complete is *complete.
func (db *DB) Buildsets(complete *bool) ([]Buildset, error) {
	var out []Buildset
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var all []Buildset
		var err error
		if complete != nil && !*complete {
			all, err = getAll[Buildset](tx, bucketBuildset, prefixIDs(tx, bucketBuildsetIncomplete, nil, false))
		} else {
			all, err = list[Buildset](tx, bucketBuildset)
		}
		for _, bs := range all {
			if complete == nil || bs.Complete == *complete {
				out = append(out, bs)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list buildsets: %w", err)
	}
	return out, nil
}

// BuildsetFilter selects a page of buildsets.
type BuildsetFilter struct {
	Complete *bool // nil matches all
	// Desc lists the newest (highest id) first. Offset skips that many
	// matches; Limit returns at most that many (zero means no limit).
	Desc          bool
	Offset, Limit int
}

// BuildsetPage lists the buildsets that match f, by id (newest first when
// f.Desc), skipping f.Offset and returning at most f.Limit; it decodes only
// those it returns.
func (db *DB) BuildsetPage(f BuildsetFilter) ([]Buildset, error) {
	var out []Buildset
	err := db.bolt.View(func(tx *bolt.Tx) error {
		out = nil
		index := bucketBuildset
		if f.Complete != nil && !*f.Complete {
			index = bucketBuildsetIncomplete
		}
		incomplete := bucket(tx, bucketBuildsetIncomplete)
		c := bucket(tx, index).Cursor()
		k, _ := c.First()
		if f.Desc {
			k, _ = c.Last()
		}
		skip := f.Offset
		for ; k != nil; k, _ = step(c, f.Desc) {
			if f.Complete != nil && *f.Complete && incomplete.Get(k) != nil {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			bs, err := get[Buildset](tx, bucketBuildset, btoi(k))
			if err != nil {
				return err
			}
			out = append(out, bs)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list buildsets: %w", err)
	}
	return out, nil
}

// CountBuildsets is how many buildsets match f's Complete, from the
// counts: it reads no buildset.
func (db *DB) CountBuildsets(f BuildsetFilter) (int, error) {
	var n int
	err := db.bolt.View(func(tx *bolt.Tx) error {
		all, incomplete := buildCount(tx, countBuildsets), buildCount(tx, countBuildsetsIncomplete)
		switch {
		case f.Complete == nil:
			n = all
		case *f.Complete:
			n = all - incomplete
		default:
			n = incomplete
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count buildsets: %w", err)
	}
	return n, nil
}

// SourceStamp returns the sourcestamp with the given id.
func (db *DB) SourceStamp(id int64) (SourceStamp, error) {
	var ss SourceStamp
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		ss, err = get[SourceStamp](tx, bucketSourceStamp, id)
		return err
	})
	if err != nil {
		return SourceStamp{}, fmt.Errorf("get sourcestamp: %w", err)
	}
	return ss, nil
}

// BuildRequest returns the build request with the given id.
func (db *DB) BuildRequest(id int64) (BuildRequest, error) {
	var br BuildRequest
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		br, err = get[BuildRequest](tx, bucketRequest, id)
		return err
	})
	if err != nil {
		return BuildRequest{}, fmt.Errorf("get buildrequest: %w", err)
	}
	return br, nil
}

// BuildRequests lists the build requests that match f, by id (newest
// first when f.Desc), skipping f.Offset of them and returning at most
// f.Limit. It walks the narrowest index f names and decodes only the
// requests it returns, and the complete ones it must read to check
// f.Claimed.
func (db *DB) BuildRequests(f BuildRequestFilter) ([]BuildRequest, error) {
	var out []BuildRequest
	err := db.bolt.View(func(tx *bolt.Tx) error {
		out = nil
		skip := f.Offset
		var err error
		eachRequest(tx, f, func(id int64, br *BuildRequest) bool {
			if skip > 0 {
				skip--
				return true
			}
			if br == nil {
				var v BuildRequest
				if v, err = get[BuildRequest](tx, bucketRequest, id); err != nil {
					return false
				}
				br = &v
			}
			out = append(out, *br)
			return f.Limit <= 0 || len(out) < f.Limit
		}, &err)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list buildrequests: %w", err)
	}
	return out, nil
}

// CountBuildRequests is how many build requests match f's filters (not its
// Offset and Limit). Without a buildset or claimed filter it reads the
// counts, and walks at most the incomplete requests (few: the pending
// work) for a builder's complete or incomplete ones; else it walks the
// indexes, and reads records only when f.Claimed is set.
func (db *DB) CountBuildRequests(f BuildRequestFilter) (int, error) {
	var n int
	err := db.bolt.View(func(tx *bolt.Tx) error {
		n = 0
		if f.BuildsetID == 0 && f.Claimed == nil {
			all, incomplete := buildCount(tx, countRequests), buildCount(tx, countRequestsIncomplete)
			if f.BuilderID != 0 {
				all, incomplete = buildCount(tx, requestCountKey(f.BuilderID)), 0
				if f.Complete != nil {
					var err error
					eachRequest(tx, BuildRequestFilter{BuilderID: f.BuilderID, Complete: new(false)},
						func(int64, *BuildRequest) bool { incomplete++; return true }, &err)
					if err != nil {
						return err
					}
				}
			}
			switch {
			case f.Complete == nil:
				n = all
			case *f.Complete:
				n = all - incomplete
			default:
				n = incomplete
			}
			return nil
		}
		var err error
		eachRequest(tx, f, func(int64, *BuildRequest) bool { n++; return true }, &err)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("count buildrequests: %w", err)
	}
	return n, nil
}

// eachRequest calls fn with the id of each build request that matches f's
// filters (not its Offset and Limit), by id, newest first when f.Desc,
// until fn returns false. It walks one index, the narrowest f names, and
// checks the other filters in their own indexes; only f.Claimed on a
// complete request needs the record, which fn then gets (else nil). A decoding error stops the walk
// and is stored in *errp.
func eachRequest(tx *bolt.Tx, f BuildRequestFilter, fn func(id int64, br *BuildRequest) bool, errp *error) {
	var (
		index  string
		prefix []byte
	)
	// A buildset's requests are few, and so are the incomplete ones (the
	// pending work); a builder's grow with history.
	switch {
	case f.BuildsetID != 0:
		index, prefix = bucketRequestByBuildset, itob(f.BuildsetID)
	case f.Complete != nil && !*f.Complete && f.Claimed != nil && *f.Claimed:
		index = bucketRequestClaimed
	case f.Complete != nil && !*f.Complete:
		index = bucketRequestIncomplete
	case f.BuilderID != 0:
		index, prefix = bucketRequestByBuilder, itob(f.BuilderID)
	default:
		index = bucketRequest
	}
	byBuildset, byBuilder := bucket(tx, bucketRequestByBuildset), bucket(tx, bucketRequestByBuilder)
	incomplete, claimed := bucket(tx, bucketRequestIncomplete), bucket(tx, bucketRequestClaimed)
	c := bucket(tx, index).Cursor()
	var k []byte
	switch {
	case !f.Desc:
		k, _ = c.Seek(prefix)
	case prefix == nil:
		k, _ = c.Last()
	default:
		if k, _ = c.Seek(itob(btoi(prefix) + 1)); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = step(c, f.Desc) {
		id := btoi(k[len(k)-8:])
		switch {
		case f.BuildsetID != 0 && index != bucketRequestByBuildset && byBuildset.Get(key2(f.BuildsetID, id)) == nil,
			f.BuilderID != 0 && index != bucketRequestByBuilder && byBuilder.Get(key2(f.BuilderID, id)) == nil,
			f.Complete != nil && index != bucketRequestIncomplete && index != bucketRequestClaimed && (incomplete.Get(itob(id)) == nil) != *f.Complete:
			continue
		}
		var br *BuildRequest
		switch {
		case f.Claimed == nil || index == bucketRequestClaimed:
		case incomplete.Get(itob(id)) != nil:
			// An incomplete request is claimed when it is indexed so.
			if (claimed.Get(itob(id)) != nil) != *f.Claimed {
				continue
			}
		default:
			v, err := get[BuildRequest](tx, bucketRequest, id)
			if err != nil {
				*errp = err
				return
			}
			if v.Claimed != *f.Claimed {
				continue
			}
			br = &v
		}
		if !fn(id, br) {
			return
		}
	}
}

// ClaimBuildRequest marks a request claimed by masterID at t (zero means
// now). It returns an error wrapping ErrClaimed if the request is already
// claimed or complete.
func (db *DB) ClaimBuildRequest(id, masterID int64, t time.Time) error {
	var out BuildRequest
	err := db.batch(func(tx *bolt.Tx) error {
		return modify(tx, bucketRequest, id, func(br *BuildRequest) error {
			if br.Claimed || br.Complete {
				return ErrClaimed
			}
			br.Claimed, br.ClaimedAt, br.ClaimedByMasterID = true, at(t), masterID
			out = *br
			return nil
		})
	}, func(e emit) { e.buildRequest("claimed", out) })
	if err != nil {
		return fmt.Errorf("claim buildrequest %d: %w", id, err)
	}
	return nil
}

func unclaim(br *BuildRequest) {
	br.Claimed, br.ClaimedAt, br.ClaimedByMasterID = false, time.Time{}, 0
}

// UnclaimBuildRequest releases the claim on a request so that it can run
// again. It does nothing to a complete request.
func (db *DB) UnclaimBuildRequest(id int64) error { return db.unclaimRequest(id, 0) }

// UnclaimBuildRequestOf is UnclaimBuildRequest for the master masterID's
// build: it returns an error wrapping ErrClaimed, changing nothing, unless
// masterID still claims the request (another master that presumed it dead
// may have released it, and run it again, meanwhile).
func (db *DB) UnclaimBuildRequestOf(id, masterID int64) error { return db.unclaimRequest(id, masterID) }

// unclaimRequest is UnclaimBuildRequest, or UnclaimBuildRequestOf when
// masterID is not 0.
func (db *DB) unclaimRequest(id, masterID int64) error {
	var out BuildRequest
	err := db.batch(func(tx *bolt.Tx) error {
		return modify(tx, bucketRequest, id, func(br *BuildRequest) error {
			if err := claimedByCheck(*br, masterID); err != nil {
				return err
			}
			if !br.Complete {
				unclaim(br)
			}
			out = *br
			return nil
		})
	}, func(e emit) {
		if !out.Complete {
			e.buildRequest("unclaimed", out)
		}
	})
	if err != nil {
		return fmt.Errorf("unclaim buildrequest %d: %w", id, err)
	}
	return nil
}

// CompleteBuildRequest marks a request complete with results at t (zero
// means now). A request need not be claimed to complete (a cancelled one is
// not); completing it twice returns an error wrapping ErrClaimed. When every
// request of its buildset is complete, the buildset completes too, with the
// worst of their results.
func (db *DB) CompleteBuildRequest(id int64, results int, t time.Time) error {
	return db.completeRequest(id, 0, results, t)
}

// CompleteBuildRequestOf is CompleteBuildRequest for the master masterID's
// build: it returns an error wrapping ErrClaimed, changing nothing, unless
// masterID still claims the request.
func (db *DB) CompleteBuildRequestOf(id, masterID int64, results int, t time.Time) error {
	return db.completeRequest(id, masterID, results, t)
}

// claimedByCheck returns an error wrapping ErrClaimed when masterID is not
// 0 and does not claim br (incomplete).
func claimedByCheck(br BuildRequest, masterID int64) error {
	if masterID == 0 || (br.Claimed && br.ClaimedByMasterID == masterID && !br.Complete) {
		return nil
	}
	if br.Complete {
		return fmt.Errorf("complete already, not claimed by master %d: %w", masterID, ErrClaimed)
	}
	if br.Claimed {
		return fmt.Errorf("claimed by master %d, not %d: %w", br.ClaimedByMasterID, masterID, ErrClaimed)
	}
	return fmt.Errorf("not claimed by master %d: %w", masterID, ErrClaimed)
}

// completeRequest is CompleteBuildRequest, or CompleteBuildRequestOf when
// masterID is not 0.
func (db *DB) completeRequest(id, masterID int64, results int, t time.Time) error {
	t = at(t)
	var (
		req      BuildRequest
		bs       Buildset // set when the buildset completed
		bsClosed bool
	)
	err := db.batch(func(tx *bolt.Tx) error {
		bsClosed = false
		var bsid int64
		err := modify(tx, bucketRequest, id, func(br *BuildRequest) error {
			if err := claimedByCheck(*br, masterID); err != nil {
				return err
			}
			if br.Complete {
				return fmt.Errorf("already complete: %w", ErrClaimed)
			}
			br.Complete, br.CompleteAt, br.Results = true, t, results
			bsid = br.BuildsetID
			req = *br
			return nil
		})
		if err != nil {
			return err
		}
		if err := bucket(tx, bucketRequestIncomplete).Delete(itob(id)); err != nil {
			return err
		}
		if err := countRequest(tx, req.BuilderID, 0, -1); err != nil {
			return err
		}
		worst, done := Skipped, true
		for _, brid := range prefixIDs(tx, bucketRequestByBuildset, itob(bsid), false) {
			br, err := get[BuildRequest](tx, bucketRequest, brid)
			if err != nil {
				return err
			}
			if !br.Complete {
				done = false
				break
			}
			worst = WorstResult(worst, br.Results)
		}
		if !done {
			return nil
		}
		err = modify(tx, bucketBuildset, bsid, func(b *Buildset) error {
			b.Complete, b.CompleteAt, b.Results = true, t, worst
			bs, bsClosed = *b, true
			return nil
		})
		if err != nil {
			return err
		}
		if err := addCount(tx, countBuildsetsIncomplete, -1); err != nil {
			return err
		}
		return bucket(tx, bucketBuildsetIncomplete).Delete(itob(bsid))
	}, func(e emit) {
		e.buildRequest("complete", req)
		if bsClosed {
			e.buildset("complete", bs)
		}
	})
	if err != nil {
		return fmt.Errorf("complete buildrequest %d: %w", id, err)
	}
	return nil
}
