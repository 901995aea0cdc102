package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgOne runs fn with the pool itself, for reads of one statement (which
// see one snapshot without a transaction of their own).
func (p *PG) pgOne(fn func(ctx context.Context, q pgTx) error) error {
	ctx, cancel := p.opCtx()
	defer cancel()
	return fn(ctx, p.pool)
}

// AddBuild is [DB.AddBuild]. A builder's numbers come from its row's
// next_number, which the UPDATE locks until commit, so two masters never
// give one number twice.
func (p *PG) AddBuild(nb NewBuild) (Build, error) {
	var b Build
	outbox := p.outboxOn()
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		// The max keeps the numbering right on a database whose builds
		// came without their builders' next_number (a copy).
		var number int64
		err := tx.QueryRow(ctx, `UPDATE builders SET next_number = greatest(next_number,
				coalesce((SELECT max(number) FROM builds WHERE builder_id = $1), 0) + 1) + 1
			WHERE id = $1 RETURNING next_number - 1`, nb.BuilderID).Scan(&number)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("builder %d: %w", nb.BuilderID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if nb.BuildRequestID != 0 {
			// KEY SHARE: the janitor cannot delete the request meanwhile.
			var one int
			err := tx.QueryRow(ctx, "SELECT 1 FROM buildrequests WHERE id = $1 FOR KEY SHARE", nb.BuildRequestID).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("buildrequest %d: %w", nb.BuildRequestID, ErrNotFound)
			}
			if err != nil {
				return err
			}
		}
		ids, err := nextIDs(ctx, tx, "builds", 1)
		if err != nil {
			return err
		}
		b = newBuild(ids[0], number, nb)
		if err := pgPutBuild(ctx, tx, b); err != nil {
			return err
		}
		if outbox {
			return pgAddOutbox(ctx, tx, OutboxEntry{Event: OutboxStarted, BuildID: b.ID, At: b.StartedAt})
		}
		return nil
	}, func(e emit) { e.build("new", b) })
	if err != nil {
		return Build{}, fmt.Errorf("add build: %w", err)
	}
	if outbox {
		p.notifyOutbox()
	}
	return b, nil
}

// Build is [DB.Build].
func (p *PG) Build(id int64) (Build, error) {
	var b Build
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		b, err = pgGet[Build](ctx, q, "builds", id, false)
		return err
	})
	if err != nil {
		return Build{}, fmt.Errorf("get build: %w", err)
	}
	return b, nil
}

// BuildByNumber is [DB.BuildByNumber].
func (p *PG) BuildByNumber(builderID, number int64) (Build, error) {
	var bs []Build
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		bs, err = pgList[Build](ctx, q, "SELECT data FROM builds WHERE builder_id = $1 AND number = $2", builderID, number)
		if err == nil && len(bs) == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Build{}, fmt.Errorf("get build %d of builder %d: %w", number, builderID, err)
	}
	return bs[0], nil
}

// pgBuildWhere is the WHERE clause of f's filters (not its order, Offset
// and Limit), with its arguments.
func pgBuildWhere(f BuildFilter) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.BuilderID != 0 {
		add("builder_id = ?", f.BuilderID)
	}
	if f.BuildRequestID != 0 {
		add("buildrequest_id = ?", f.BuildRequestID)
	}
	if f.WorkerID != 0 {
		add("worker_id = ?", f.WorkerID)
	}
	if f.Complete != nil {
		add("complete = ?", *f.Complete)
	}
	if f.Before != 0 {
		add("id < ?", f.Before)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Builds is [DB.Builds].
func (p *PG) Builds(f BuildFilter) ([]Build, error) {
	where, args := pgBuildWhere(f)
	sql := "SELECT data FROM builds" + where + " ORDER BY id"
	if f.Desc {
		sql += " DESC"
	}
	if f.Offset > 0 {
		sql += " OFFSET " + strconv.Itoa(f.Offset)
	}
	if f.Limit > 0 {
		sql += " LIMIT " + strconv.Itoa(f.Limit)
	}
	var out []Build
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		out, err = pgList[Build](ctx, q, sql, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	return out, nil
}

// CountBuilds is [DB.CountBuilds].
func (p *PG) CountBuilds(f BuildFilter) (int, error) {
	where, args := pgBuildWhere(f)
	var n int
	err := p.pgOne(func(ctx context.Context, q pgTx) error {
		return q.QueryRow(ctx, "SELECT count(*) FROM builds"+where, args...).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("count builds: %w", err)
	}
	return n, nil
}

// modifyBuild is [DB.modifyBuild]: it changes build id with fn, under its
// row lock.
func (p *PG) modifyBuild(op string, id int64, fn func(*Build), more func(emit, Build)) error {
	var out Build
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		b, err := pgGet[Build](ctx, tx, "builds", id, true)
		if err != nil {
			return err
		}
		fn(&b)
		out = b
		return pgPutBuild(ctx, tx, b)
	}, func(e emit) {
		e.build("update", out)
		if more != nil {
			more(e, out)
		}
	})
	if err != nil {
		return fmt.Errorf("%s %d: %w", op, id, err)
	}
	return nil
}

// SetBuildStateString is [DB.SetBuildStateString].
func (p *PG) SetBuildStateString(id int64, s string) error {
	return p.modifyBuild("set state of build", id, func(b *Build) { b.StateString = s }, nil)
}

// SetBuildProperty is [DB.SetBuildProperty].
func (p *PG) SetBuildProperty(id int64, name string, prop Property) error {
	return p.modifyBuild("set property of build", id, func(b *Build) { setBuildProperty(b, name, prop) },
		func(e emit, b Build) { e.buildProperties(b.ID, Properties{name: prop}) })
}

// EndBuild is [DB.EndBuild].
func (p *PG) EndBuild(id int64, state string, results int, t time.Time) error {
	t = at(t)
	var out Build
	outbox := p.outboxOn()
	err := p.update(func(ctx context.Context, tx pgx.Tx) (err error) {
		out, err = pgFinishBuild(ctx, tx, id, func(b *Build) { b.StateString = state }, results, t, outbox)
		return err
	}, func(e emit) {
		e.build("update", out)
		e.build("finished", out)
	})
	if err != nil {
		return fmt.Errorf("end build %d: %w", id, err)
	}
	if outbox {
		p.notifyOutbox()
	}
	return nil
}

// FinishBuild is [DB.FinishBuild].
func (p *PG) FinishBuild(id int64, results int, t time.Time) error {
	t = at(t)
	var out Build
	outbox := p.outboxOn()
	err := p.update(func(ctx context.Context, tx pgx.Tx) (err error) {
		out, err = pgFinishBuild(ctx, tx, id, nil, results, t, outbox)
		return err
	}, func(e emit) { e.build("finished", out) })
	if err != nil {
		return fmt.Errorf("finish build %d: %w", id, err)
	}
	if outbox {
		p.notifyOutbox()
	}
	return nil
}

// pgFinishBuild completes build id (after fn, when not nil, changed it)
// and returns it as stored; with outbox, it writes the build's Finished
// outbox entry too.
func pgFinishBuild(ctx context.Context, tx pgx.Tx, id int64, fn func(*Build), results int, t time.Time, outbox bool) (Build, error) {
	b, err := pgGet[Build](ctx, tx, "builds", id, true)
	if err != nil {
		return Build{}, err
	}
	if fn != nil {
		fn(&b)
	}
	b.Complete, b.CompleteAt, b.Results = true, t, results
	if err := pgPutBuild(ctx, tx, b); err != nil {
		return Build{}, err
	}
	if outbox {
		if err := pgAddOutbox(ctx, tx, OutboxEntry{Event: OutboxFinished, BuildID: id, At: t}); err != nil {
			return Build{}, err
		}
	}
	return b, nil
}

// AbandonBuilds is [DB.AbandonBuilds]. A surviving master runs it for a
// dead one which may in fact be only slow and still writing: every row it
// changes is locked first (builds, then their steps, then their logs, then
// the requests), so each of the slow master's writes lands wholly before
// or after it, and a row the other master completed meanwhile is left
// alone.
func (p *PG) AbandonBuilds(masterID int64, t time.Time) ([]int64, error) {
	t = at(t)
	var ended []int64
	a := abandoned{outbox: p.outboxOn()}
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		a = abandoned{outbox: a.outbox}
		var err error
		ended, err = a.pgMaster(ctx, tx, masterID, t)
		if err != nil {
			return err
		}
		return a.pgOutbox(ctx, tx)
	}, a.publish)
	if err != nil {
		return nil, fmt.Errorf("abandon builds of master %d: %w", masterID, err)
	}
	if len(ended) > 0 && a.outbox {
		p.notifyOutbox()
	}
	if len(ended) > 0 {
		p.log.Info("abandoned builds of a previous run", "master", masterID, "builds", ended)
	}
	if len(a.completed) > 0 {
		ids := make([]int64, len(a.completed))
		for i, c := range a.completed {
			ids[i] = c.req.ID
		}
		p.log.Info("completed the requests of a previous run whose builds had finished", "master", masterID, "buildrequests", ids)
	}
	return ended, nil
}

// AbandonBuild is [DB.AbandonBuild].
func (p *PG) AbandonBuild(buildID int64, t time.Time) (bool, error) {
	t = at(t)
	a := abandoned{outbox: p.outboxOn()}
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		a = abandoned{outbox: a.outbox}
		b, err := pgGet[Build](ctx, tx, "builds", buildID, true)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM build_resume WHERE build_id = $1", buildID); err != nil {
			return err
		}
		if b.Complete {
			return nil
		}
		if err := a.pgBuild(ctx, tx, b, t); err != nil {
			return err
		}
		br, err := pgGet[BuildRequest](ctx, tx, "buildrequests", b.BuildRequestID, true)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil && br.Claimed && !br.Complete {
			if err := a.pgRequest(ctx, tx, br, t); err != nil {
				return err
			}
		}
		return a.pgOutbox(ctx, tx)
	}, a.publish)
	if err != nil {
		return false, fmt.Errorf("abandon build %d: %w", buildID, err)
	}
	if len(a.finished) > 0 && a.outbox {
		p.notifyOutbox()
	}
	return len(a.finished) > 0, nil
}

// pgBuild is [abandoned.build] on PostgreSQL, b's row being locked. Its
// outbox entry waits for pgOutbox, so that the outbox lock is the last
// lock the transaction takes.
func (a *abandoned) pgBuild(ctx context.Context, tx pgx.Tx, b Build, t time.Time) error {
	steps, err := pgList[Step](ctx, tx, "SELECT data FROM steps WHERE build_id = $1 ORDER BY number FOR UPDATE", b.ID)
	if err != nil {
		return err
	}
	for _, s := range steps {
		if s.Complete {
			continue
		}
		s.Complete, s.CompleteAt, s.Results = true, t, Retry
		if err := pgPutStep(ctx, tx, s); err != nil {
			return err
		}
		a.steps = append(a.steps, s)
	}
	logs, err := pgList[Log](ctx, tx, `SELECT l.data FROM logs l JOIN steps s ON s.id = l.step_id
		WHERE s.build_id = $1 ORDER BY s.number, l.id FOR UPDATE OF l`, b.ID)
	if err != nil {
		return err
	}
	for _, l := range logs {
		if l.Complete {
			continue
		}
		l.Complete = true
		if err := pgPutLog(ctx, tx, l); err != nil {
			return err
		}
		a.logs = append(a.logs, l)
	}
	b.Complete, b.CompleteAt, b.Results = true, t, Retry
	if err := pgPutBuild(ctx, tx, b); err != nil {
		return err
	}
	a.finished = append(a.finished, b)
	return nil
}

// pgMaster is [abandoned.master] on PostgreSQL; the outbox entries wait
// for pgOutbox.
func (a *abandoned) pgMaster(ctx context.Context, tx pgx.Tx, masterID int64, t time.Time) ([]int64, error) {
	var ended []int64
	builds, err := pgList[Build](ctx, tx, "SELECT data FROM builds WHERE master_id = $1 AND NOT complete ORDER BY id FOR UPDATE", masterID)
	if err != nil {
		return nil, err
	}
	for _, b := range builds {
		if b.Complete || b.MasterID != masterID {
			continue
		}
		if err := a.pgBuild(ctx, tx, b, t); err != nil {
			return nil, err
		}
		ended = append(ended, b.ID)
	}
	// A request whose build finished completes with its buildset
	// (pgRequest): the buildsets are locked first, parents before
	// children, as CompleteBuildRequest does.
	_, err = tx.Exec(ctx, "SELECT id FROM buildsets WHERE id IN (SELECT buildset_id FROM buildrequests WHERE claimed_by = $1 AND NOT complete) ORDER BY id FOR UPDATE", masterID)
	if err != nil {
		return nil, err
	}
	brs, err := pgList[BuildRequest](ctx, tx, "SELECT data FROM buildrequests WHERE claimed_by = $1 AND NOT complete ORDER BY id FOR UPDATE", masterID)
	if err != nil {
		return nil, err
	}
	for _, br := range brs {
		if br.Claimed && br.ClaimedByMasterID == masterID && !br.Complete {
			if err := a.pgRequest(ctx, tx, br, t); err != nil {
				return nil, err
			}
		}
	}
	return ended, nil
}

// pgRequest is [abandoned.request] on PostgreSQL, br's row being locked
// (and its buildset's, should br complete).
func (a *abandoned) pgRequest(ctx context.Context, tx pgx.Tx, br BuildRequest, t time.Time) error {
	last, err := pgList[Build](ctx, tx, "SELECT data FROM builds WHERE buildrequest_id = $1 ORDER BY id DESC LIMIT 1", br.ID)
	if err != nil {
		return err
	}
	if len(last) == 1 && last[0].Complete && last[0].Results != Retry {
		set, err := pgGet[Buildset](ctx, tx, "buildsets", br.BuildsetID, true)
		if err != nil {
			return err
		}
		c, err := pgCompleteRequest(ctx, tx, set, br.ID, 0, last[0].Results, t)
		if err != nil {
			return err
		}
		a.completed = append(a.completed, c)
		return nil
	}
	unclaim(&br)
	if err := pgPutRequest(ctx, tx, br); err != nil {
		return err
	}
	a.requests = append(a.requests, br)
	return nil
}

// pgOutbox writes the Finished outbox entries of the builds a ended.
func (a *abandoned) pgOutbox(ctx context.Context, tx pgx.Tx) error {
	if !a.outbox || len(a.finished) == 0 {
		return nil
	}
	es := make([]OutboxEntry, len(a.finished))
	for i, b := range a.finished {
		es[i] = OutboxEntry{Event: OutboxFinished, BuildID: b.ID, At: b.CompleteAt}
	}
	return pgAddOutbox(ctx, tx, es...)
}

// SetResumePoint is [DB.SetResumePoint].
func (p *PG) SetResumePoint(rp ResumePoint) error {
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		// Locked, so that AbandonBuild ends it wholly before or after.
		b, err := pgGet[Build](ctx, tx, "builds", rp.BuildID, true)
		if err != nil {
			return err
		}
		if b.Complete {
			return fmt.Errorf("build %d is complete", rp.BuildID)
		}
		return pgPutResumePoint(ctx, tx, rp)
	}, nil)
	if err != nil {
		return fmt.Errorf("set resume point of build %d: %w", rp.BuildID, err)
	}
	return nil
}

// ResumePoints is [DB.ResumePoints].
func (p *PG) ResumePoints(masterID int64) ([]ResumePoint, error) {
	var ps []ResumePoint
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		ps, err = pgList[ResumePoint](ctx, q, "SELECT data FROM build_resume WHERE master_id = $1 ORDER BY build_id", masterID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list resume points: %w", err)
	}
	return ps, nil
}

// DeleteResumePoint is [DB.DeleteResumePoint].
func (p *PG) DeleteResumePoint(buildID int64) error {
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM build_resume WHERE build_id = $1", buildID)
		return err
	}, nil)
	if err != nil {
		return fmt.Errorf("delete resume point of build %d: %w", buildID, err)
	}
	return nil
}

// pgCheckBuilds mirrors checkInvariants for builds, steps and logs: what
// the schema's keys do not already guarantee.
func pgCheckBuilds(ctx context.Context, tx pgx.Tx) []error {
	var errs []error
	check := func(sql string, format string) {
		rows, err := tx.Query(ctx, sql)
		if err != nil {
			errs = append(errs, fmt.Errorf("check: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				errs = append(errs, err)
				return
			}
			errs = append(errs, fmt.Errorf(format, vals...))
		}
		if err := rows.Err(); err != nil {
			errs = append(errs, fmt.Errorf("check: %w", err))
		}
	}
	check(`SELECT b.id, b.buildrequest_id FROM builds b
		WHERE b.buildrequest_id <> 0 AND NOT EXISTS (SELECT 1 FROM buildrequests r WHERE r.id = b.buildrequest_id)`,
		"build %d: buildrequest %d missing")
	check(`SELECT id FROM builds WHERE (data->>'ID')::bigint <> id OR (data->>'Number')::bigint <> number
		OR (data->>'BuilderID')::bigint <> builder_id OR (data->>'BuildRequestID')::bigint <> buildrequest_id
		OR (data->>'WorkerID')::bigint <> worker_id OR (data->>'MasterID')::bigint <> master_id
		OR (data->>'Complete')::boolean <> complete OR complete <> (complete_at IS NOT NULL)`,
		"build %d: its columns disagree with its record")
	check(`SELECT b.id, b.next_number, max(n.number) FROM builders b JOIN builds n ON n.builder_id = b.id
		GROUP BY b.id HAVING max(n.number) >= b.next_number`,
		"builder %d: next build number %d, but build number %d exists")
	check(`SELECT id FROM steps WHERE (data->>'ID')::bigint <> id OR (data->>'BuildID')::bigint <> build_id
		OR (data->>'Number')::integer <> number OR data->>'Name' <> name`,
		"step %d: its columns disagree with its record")
	check(`SELECT id FROM logs WHERE (data->>'ID')::bigint <> id OR (data->>'StepID')::bigint <> step_id
		OR data->>'Slug' <> slug OR data->>'Type' <> type OR (data->>'NumLines')::bigint <> num_lines`,
		"log %d: its columns disagree with its record")
	check(`SELECT l.id, l.num_lines, coalesce(sum(c.num_lines), 0) FROM logs l LEFT JOIN logchunks c ON c.log_id = l.id
		WHERE l.type <> 'd' GROUP BY l.id HAVING l.num_lines <> coalesce(sum(c.num_lines), 0)`,
		"log %d: %d lines but chunks hold %d")
	check(`SELECT DISTINCT log_id FROM (SELECT log_id, first_line, coalesce(sum(num_lines) OVER (PARTITION BY log_id
			ORDER BY first_line ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS want FROM logchunks) c
		WHERE first_line <> want`,
		"log %d: chunks do not follow each other")
	check(`SELECT build_id FROM build_resume r JOIN builds b ON b.id = r.build_id
		WHERE (r.data->>'MasterID')::bigint <> r.master_id`,
		"resume point of build %d: its columns disagree with its record")
	return errs
}
