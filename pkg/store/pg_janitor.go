package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeleteLogsBefore is [DB.DeleteLogsBefore]. It repeats: list the next
// janitorChunks logs (by id) of builds completed before t that still have
// lines to delete, then delete them in short transactions; until none is
// left.
func (p *PG) DeleteLogsBefore(t time.Time) (n int, err error) {
	for after := int64(0); ; {
		var ids []int64
		var read int
		err := p.pgOne(func(ctx context.Context, q pgTx) error {
			// complete_at is to the microsecond; the build's own
			// CompleteAt decides, below.
			rows, err := q.Query(ctx, `SELECT l.id, b.data FROM builds b
				JOIN steps s ON s.build_id = b.id JOIN logs l ON l.step_id = s.id
				WHERE b.complete AND b.complete_at <= $1 AND l.id > $2
					AND (l.type <> 'd' OR EXISTS (SELECT 1 FROM logchunks c WHERE c.log_id = l.id))
				ORDER BY l.id LIMIT $3`, t, after, janitorChunks)
			if err != nil {
				return err
			}
			ids, read = nil, 0
			for rows.Next() {
				var b Build
				if err := rows.Scan(&after, &b); err != nil {
					rows.Close()
					return err
				}
				read++
				if b.CompleteAt.Before(t) {
					ids = append(ids, after)
				}
			}
			return rows.Err()
		})
		if err != nil {
			return n, fmt.Errorf("delete logs before %s: %w", t.Format(time.RFC3339), err)
		}
		deleted, err := p.deleteLogs(ids)
		n += deleted
		if err != nil {
			return n, fmt.Errorf("delete logs before %s: %w", t.Format(time.RFC3339), err)
		}
		if read < janitorChunks {
			return n, nil
		}
	}
}

// deleteLogs is [DB.deleteLogs]: it marks the logs deleted and removes
// their chunks, at most janitorChunks per transaction.
func (p *PG) deleteLogs(ids []int64) (n int, err error) {
	for len(ids) > 0 {
		var marked []Log
		var rest []int64
		err := p.update(func(ctx context.Context, tx pgx.Tx) error {
			marked, rest = nil, ids
			budget := janitorChunks
			for len(rest) > 0 && budget > 0 {
				id := rest[0]
				l, err := pgGet[Log](ctx, tx, "logs", id, true)
				if errors.Is(err, ErrNotFound) {
					rest = rest[1:]
					continue
				}
				if err != nil {
					return err
				}
				if l.Type != LogDeleted {
					l.Type, l.Complete = LogDeleted, true
					if err := pgPutLog(ctx, tx, l); err != nil {
						return err
					}
					marked = append(marked, l)
					budget--
				}
				tag, err := tx.Exec(ctx, `DELETE FROM logchunks WHERE log_id = $1 AND first_line IN
					(SELECT first_line FROM logchunks WHERE log_id = $1 ORDER BY first_line LIMIT $2)`, id, budget)
				if err != nil {
					return err
				}
				// Fewer than the budget: none is left. Otherwise the
				// next transaction goes on with this log.
				if budget -= int(tag.RowsAffected()); budget > 0 {
					rest = rest[1:]
				}
			}
			return nil
		}, func(e emit) {
			for _, l := range marked {
				e.log("deleted", l)
			}
		})
		if err != nil {
			return n, fmt.Errorf("delete log chunks: %w", err)
		}
		n += len(marked)
		ids = rest
	}
	return n, nil
}

// DeleteBuildsBefore is [DB.DeleteBuildsBefore]. Deleting a build's row
// deletes its steps, logs, chunks and resume point (ON DELETE CASCADE);
// its chunks go first, in their own bounded transactions.
func (p *PG) DeleteBuildsBefore(t time.Time) (n int, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("delete builds before %s: %w", t.Format(time.RFC3339), err)
		}
	}()
	for after := int64(0); ; {
		var builds []Build
		var logIDs []int64
		var done bool
		err := p.read(func(ctx context.Context, tx pgx.Tx) error {
			// Not the newest of its builder, kept so that its numbers
			// are seen to go on from it.
			rows, err := tx.Query(ctx, `SELECT id, data FROM builds b
				WHERE id > $1 AND complete AND complete_at <= $2
					AND number < (SELECT max(number) FROM builds n WHERE n.builder_id = b.builder_id)
				ORDER BY id LIMIT $3`, after, t, janitorScan)
			if err != nil {
				return err
			}
			builds = nil
			read := 0
			for rows.Next() {
				var b Build
				if err := rows.Scan(&after, &b); err != nil {
					rows.Close()
					return err
				}
				read++
				if b.CompleteAt.Before(t) {
					builds = append(builds, b)
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
			done = read < janitorScan
			ids := make([]int64, len(builds))
			for i, b := range builds {
				ids[i] = b.ID
			}
			rows, err = tx.Query(ctx, `SELECT l.id FROM logs l JOIN steps s ON s.id = l.step_id
				WHERE s.build_id = ANY($1) ORDER BY l.id`, ids)
			if err != nil {
				return err
			}
			logIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			return err
		})
		if err != nil {
			return n, err
		}
		if _, err := p.deleteLogs(logIDs); err != nil {
			return n, err
		}
		for len(builds) > 0 {
			batch := builds[:min(len(builds), janitorBuilds)]
			builds = builds[len(batch):]
			var deleted []Build
			err := p.update(func(ctx context.Context, tx pgx.Tx) error {
				deleted = nil
				for _, b := range batch {
					ok, err := pgDeleteBuild(ctx, tx, b.ID, t)
					if err != nil {
						return fmt.Errorf("build %d: %w", b.ID, err)
					}
					if ok {
						deleted = append(deleted, b)
					}
				}
				return nil
			}, func(e emit) {
				for _, b := range deleted {
					e.build("deleted", b)
				}
			})
			if err != nil {
				return n, err
			}
			n += len(deleted)
		}
		if done {
			break
		}
	}
	// Requests that never got a build (skipped, cancelled) age too.
	for after := int64(0); ; {
		var ids []int64
		var done bool
		err := p.pgOne(func(ctx context.Context, q pgTx) error {
			rows, err := q.Query(ctx, `SELECT id, data FROM buildrequests r
				WHERE id > $1 AND complete AND NOT EXISTS (SELECT 1 FROM builds b WHERE b.buildrequest_id = r.id)
				ORDER BY id LIMIT $2`, after, janitorScan)
			if err != nil {
				return err
			}
			ids = nil
			read := 0
			for rows.Next() {
				var br BuildRequest
				if err := rows.Scan(&after, &br); err != nil {
					rows.Close()
					return err
				}
				read++
				if br.CompleteAt.Before(t) {
					ids = append(ids, br.ID)
				}
			}
			done = read < janitorScan
			return rows.Err()
		})
		if err != nil {
			return n, err
		}
		for len(ids) > 0 {
			batch := ids[:min(len(ids), janitorBuilds)]
			ids = ids[len(batch):]
			err := p.update(func(ctx context.Context, tx pgx.Tx) error {
				for _, id := range batch {
					if err := pgPruneRequest(ctx, tx, id, t); err != nil {
						return fmt.Errorf("buildrequest %d: %w", id, err)
					}
				}
				return nil
			}, nil)
			if err != nil {
				return n, err
			}
		}
		if done {
			return n, nil
		}
	}
}

// pgDeleteBuild deletes build id, locked, with its deliveries and (by
// cascade) its steps, logs, chunks and resume point, then its request if
// that is left without builds. A build gone already is no error (false).
func pgDeleteBuild(ctx context.Context, tx pgx.Tx, id int64, t time.Time) (bool, error) {
	b, err := pgGet[Build](ctx, tx, "builds", id, true)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM deliveries WHERE build_id = $1", id); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM builds WHERE id = $1", id); err != nil {
		return false, err
	}
	if b.BuildRequestID == 0 {
		return true, nil
	}
	return true, pgPruneRequest(ctx, tx, b.BuildRequestID, t)
}

// pgPruneRequest is pruneRequest on PostgreSQL: it deletes a build request
// that is complete since before t and has no builds left, then its
// buildset if that is complete and left without requests, releasing its
// sourcestamps. Buildset, then request, then sourcestamps are locked, in
// that order.
func pgPruneRequest(ctx context.Context, tx pgx.Tx, id int64, t time.Time) error {
	br, err := pgGet[BuildRequest](ctx, tx, "buildrequests", id, false)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	bs, err := pgGet[Buildset](ctx, tx, "buildsets", br.BuildsetID, true)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	br, err = pgGet[BuildRequest](ctx, tx, "buildrequests", id, true)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var builds bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM builds WHERE buildrequest_id = $1)", id).Scan(&builds); err != nil {
		return err
	}
	if !br.Complete || !br.CompleteAt.Before(t) || builds {
		return nil
	}
	if _, err := tx.Exec(ctx, "DELETE FROM buildrequests WHERE id = $1", id); err != nil {
		return err
	}
	var requests bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM buildrequests WHERE buildset_id = $1)", bs.ID).Scan(&requests); err != nil {
		return err
	}
	if !bs.Complete || requests {
		return nil
	}
	// Its buildset_sourcestamps rows go by cascade.
	if _, err := tx.Exec(ctx, "DELETE FROM buildsets WHERE id = $1", bs.ID); err != nil {
		return err
	}
	// Its sourcestamps go with the last change or buildset naming them.
	for _, ss := range bs.SourceStamps {
		var refs int64
		err := tx.QueryRow(ctx, "UPDATE sourcestamps SET refs = refs - 1 WHERE id = $1 RETURNING refs", ss.ID).Scan(&refs)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		if refs < 1 {
			if _, err := tx.Exec(ctx, "DELETE FROM sourcestamps WHERE id = $1", ss.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
