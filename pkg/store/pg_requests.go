package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// BuildRequest is [DB.BuildRequest].
func (p *PG) BuildRequest(id int64) (BuildRequest, error) {
	br, err := pgOne[BuildRequest](p, "buildrequests", id)
	if err != nil {
		return BuildRequest{}, fmt.Errorf("get buildrequest: %w", err)
	}
	return br, nil
}

func requestWhere(f BuildRequestFilter) *pgWhere {
	w := &pgWhere{}
	if f.BuilderID != 0 {
		w.add("builder_id = $?", f.BuilderID)
	}
	if f.BuildsetID != 0 {
		w.add("buildset_id = $?", f.BuildsetID)
	}
	if f.Claimed != nil {
		w.is("claimed_by IS NOT NULL", *f.Claimed)
	}
	if f.Complete != nil {
		w.is("complete", *f.Complete)
	}
	return w
}

// BuildRequests is [DB.BuildRequests].
func (p *PG) BuildRequests(f BuildRequestFilter) ([]BuildRequest, error) {
	w := requestWhere(f)
	brs, err := pgListOf[BuildRequest](p, "SELECT data FROM buildrequests"+w.String()+pgPage(f.Desc, f.Offset, f.Limit), w.args...)
	if err != nil {
		return nil, fmt.Errorf("list buildrequests: %w", err)
	}
	return brs, nil
}

// CountBuildRequests is [DB.CountBuildRequests].
func (p *PG) CountBuildRequests(f BuildRequestFilter) (int, error) {
	w := requestWhere(f)
	n, err := p.count("SELECT count(*) FROM buildrequests"+w.String(), w.args...)
	if err != nil {
		return 0, fmt.Errorf("count buildrequests: %w", err)
	}
	return n, nil
}

// PendingBuildRequests is [DB.PendingBuildRequests]: for each builder, the
// first of its pending requests in the distributor's order
// (buildrequests_pending's), as many as its limit asks; all of them then
// in that order.
func (p *PG) PendingBuildRequests(limits map[int64]int) ([]BuildRequest, error) {
	if len(limits) == 0 {
		return nil, nil
	}
	builders := slices.Sorted(maps.Keys(limits))
	lims := make([]int64, len(builders))
	for i, b := range builders {
		lims[i] = int64(limits[b])
	}
	out, err := pgListOf[BuildRequest](p, `SELECT r.data FROM unnest($1::bigint[], $2::bigint[]) AS l (builder_id, lim)
		CROSS JOIN LATERAL (
			SELECT data FROM buildrequests
			WHERE builder_id = l.builder_id AND NOT complete AND claimed_by IS NULL
			ORDER BY priority DESC, submitted_ns, id
			LIMIT CASE WHEN l.lim > 0 THEN l.lim END
		) r`, builders, lims)
	if err != nil {
		return nil, fmt.Errorf("list pending buildrequests: %w", err)
	}
	slices.SortFunc(out, pendingOrder)
	return out, nil
}

// PendingStats is [DB.PendingStats].
func (p *PG) PendingStats() (n int, oldest time.Time, err error) {
	ctx, cancel := p.opCtx()
	defer cancel()
	var count int64
	var oldestNS *int64
	err = p.pool.QueryRow(ctx, `SELECT count(*), min(submitted_ns) FROM buildrequests
		WHERE NOT complete AND claimed_by IS NULL`).Scan(&count, &oldestNS)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count pending build requests: %w", err)
	}
	if oldestNS != nil {
		oldest = time.Unix(0, *oldestNS)
	}
	return int(count), oldest, nil
}

// ClaimBuildRequest is [DB.ClaimBuildRequest], the claim among several
// masters: a request is claimed by one master only however many try at
// once. The claim locks the request's row with SKIP LOCKED: a master that
// finds it locked (another master claiming it, or completing it) loses at
// once, with ErrClaimed, instead of waiting to learn so. The lock is FOR
// NO KEY UPDATE, the one its update takes, which does not conflict with
// the KEY SHARE lock of AddBuild naming the request: a build starting on
// a request makes no claim of it lose.
func (p *PG) ClaimBuildRequest(id, masterID int64, t time.Time) error {
	var out BuildRequest
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		var data []byte
		err := tx.QueryRow(ctx, `SELECT data FROM buildrequests WHERE id = $1 AND claimed_by IS NULL AND NOT complete
			FOR NO KEY UPDATE SKIP LOCKED`, id).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			// Claimed, complete, being written by another master, or none.
			var one int
			err := tx.QueryRow(ctx, "SELECT 1 FROM buildrequests WHERE id = $1", id).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("buildrequest %d: %w", id, ErrNotFound)
			}
			if err != nil {
				return err
			}
			return ErrClaimed
		}
		if err != nil {
			return err
		}
		var br BuildRequest
		if err := json.Unmarshal(data, &br); err != nil {
			return err
		}
		br.Claimed, br.ClaimedAt, br.ClaimedByMasterID = true, at(t), masterID
		out = br
		return pgPutRequest(ctx, tx, br)
	}, func(e emit) { e.buildRequest("claimed", out) })
	if err != nil {
		return fmt.Errorf("claim buildrequest %d: %w", id, err)
	}
	return nil
}

// UnclaimBuildRequest is [DB.UnclaimBuildRequest].
func (p *PG) UnclaimBuildRequest(id int64) error { return p.unclaimRequest(id, 0) }

// UnclaimBuildRequestOf is [DB.UnclaimBuildRequestOf]: the request's row
// lock orders it with the reaper's release of the request.
func (p *PG) UnclaimBuildRequestOf(id, masterID int64) error { return p.unclaimRequest(id, masterID) }

func (p *PG) unclaimRequest(id, masterID int64) error {
	var out BuildRequest
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgModify(ctx, tx, "buildrequests", id, pgPutRequest, func(br *BuildRequest) error {
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

// CompleteBuildRequest is [DB.CompleteBuildRequest]. The buildset's row
// is locked before the request's (parents before children, as every
// writer of both), so that of two masters completing the last two
// requests of a buildset at once, the second sees the first's and
// completes the buildset.
func (p *PG) CompleteBuildRequest(id int64, results int, t time.Time) error {
	return p.completeRequest(id, 0, results, t)
}

// CompleteBuildRequestOf is [DB.CompleteBuildRequestOf]: the request's
// row lock orders it with the reaper's release of the request.
func (p *PG) CompleteBuildRequestOf(id, masterID int64, results int, t time.Time) error {
	return p.completeRequest(id, masterID, results, t)
}

func (p *PG) completeRequest(id, masterID int64, results int, t time.Time) error {
	t = at(t)
	var c completed
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		var bsid int64
		err := tx.QueryRow(ctx, "SELECT buildset_id FROM buildrequests WHERE id = $1", id).Scan(&bsid)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("buildrequest %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		set, err := pgGet[Buildset](ctx, tx, "buildsets", bsid, true)
		if err != nil {
			return err
		}
		c, err = pgCompleteRequest(ctx, tx, set, id, masterID, results, t)
		return err
	}, func(e emit) { c.publish(e) })
	if err != nil {
		return fmt.Errorf("complete buildrequest %d: %w", id, err)
	}
	return nil
}

// pgCompleteRequest completes request id of buildset set, whose row the
// transaction has locked, and set when it was its last incomplete one.
func pgCompleteRequest(ctx context.Context, tx pgx.Tx, set Buildset, id, masterID int64, results int, t time.Time) (completed, error) {
	var c completed
	err := pgModify(ctx, tx, "buildrequests", id, pgPutRequest, func(br *BuildRequest) error {
		if err := claimedByCheck(*br, masterID); err != nil {
			return err
		}
		if br.Complete {
			return fmt.Errorf("already complete: %w", ErrClaimed)
		}
		br.Complete, br.CompleteAt, br.Results = true, t, results
		c.req = *br
		return nil
	})
	if err != nil {
		return c, err
	}
	rows, err := tx.Query(ctx, "SELECT complete, (data->>'Results')::bigint FROM buildrequests WHERE buildset_id = $1", set.ID)
	if err != nil {
		return c, err
	}
	worst, done := Skipped, true
	var complete bool
	var r int64
	_, err = pgx.ForEachRow(rows, []any{&complete, &r}, func() error {
		if !complete {
			done = false
		} else {
			worst = WorstResult(worst, int(r))
		}
		return nil
	})
	if err != nil || !done {
		return c, err
	}
	set.Complete, set.CompleteAt, set.Results = true, t, worst
	c.bs, c.bsClosed = set, true
	return c, pgPutBuildset(ctx, tx, set)
}

// pgCheckRequests verifies that each build request's columns are its
// record's (the pending order and the claims read the columns).
func pgCheckRequests(ctx context.Context, tx pgx.Tx) []error {
	var bad []int64
	err := pgScanIDs(ctx, tx, &bad, `SELECT id FROM buildrequests WHERE id <> (data->>'ID')::bigint
		OR buildset_id <> (data->>'BuildsetID')::bigint OR builder_id <> (data->>'BuilderID')::bigint
		OR priority <> (data->>'Priority')::integer OR complete <> (data->>'Complete')::boolean
		OR (claimed_by IS NOT NULL) <> (data->>'Claimed')::boolean
		OR claimed_by <> (data->>'ClaimedByMasterID')::bigint`)
	errs := []error{err}
	for _, id := range bad {
		errs = append(errs, fmt.Errorf("buildrequest %d: its columns are not its record's", id))
	}
	// submitted_ns holds nanoseconds, which SQL's timestamps do not: the
	// records are decoded to compare them.
	rows, err := tx.Query(ctx, "SELECT submitted_ns, data FROM buildrequests ORDER BY id")
	if err != nil {
		return append(errs, err)
	}
	var ns int64
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&ns, &data}, func() error {
		var br BuildRequest
		if err := json.Unmarshal(data, &br); err != nil {
			return err
		}
		if br.SubmittedAt.UnixNano() != ns {
			errs = append(errs, fmt.Errorf("buildrequest %d: submitted_ns %d, record %v", br.ID, ns, br.SubmittedAt))
		}
		return nil
	})
	return append(errs, err)
}
