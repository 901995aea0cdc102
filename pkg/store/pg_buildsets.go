package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
)

// AddBuildset is [DB.AddBuildset]. Everything is checked before an id is
// taken, so a refused buildset leaves no gap in the ids (a sequence does
// not roll back).
func (p *PG) AddBuildset(nb NewBuildset) (bsid int64, brids map[int64]int64, err error) {
	if len(nb.BuilderIDs) == 0 {
		return 0, nil, errors.New("add buildset: no builders")
	}
	submitted := at(nb.SubmittedAt)
	var (
		bs       Buildset
		requests []BuildRequest
	)
	err = p.update(func(ctx context.Context, tx pgx.Tx) error {
		brids, requests = make(map[int64]int64, len(nb.BuilderIDs)), nil
		// Builders are never deleted, changes neither: what exists now
		// still does at commit.
		known, err := pgExisting(ctx, tx, "SELECT id FROM builders WHERE id = ANY($1)", nb.BuilderIDs)
		if err != nil {
			return err
		}
		for _, builderID := range nb.BuilderIDs {
			if _, ok := brids[builderID]; ok {
				return fmt.Errorf("builder %d given twice", builderID)
			}
			if !known[builderID] {
				return fmt.Errorf("builder %d: %w", builderID, ErrNotFound)
			}
			brids[builderID] = 0
		}
		if nb.ParentBuildID != 0 {
			// FOR KEY SHARE keeps the janitor from deleting it meanwhile.
			found, err := pgExisting(ctx, tx, "SELECT id FROM builds WHERE id = ANY($1) FOR KEY SHARE", []int64{nb.ParentBuildID})
			if err != nil {
				return err
			}
			if !found[nb.ParentBuildID] {
				return fmt.Errorf("parent build %d: %w", nb.ParentBuildID, ErrNotFound)
			}
		}
		if len(nb.ChangeIDs) > 0 {
			found, err := pgExisting(ctx, tx, "SELECT id FROM changes WHERE id = ANY($1)", nb.ChangeIDs)
			if err != nil {
				return err
			}
			for _, id := range nb.ChangeIDs {
				if !found[id] {
					return fmt.Errorf("change %d: %w", id, ErrNotFound)
				}
			}
		}
		ids, err := nextIDs(ctx, tx, "buildsets", 1)
		if err != nil {
			return err
		}
		bsid = ids[0]
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
		for _, ss := range nb.SourceStamps {
			ss.clean()
			if ss, err = pgFindSourceStamp(ctx, tx, ss, submitted); err != nil {
				return err
			}
			bs.SourceStamps = append(bs.SourceStamps, ss)
		}
		if err := pgPutBuildset(ctx, tx, bs); err != nil {
			return err
		}
		for _, ss := range bs.SourceStamps {
			_, err := tx.Exec(ctx, `INSERT INTO buildset_sourcestamps (buildset_id, sourcestamp_id) VALUES ($1, $2)
				ON CONFLICT DO NOTHING`, bsid, ss.ID)
			if err != nil {
				return err
			}
		}
		if ids, err = nextIDs(ctx, tx, "buildrequests", len(nb.BuilderIDs)); err != nil {
			return err
		}
		for i, builderID := range nb.BuilderIDs {
			br := BuildRequest{
				ID:          ids[i],
				BuildsetID:  bsid,
				BuilderID:   builderID,
				Priority:    nb.Priority,
				SubmittedAt: submitted,
				Results:     -1,
				WaitedFor:   nb.WaitedFor,
			}
			if err := pgPutRequest(ctx, tx, br); err != nil {
				return err
			}
			brids[builderID] = br.ID
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

// pgExisting returns which of ids a query of ids ($1) returns.
func pgExisting(ctx context.Context, tx pgTx, sql string, ids []int64) (map[int64]bool, error) {
	var found []int64
	if err := pgScanIDs(ctx, tx, &found, sql, ids); err != nil {
		return nil, err
	}
	m := make(map[int64]bool, len(found))
	for _, id := range found {
		m[id] = true
	}
	return m, nil
}

// Buildset is [DB.Buildset].
func (p *PG) Buildset(id int64) (Buildset, error) {
	bs, err := pgOne[Buildset](p, "buildsets", id)
	if err != nil {
		return Buildset{}, fmt.Errorf("get buildset: %w", err)
	}
	return bs, nil
}

// Buildsets is [DB.Buildsets].
func (p *PG) Buildsets(complete *bool) ([]Buildset, error) {
	return p.BuildsetPage(BuildsetFilter{Complete: complete})
}

func buildsetWhere(f BuildsetFilter) *pgWhere {
	w := &pgWhere{}
	if f.Complete != nil {
		w.is("complete", *f.Complete)
	}
	return w
}

// BuildsetPage is [DB.BuildsetPage].
func (p *PG) BuildsetPage(f BuildsetFilter) ([]Buildset, error) {
	w := buildsetWhere(f)
	bss, err := pgListOf[Buildset](p, "SELECT data FROM buildsets"+w.String()+pgPage(f.Desc, f.Offset, f.Limit), w.args...)
	if err != nil {
		return nil, fmt.Errorf("list buildsets: %w", err)
	}
	return bss, nil
}

// CountBuildsets is [DB.CountBuildsets].
func (p *PG) CountBuildsets(f BuildsetFilter) (int, error) {
	w := buildsetWhere(f)
	n, err := p.count("SELECT count(*) FROM buildsets"+w.String(), w.args...)
	if err != nil {
		return 0, fmt.Errorf("count buildsets: %w", err)
	}
	return n, nil
}

// BuildsetsOfSourceStamp is [DB.BuildsetsOfSourceStamp].
func (p *PG) BuildsetsOfSourceStamp(ssid int64) ([]Buildset, error) {
	bss, err := pgListOf[Buildset](p, `SELECT b.data FROM buildset_sourcestamps s JOIN buildsets b ON b.id = s.buildset_id
		WHERE s.sourcestamp_id = $1 ORDER BY b.id`, ssid)
	if err != nil {
		return nil, fmt.Errorf("buildsets of sourcestamp %d: %w", ssid, err)
	}
	return bss, nil
}

// SourceStamp is [DB.SourceStamp].
func (p *PG) SourceStamp(id int64) (SourceStamp, error) {
	ss, err := pgOne[SourceStamp](p, "sourcestamps", id)
	if err != nil {
		return SourceStamp{}, fmt.Errorf("get sourcestamp: %w", err)
	}
	return ss, nil
}

// pgCheckBuildsets verifies that each buildset's complete column is its
// record's, and that buildset_sourcestamps lists exactly the sourcestamps
// each buildset names.
func pgCheckBuildsets(ctx context.Context, tx pgx.Tx) []error {
	var errs []error
	var bad []int64
	err := pgScanIDs(ctx, tx, &bad, `SELECT id FROM buildsets WHERE id <> (data->>'ID')::bigint
		OR complete <> (data->>'Complete')::boolean`)
	errs = append(errs, err)
	for _, id := range bad {
		errs = append(errs, fmt.Errorf("buildset %d: its columns are not its record's", id))
	}
	bss, err := pgList[Buildset](ctx, tx, "SELECT data FROM buildsets ORDER BY id")
	errs = append(errs, err)
	want := map[[2]int64]bool{} // buildset, sourcestamp
	for _, bs := range bss {
		for _, ss := range bs.SourceStamps {
			want[[2]int64{bs.ID, ss.ID}] = true
		}
	}
	rows, err := tx.Query(ctx, "SELECT buildset_id, sourcestamp_id FROM buildset_sourcestamps")
	if err != nil {
		return append(errs, err)
	}
	pairs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]int64, error) {
		var k [2]int64
		return k, r.Scan(&k[0], &k[1])
	})
	errs = append(errs, err)
	for _, k := range pairs {
		if !want[k] {
			errs = append(errs, fmt.Errorf("buildset_sourcestamps: buildset %d does not name sourcestamp %d", k[0], k[1]))
		}
		delete(want, k)
	}
	for k := range want {
		errs = append(errs, fmt.Errorf("buildset_sourcestamps: sourcestamp %d of buildset %d missing", k[1], k[0]))
	}
	return errs
}
