package store

import (
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

// AddBuildset stores a buildset, its sourcestamps (with new ids) and one
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
		}
		for _, id := range nb.ChangeIDs {
			if bucket(tx, bucketChange).Get(itob(id)) == nil {
				return fmt.Errorf("change %d: %w", id, ErrNotFound)
			}
		}
		for _, ss := range nb.SourceStamps {
			if ss.ID, err = nextID(tx, bucketSourceStamp); err != nil {
				return err
			}
			ss.CreatedAt = submitted
			if err := put(tx, bucketSourceStamp, ss.ID, &ss); err != nil {
				return err
			}
			bs.SourceStamps = append(bs.SourceStamps, ss)
		}
		if err := put(tx, bucketBuildset, bsid, &bs); err != nil {
			return err
		}
		if err := bucket(tx, bucketBuildsetIncomplete).Put(itob(bsid), nil); err != nil {
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

// BuildRequests lists the build requests that match f, by id.
func (db *DB) BuildRequests(f BuildRequestFilter) ([]BuildRequest, error) {
	var out []BuildRequest
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var all []BuildRequest
		var err error
		switch {
		case f.BuildsetID != 0:
			all, err = getAll[BuildRequest](tx, bucketRequest, prefixIDs(tx, bucketRequestByBuildset, itob(f.BuildsetID), false))
		case f.BuilderID != 0:
			all, err = getAll[BuildRequest](tx, bucketRequest, prefixIDs(tx, bucketRequestByBuilder, itob(f.BuilderID), false))
		case f.Complete != nil && !*f.Complete && f.Claimed != nil && !*f.Claimed:
			all, err = getAll[BuildRequest](tx, bucketRequest, pendingIDs(tx))
		case f.Complete != nil && !*f.Complete:
			all, err = getAll[BuildRequest](tx, bucketRequest, prefixIDs(tx, bucketRequestIncomplete, nil, false))
		default:
			all, err = list[BuildRequest](tx, bucketRequest)
		}
		for _, br := range all {
			if f.BuildsetID != 0 && br.BuildsetID != f.BuildsetID ||
				f.BuilderID != 0 && br.BuilderID != f.BuilderID ||
				f.Claimed != nil && br.Claimed != *f.Claimed ||
				f.Complete != nil && br.Complete != *f.Complete {
				continue
			}
			out = append(out, br)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list buildrequests: %w", err)
	}
	return out, nil
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
func (db *DB) UnclaimBuildRequest(id int64) error {
	var out BuildRequest
	err := db.batch(func(tx *bolt.Tx) error {
		return modify(tx, bucketRequest, id, func(br *BuildRequest) error {
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
