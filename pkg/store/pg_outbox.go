package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgOutboxLock is the advisory lock key (beside pgLockSpace's) that every
// transaction adding outbox entries takes, until it ends, before it takes
// their seqs: so seqs are taken and committed in one order, and a reporter
// reading past seq N never misses an entry N-1 that commits later. Taken
// last, after the transaction's row locks, it is held only while the
// entries are written and committed.
const pgOutboxLock = 0x67626203

// pgLockOutbox takes the outbox lock until tx ends.
func pgLockOutbox(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(pgOutboxLock))
	return err
}

// pgAddOutbox writes es as the next outbox entries, in order.
func pgAddOutbox(ctx context.Context, tx pgx.Tx, es ...OutboxEntry) error {
	if err := pgLockOutbox(ctx, tx); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, "SELECT nextval('outbox_seq_seq') FROM generate_series(1, $1)", len(es))
	if err != nil {
		return err
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	for i, e := range es {
		e.Seq = seqs[i]
		_, err := tx.Exec(ctx, "INSERT INTO outbox (seq, event, build_id, data) VALUES ($1, $2, $3, $4)",
			e.Seq, e.Event, e.BuildID, pgJSON(e))
		if err != nil {
			return err
		}
	}
	return nil
}

// outboxEventKey says whether an event's key is of a write that adds an
// outbox entry when the outbox is on: a build's start ("builds/N/new") or
// end ("builds/N/finished").
func outboxEventKey(key string) bool {
	rest, ok := strings.CutPrefix(key, "builds/")
	if !ok {
		return false
	}
	_, ev, ok := strings.Cut(rest, "/")
	return ok && (ev == "new" || ev == "finished")
}

// pgOutboxEnd is the seq of the last outbox entry ever added (0 for
// none), as bbolt's bucket sequence; with the outbox lock held, every
// entry up to it has committed or never will.
func pgOutboxEnd(ctx context.Context, tx pgx.Tx) (int64, error) {
	var seq int64
	err := tx.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_seq_seq").Scan(&seq)
	return seq, err
}

// AddWorkerMissing is [DB.AddWorkerMissing].
func (p *PG) AddWorkerMissing(name string, lastSeen time.Time) error {
	if !p.outboxOn() {
		return nil
	}
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgAddOutbox(ctx, tx, OutboxEntry{Event: OutboxWorkerMissing, Worker: name, At: at(time.Time{}), LastSeen: lastSeen.UTC()})
	}, nil)
	if err != nil {
		return fmt.Errorf("add worker missing %s: %w", name, err)
	}
	p.notifyOutbox()
	return nil
}

// OutboxAfter is [DB.OutboxAfter].
func (p *PG) OutboxAfter(seq int64, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		out, err = pgList[OutboxEntry](ctx, q, "SELECT data FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2", seq, max(limit, 0))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// OutboxFinishedSeq is [DB.OutboxFinishedSeq]: the latest Finished entry
// of the build.
func (p *PG) OutboxFinishedSeq(buildID int64) (int64, bool, error) {
	var seq *int64
	err := p.pgOne(func(ctx context.Context, q pgTx) error {
		return q.QueryRow(ctx, "SELECT max(seq) FROM outbox WHERE build_id = $1 AND event = 'finished'", buildID).Scan(&seq)
	})
	if err != nil || seq == nil {
		return 0, false, err
	}
	return *seq, true, nil
}

// OutboxCursor is [DB.OutboxCursor]. A new cursor is set, under the
// outbox lock, at the last entry committed.
func (p *PG) OutboxCursor(reporter string) (int64, error) {
	var seq int64
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx, "SELECT seq FROM outbox_cursor WHERE reporter = $1", reporter).Scan(&seq)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := pgLockOutbox(ctx, tx); err != nil {
			return err
		}
		if seq, err = pgOutboxEnd(ctx, tx); err != nil {
			return err
		}
		// Another master may have set it meanwhile: its value wins.
		return tx.QueryRow(ctx, `INSERT INTO outbox_cursor (reporter, seq) VALUES ($1, $2)
			ON CONFLICT (reporter) DO UPDATE SET seq = outbox_cursor.seq RETURNING seq`, reporter, seq).Scan(&seq)
	}, nil)
	if err != nil {
		return 0, fmt.Errorf("outbox cursor of %s: %w", reporter, err)
	}
	return seq, nil
}

// pgSetCursor moves reporter's cursor to seq.
func pgSetCursor(ctx context.Context, tx pgx.Tx, reporter string, seq int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO outbox_cursor (reporter, seq) VALUES ($1, $2)
		ON CONFLICT (reporter) DO UPDATE SET seq = $2`, reporter, seq)
	return err
}

// SkipOutbox is [DB.SkipOutbox].
func (p *PG) SkipOutbox(reporter string, seq int64) error {
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgSetCursor(ctx, tx, reporter, seq)
	}, nil)
	if err != nil {
		return fmt.Errorf("skip outbox entry %d of %s: %w", seq, reporter, err)
	}
	return nil
}

// SaveDelivery is [DB.SaveDelivery].
func (p *PG) SaveDelivery(d Delivery, done bool) error {
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := pgPutDelivery(ctx, tx, d); err != nil {
			return err
		}
		if done {
			return pgSetCursor(ctx, tx, d.Reporter, d.Seq)
		}
		return nil
	}, nil)
	if err != nil {
		return fmt.Errorf("save delivery %d of %s: %w", d.Seq, d.Reporter, err)
	}
	return nil
}

// Delivery is [DB.Delivery].
func (p *PG) Delivery(reporter string, buildID, seq int64) (Delivery, bool, error) {
	var ds []Delivery
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		ds, err = pgList[Delivery](ctx, q, "SELECT data FROM deliveries WHERE build_id = $1 AND seq = $2 AND reporter = $3",
			buildID, seq, reporter)
		return err
	})
	if err != nil {
		return Delivery{}, false, fmt.Errorf("get delivery: %w", err)
	}
	if len(ds) == 0 {
		return Delivery{}, false, nil
	}
	return ds[0], true, nil
}

// Deliveries is [DB.Deliveries]: by seq, then by reporter's bytes (bbolt's
// key order).
func (p *PG) Deliveries(buildID int64) ([]Delivery, error) {
	var out []Delivery
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		out, err = pgList[Delivery](ctx, q, `SELECT data FROM deliveries WHERE build_id = $1 ORDER BY seq, reporter COLLATE "C"`, buildID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list deliveries of build %d: %w", buildID, err)
	}
	return out, nil
}

// FailedDeliveries is [DB.FailedDeliveries].
func (p *PG) FailedDeliveries() (int, error) {
	var n int
	err := p.pgOne(func(ctx context.Context, q pgTx) error {
		return q.QueryRow(ctx, "SELECT count(*) FROM deliveries WHERE failed").Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("count failed deliveries: %w", err)
	}
	return n, nil
}

// PruneOutbox is [DB.PruneOutbox]. It holds the outbox lock, so the end
// it reads is the last entry committed.
func (p *PG) PruneOutbox(keep []string) error {
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := pgLockOutbox(ctx, tx); err != nil {
			return err
		}
		low, err := pgOutboxEnd(ctx, tx)
		if err != nil {
			return err
		}
		kept := map[string]bool{}
		for _, r := range keep {
			kept[r] = true
		}
		rows, err := tx.Query(ctx, "SELECT reporter, seq FROM outbox_cursor FOR UPDATE")
		if err != nil {
			return err
		}
		cursors := map[string]int64{}
		var drop []string
		for rows.Next() {
			var r string
			var seq int64
			if err := rows.Scan(&r, &seq); err != nil {
				rows.Close()
				return err
			}
			cursors[r] = seq
			if !kept[r] {
				drop = append(drop, r)
			} else {
				low = min(low, seq)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(drop) > 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM outbox_cursor WHERE reporter = ANY($1)", drop); err != nil {
				return err
			}
			if err := pgDropPending(ctx, tx, drop, at(time.Time{})); err != nil {
				return err
			}
		}
		for _, r := range keep {
			if _, ok := cursors[r]; !ok {
				low = 0 // a reporter not started yet
			}
		}
		_, err = tx.Exec(ctx, "DELETE FROM outbox WHERE seq <= $1", low)
		return err
	}, nil)
	if err != nil {
		return fmt.Errorf("prune outbox: %w", err)
	}
	return nil
}

// pgDropPending is dropPending on PostgreSQL.
func pgDropPending(ctx context.Context, tx pgx.Tx, gone []string, now time.Time) error {
	ds, err := pgList[Delivery](ctx, tx, "SELECT data FROM deliveries WHERE reporter = ANY($1) AND NOT failed FOR UPDATE", gone)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.State != DeliveryPending {
			continue
		}
		d.State, d.UpdatedAt, d.NextAt = DeliveryFailed, now, time.Time{}
		d.LastError = strings.TrimSpace("reporter removed from the config; " + d.LastError)
		if err := pgPutDelivery(ctx, tx, d); err != nil {
			return err
		}
	}
	return nil
}
