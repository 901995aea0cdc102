package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"
)

// AddLog is [DB.AddLog]. The step's row is locked (NO KEY UPDATE, which
// the logs' foreign keys do not wait for), so that logs added to one step
// at once get distinct slugs.
func (p *PG) AddLog(stepID int64, name, typ string) (Log, error) {
	var l Log
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		switch typ {
		case "s", "t", "h":
		default:
			return fmt.Errorf("unknown log type %q", typ)
		}
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM steps WHERE id = $1 FOR NO KEY UPDATE", stepID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("step %d: %w", stepID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		logs, err := pgList[Log](ctx, tx, "SELECT data FROM logs WHERE step_id = $1", stepID)
		if err != nil {
			return err
		}
		slugs := map[string]bool{}
		for _, other := range logs {
			if other.Name == name {
				return fmt.Errorf("step %d already has a log called %q", stepID, name)
			}
			slugs[other.Slug] = true
		}
		slug := uniqueSlug(name, func(slug string) bool { return slugs[slug] })
		ids, err := nextIDs(ctx, tx, "logs", 1)
		if err != nil {
			return err
		}
		l = Log{ID: ids[0], StepID: stepID, Name: name, Slug: slug, Type: typ}
		return pgPutLog(ctx, tx, l)
	}, func(e emit) { e.log("new", l) })
	if err != nil {
		return Log{}, fmt.Errorf("add log %q: %w", name, err)
	}
	return l, nil
}

// AppendLog is [DB.AppendLog]: the lines are one zstd chunk, compressed
// before the transaction, which locks the log's row.
func (p *PG) AppendLog(logID int64, lines string) (first int64, err error) {
	if !strings.HasSuffix(lines, "\n") {
		return 0, fmt.Errorf("append to log %d: %w", logID, errors.New("lines must end with a newline"))
	}
	n := strings.Count(lines, "\n")
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("append to log %d: %d lines in one batch is too many", logID, n)
	}
	chunk := p.enc.EncodeAll([]byte(lines), make([]byte, 0, len(lines)/4))
	var out Log
	err = p.update(func(ctx context.Context, tx pgx.Tx) error {
		l, err := pgGet[Log](ctx, tx, "logs", logID, true)
		if err != nil {
			return err
		}
		if l.Complete {
			return errors.New("log is finished")
		}
		first = l.NumLines
		l.NumLines += int64(n)
		out = l
		if err := pgPutLog(ctx, tx, l); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO logchunks (log_id, first_line, num_lines, data) VALUES ($1, $2, $3, $4)",
			logID, first, n, chunk)
		return err
	}, func(e emit) { e.log("append", out) })
	if err != nil {
		return 0, fmt.Errorf("append to log %d: %w", logID, err)
	}
	if p.onLog != nil {
		p.onLog(len(lines))
	}
	return first, nil
}

// FinishLog is [DB.FinishLog].
func (p *PG) FinishLog(logID int64) error {
	var out Log
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		l, err := pgGet[Log](ctx, tx, "logs", logID, true)
		if err != nil {
			return err
		}
		l.Complete = true
		out = l
		return pgPutLog(ctx, tx, l)
	}, func(e emit) { e.log("finished", out) })
	if err != nil {
		return fmt.Errorf("finish log %d: %w", logID, err)
	}
	return nil
}

// Log is [DB.Log].
func (p *PG) Log(id int64) (Log, error) {
	var l Log
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		l, err = pgGet[Log](ctx, q, "logs", id, false)
		return err
	})
	if err != nil {
		return Log{}, fmt.Errorf("get log: %w", err)
	}
	return l, nil
}

// Logs is [DB.Logs].
func (p *PG) Logs(stepID int64) ([]Log, error) {
	var ls []Log
	err := p.read(func(ctx context.Context, tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM steps WHERE id = $1", stepID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("step %d: %w", stepID, ErrNotFound)
		}
		var err error
		ls, err = pgList[Log](ctx, tx, "SELECT data FROM logs WHERE step_id = $1 ORDER BY id", stepID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	if ls == nil {
		ls = []Log{}
	}
	return ls, nil
}

// LogBySlug is [DB.LogBySlug].
func (p *PG) LogBySlug(stepID int64, slug string) (Log, error) {
	var ls []Log
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		ls, err = pgList[Log](ctx, q, "SELECT data FROM logs WHERE step_id = $1 AND slug = $2", stepID, slug)
		if err == nil && len(ls) == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Log{}, fmt.Errorf("get log %q of step %d: %w", slug, stepID, err)
	}
	return ls[0], nil
}

// LogLines is [DB.LogLines]: one statement reads the log and the chunks
// that hold the range (from the one holding first, found backwards by the
// primary key), in one snapshot.
func (p *PG) LogLines(logID int64, first, last int64) (string, error) {
	var out []byte
	err := p.pgOne(func(ctx context.Context, q pgTx) error {
		rows, err := q.Query(ctx, `SELECT l.data, c.first_line, c.num_lines, c.data FROM logs l
			LEFT JOIN LATERAL (SELECT first_line, num_lines, data FROM logchunks
				WHERE log_id = l.id AND first_line <= least($3, l.num_lines - 1) AND first_line >= coalesce(
					(SELECT max(first_line) FROM logchunks WHERE log_id = l.id AND first_line <= greatest($2, 0)), 0)
				ORDER BY first_line) c ON true
			WHERE l.id = $1 ORDER BY c.first_line`, logID, first, last)
		if err != nil {
			return err
		}
		defer rows.Close()
		found := false
		for rows.Next() {
			var l Log
			var start, n *int64
			var data []byte
			if err := rows.Scan(&l, &start, &n, &data); err != nil {
				return err
			}
			if !found {
				found = true
				first, last = max(first, 0), min(last, l.NumLines-1)
			}
			if start == nil || first > last || *start+*n <= first {
				continue
			}
			text, err := p.dec.DecodeAll(data, nil)
			if err != nil {
				return fmt.Errorf("chunk at line %d: %w", *start, err)
			}
			text = skipLines(text, first-*start)
			firstShown := max(first, *start)
			if end := *start + *n - 1; end > last {
				text = text[:len(text)-len(skipLines(text, last-firstShown+1))]
			}
			out = append(out, text...)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("log %d: %w", logID, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read log %d lines %d-%d: %w", logID, first, last, err)
	}
	return string(out), nil
}

// pgLogBatch is how many chunks WriteLog reads per query.
const pgLogBatch = 16

// WriteLog is [DB.WriteLog]. It reads a few chunks per query and writes
// them to w outside any transaction; lines appended while it runs are
// written too.
func (p *PG) WriteLog(logID int64, w io.Writer, fn func(line string) string) error {
	if err := p.writeLog(logID, w, fn); err != nil {
		return fmt.Errorf("write log %d: %w", logID, err)
	}
	return nil
}

type pgChunk struct {
	first, n int64
	data     []byte
}

func (p *PG) writeLog(logID int64, w io.Writer, fn func(line string) string) error {
	if _, err := p.Log(logID); err != nil {
		return errors.Unwrap(err) // without Log's "get log: "
	}
	var next int64
	var text, buf []byte
	for {
		var chunks []pgChunk
		err := p.pgOne(func(ctx context.Context, q pgTx) error {
			rows, err := q.Query(ctx, `SELECT first_line, num_lines, data FROM logchunks
				WHERE log_id = $1 AND first_line >= $2 ORDER BY first_line LIMIT $3`, logID, next, pgLogBatch)
			if err != nil {
				return err
			}
			chunks, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (c pgChunk, err error) {
				err = r.Scan(&c.first, &c.n, &c.data)
				return c, err
			})
			return err
		})
		if err != nil {
			return err
		}
		for _, c := range chunks {
			if c.first != next {
				// A hole: the chunk at next is gone (the janitor).
				return nil
			}
			if text, err = p.dec.DecodeAll(c.data, text[:0]); err != nil {
				return fmt.Errorf("chunk at line %d: %w", next, err)
			}
			out := text
			if fn != nil {
				buf = buf[:0]
				for line := range bytes.Lines(text) {
					buf = append(buf, fn(string(line))...)
				}
				out = buf
			}
			if _, err := w.Write(out); err != nil {
				return err
			}
			next += c.n
		}
		if len(chunks) < pgLogBatch {
			return nil
		}
	}
}
