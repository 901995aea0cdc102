package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AddStep is [DB.AddStep].
func (p *PG) AddStep(buildID int64, name string) (Step, error) {
	var s Step
	err := p.update(func(ctx context.Context, tx pgx.Tx) (err error) {
		s, err = pgAddStep(ctx, tx, buildID, name, time.Time{})
		return err
	}, func(e emit) { e.step("new", s) })
	if err != nil {
		return Step{}, fmt.Errorf("add step %q: %w", name, err)
	}
	return s, nil
}

// StartNewStep is [DB.StartNewStep].
func (p *PG) StartNewStep(buildID int64, name string, t time.Time) (Step, error) {
	t = at(t)
	var s Step
	err := p.update(func(ctx context.Context, tx pgx.Tx) (err error) {
		s, err = pgAddStep(ctx, tx, buildID, name, t)
		return err
	}, func(e emit) {
		e.step("new", s)
		e.step("started", s)
	})
	if err != nil {
		return Step{}, fmt.Errorf("add step %q: %w", name, err)
	}
	return s, nil
}

// pgAddStep is addStep on PostgreSQL. The build's row is locked (NO KEY
// UPDATE, which the steps' foreign keys do not wait for), so that steps
// added to one build at once get distinct numbers and names.
func pgAddStep(ctx context.Context, tx pgx.Tx, buildID int64, name string, started time.Time) (Step, error) {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM builds WHERE id = $1 FOR NO KEY UPDATE", buildID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return Step{}, fmt.Errorf("build %d: %w", buildID, ErrNotFound)
	}
	if err != nil {
		return Step{}, err
	}
	rows, err := tx.Query(ctx, "SELECT number, name FROM steps WHERE build_id = $1", buildID)
	if err != nil {
		return Step{}, err
	}
	number := 0
	names := map[string]bool{}
	for rows.Next() {
		var n int
		var name string
		if err := rows.Scan(&n, &name); err != nil {
			rows.Close()
			return Step{}, err
		}
		number = max(number, n+1)
		names[name] = true
	}
	if err := rows.Err(); err != nil {
		return Step{}, err
	}
	unique := uniqueStepName(name, func(name string) bool { return names[name] })
	ids, err := nextIDs(ctx, tx, "steps", 1)
	if err != nil {
		return Step{}, err
	}
	s := Step{ID: ids[0], BuildID: buildID, Number: number, Name: unique, Results: -1, StartedAt: started}
	return s, pgPutStep(ctx, tx, s)
}

// modifyStep is [DB.modifyStep]: it changes step id with fn, under its
// row lock.
func (p *PG) modifyStep(op string, id int64, fn func(*Step), evs ...string) error {
	var out Step
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		s, err := pgGet[Step](ctx, tx, "steps", id, true)
		if err != nil {
			return err
		}
		fn(&s)
		out = s
		return pgPutStep(ctx, tx, s)
	}, func(e emit) {
		for _, ev := range evs {
			e.step(ev, out)
		}
	})
	if err != nil {
		return fmt.Errorf("%s %d: %w", op, id, err)
	}
	return nil
}

// StartStep is [DB.StartStep].
func (p *PG) StartStep(id int64, t time.Time) error {
	t = at(t)
	return p.modifyStep("start step", id, func(s *Step) { s.StartedAt = t }, "started")
}

// SetStepStateString is [DB.SetStepStateString].
func (p *PG) SetStepStateString(id int64, str string) error {
	return p.modifyStep("set state of step", id, func(s *Step) { s.StateString = str }, "updated")
}

// SetStepHidden is [DB.SetStepHidden].
func (p *PG) SetStepHidden(id int64, hidden bool) error {
	return p.modifyStep("set hidden of step", id, func(s *Step) { s.Hidden = hidden }, "updated")
}

// AddStepURL is [DB.AddStepURL].
func (p *PG) AddStepURL(id int64, name, url string) error {
	return p.modifyStep("add url to step", id, func(s *Step) { addStepURL(s, name, url) }, "updated")
}

// FinishStep is [DB.FinishStep].
func (p *PG) FinishStep(id int64, results int, t time.Time) error {
	t = at(t)
	return p.modifyStep("finish step", id, func(s *Step) {
		s.Complete, s.CompleteAt, s.Results = true, t, results
	}, "finished")
}

// EndStep is [DB.EndStep].
func (p *PG) EndStep(id int64, state string, results int, t time.Time) error {
	t = at(t)
	return p.modifyStep("end step", id, func(s *Step) {
		s.StateString = state
		s.Complete, s.CompleteAt, s.Results = true, t, results
	}, "updated", "finished")
}

// Step is [DB.Step].
func (p *PG) Step(id int64) (Step, error) {
	var s Step
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		s, err = pgGet[Step](ctx, q, "steps", id, false)
		return err
	})
	if err != nil {
		return Step{}, fmt.Errorf("get step: %w", err)
	}
	return s, nil
}

// Steps is [DB.Steps].
func (p *PG) Steps(buildID int64) ([]Step, error) {
	var ss []Step
	err := p.read(func(ctx context.Context, tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM builds WHERE id = $1", buildID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("build %d: %w", buildID, ErrNotFound)
		}
		var err error
		ss, err = pgList[Step](ctx, tx, "SELECT data FROM steps WHERE build_id = $1 ORDER BY number", buildID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list steps: %w", err)
	}
	if ss == nil {
		ss = []Step{}
	}
	return ss, nil
}

// StepByNumber is [DB.StepByNumber].
func (p *PG) StepByNumber(buildID int64, number int) (Step, error) {
	s, err := p.stepBy("number", buildID, number)
	if err != nil {
		return Step{}, fmt.Errorf("get step %d of build %d: %w", number, buildID, err)
	}
	return s, nil
}

// StepByName is [DB.StepByName].
func (p *PG) StepByName(buildID int64, name string) (Step, error) {
	s, err := p.stepBy("name", buildID, name)
	if err != nil {
		return Step{}, fmt.Errorf("get step %q of build %d: %w", name, buildID, err)
	}
	return s, nil
}

// stepBy returns the step of build buildID whose column is v.
func (p *PG) stepBy(column string, buildID int64, v any) (Step, error) {
	var ss []Step
	err := p.pgOne(func(ctx context.Context, q pgTx) (err error) {
		ss, err = pgList[Step](ctx, q, "SELECT data FROM steps WHERE build_id = $1 AND "+column+" = $2", buildID, v)
		return err
	})
	if err != nil {
		return Step{}, err
	}
	if len(ss) == 0 {
		return Step{}, ErrNotFound
	}
	return ss[0], nil
}
