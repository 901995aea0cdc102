package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// timedScheduler is a periodic or nightly scheduler, as buildbot's Timed.
//
// Its state in the store (key "timed") holds the time of its last
// actuation and, with only_if_changed, the changes gathered since. As
// buildbot's: the next time is the last one plus the period (periodic) or
// the cron time after the last one (nightly); a scheduler that never ran
// starts a periodic build at once and waits for the next cron time for a
// nightly one; a time missed while the master was down gives one build at
// once, not one per missed time. The buildset is added before the state is
// written: a crash between the two builds again after the restart.
type timedScheduler struct {
	set    *Set
	cfg    config.Scheduler
	filter changeFilter
	cron   cron.Schedule // nightly only
	runJob

	mu    sync.Mutex
	state timedState     // guarded by mu
	seen  []store.Change // guarded by mu: as state.Changes
}

type timedState struct {
	LastBuild time.Time       `json:"last_build,omitzero"` // zero when it never ran
	Changes   []pendingChange `json:"changes,omitempty"`
}

const timedKey = "timed"

func (s *Set) newTimedScheduler(sc config.Scheduler) (*timedScheduler, error) {
	ts := &timedScheduler{set: s, cfg: sc, filter: newChangeFilter(sc)}
	if sc.Type == "nightly" {
		c, err := config.ParseCron(sc.Cron)
		if err != nil {
			return nil, fmt.Errorf("cron %q: %w", sc.Cron, err)
		}
		ts.cron = c
	}
	v, ok, err := s.store.GetState(stateObject(sc.Name), timedKey)
	if err != nil {
		return nil, err
	}
	if ok {
		if err := json.Unmarshal(v, &ts.state); err != nil {
			return nil, fmt.Errorf("decode state: %w", err)
		}
	}
	kept := ts.state.Changes[:0]
	for _, pc := range ts.state.Changes {
		c, err := s.store.Change(pc.ID)
		if err != nil {
			s.log.Warn("pending change is gone", "scheduler", sc.Name, "change", pc.ID, "err", err)
			continue
		}
		kept = append(kept, pc)
		ts.seen = append(ts.seen, c)
	}
	ts.state.Changes = kept
	return ts, nil
}

func (ts *timedScheduler) config() config.Scheduler { return ts.cfg }

// next returns the time of the next actuation after last (zero: never ran).
func (ts *timedScheduler) next(last, now time.Time) time.Time {
	if ts.cron != nil {
		if last.IsZero() {
			last = now
		}
		return ts.cron.Next(last.In(time.Local))
	}
	if last.IsZero() {
		return now
	}
	return last.Add(ts.cfg.Period.Duration)
}

func (ts *timedScheduler) run(ctx context.Context) {
	for {
		ts.mu.Lock()
		at := ts.next(ts.state.LastBuild, time.Now())
		ts.mu.Unlock()
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ts.actuate(later(at, time.Now()))
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// actuate adds a buildset for the time at, unless only_if_changed finds no
// important change.
func (ts *timedScheduler) actuate(at time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	important := false
	for _, pc := range ts.state.Changes {
		important = important || pc.Important
	}
	first := ts.state.LastBuild.IsZero()
	st := timedState{LastBuild: at}
	switch {
	case ts.cfg.OnlyIfChanged && !important && !first:
		ts.set.log.Info("no important change: build skipped", "scheduler", ts.cfg.Name)
		st.Changes = ts.state.Changes
	default:
		kind := "Periodic"
		if ts.cfg.Type == "nightly" {
			kind = "Nightly"
		}
		ss := []store.SourceStamp{{
			Codebase:   ts.cfg.Codebase,
			Branch:     ts.cfg.Branch,
			Repository: ts.cfg.Repository,
			Project:    ts.cfg.Project,
		}}
		reason := fmt.Sprintf("The %s scheduler named '%s' triggered this build", kind, ts.cfg.Name)
		if _, err := ts.set.newBuildset(ts.cfg, reason, ts.seen, ss); err != nil {
			ts.set.log.Error("add buildset", "scheduler", ts.cfg.Name, "err", err)
			st.Changes = ts.state.Changes
		} else {
			ts.seen = nil
		}
	}
	ts.state = st
	if err := ts.saveLocked(); err != nil {
		ts.set.log.Error("save state", "scheduler", ts.cfg.Name, "err", err)
	}
}

func (ts *timedScheduler) saveLocked() error {
	v, err := json.Marshal(ts.state)
	if err != nil {
		return err
	}
	return ts.set.store.SetState(stateObject(ts.cfg.Name), timedKey, v)
}

// addChanges gathers the changes that pass the filter, with only_if_changed.
func (ts *timedScheduler) addChanges(changes []store.Change) {
	if !ts.cfg.OnlyIfChanged {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	added := false
	for _, c := range changes {
		if !ts.filter.match(c) {
			continue
		}
		important := ts.filter.important(c)
		if !important && ts.cfg.OnlyImportant {
			continue
		}
		ts.state.Changes = append(ts.state.Changes, pendingChange{ID: c.ID, Important: important})
		ts.seen = append(ts.seen, c)
		added = true
	}
	if added {
		if err := ts.saveLocked(); err != nil {
			ts.set.log.Error("save state", "scheduler", ts.cfg.Name, "err", err)
		}
	}
}
