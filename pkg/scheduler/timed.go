package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// timedScheduler is a periodic or nightly scheduler, as buildbot's Timed.
//
// Its state in the store (key "timed") holds the time of its last
// actuation and, with only_if_changed, the changes gathered since (as
// buildbot's classified changes) and the id up to which every change has
// been handled: gathered, or found not to pass the filter. The three are
// one value, so one transaction writes a gathered change together with
// the mark that it was handled. As buildbot's: the next time is the last
// one plus the period (periodic) or the cron time after the last one
// (nightly); a scheduler that never ran starts a periodic build at once
// and waits for the next cron time for a nightly one; a time missed while
// the master was down gives one build at once, not one per missed time.
//
// A master killed with SIGKILL loses no change and builds none twice:
//   - A change is stored before it is offered to the schedulers. At the
//     master's start, a scheduler with only_if_changed gathers the changes
//     stored after the last it handled (those stored while the master was
//     down, or stored but not yet offered when it died), leaving out those
//     already gathered or built by its buildsets. One new to the store, or
//     added or changed by a reconfig, starts from the newest change, as the
//     change schedulers do.
//   - An actuation that builds first records its time as Building, then
//     adds the buildset (submitted at that time), then writes the state
//     (the time as the last build, the gathered changes cleared, Building
//     cleared): three transactions. At the master's start, a state with
//     Building set is settled from the store: if the scheduler has a
//     buildset (by name and reason) submitted at that time or later, the
//     time is taken as its last build and the gathered changes its
//     buildsets build are dropped, so that neither the changes nor the
//     time give a second buildset; if not, the time gives one build at
//     once, as a time missed while the master was down. Only then, or
//     when changes were stored after the last handled, are the buildsets
//     read.
type timedScheduler struct {
	set    *Set
	cfg    config.Scheduler
	filter changeFilter
	cron   cron.Schedule // nightly only
	runJob

	mu      sync.Mutex
	state   timedState     // guarded by mu
	seen    []store.Change // guarded by mu: as state.Changes
	handled map[int64]bool // guarded by mu: changes handled after *state.LastChange
}

type timedState struct {
	LastBuild time.Time       `json:"last_build,omitzero"` // zero when it never ran
	Changes   []pendingChange `json:"changes,omitempty"`
	// LastChange is, with only_if_changed, the id up to which every change
	// has been handled; nil without only_if_changed, or in a state written
	// before gbb recorded it.
	LastChange *int64 `json:"last_change,omitempty"`
	// Building is the time of an actuation whose buildset may have been
	// added but whose state is not yet written; zero when none.
	Building time.Time `json:"building,omitzero"`
}

const timedKey = "timed"

// newTimedScheduler makes the scheduler of sc from its state in the
// store. With catchUp (at the master's start) it recovers from a crash:
// see timedScheduler. s.opMu must be held.
func (s *Set) newTimedScheduler(sc config.Scheduler, catchUp bool) (*timedScheduler, error) {
	ts := &timedScheduler{set: s, cfg: sc, filter: newChangeFilter(sc), handled: map[int64]bool{}}
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
	if err := ts.catchUp(catchUp); err != nil {
		s.log.Error("catch up with the builds and changes of before the master stopped", "scheduler", sc.Name, "err", err)
	}
	return ts, nil
}

// catchUp brings the state up to date with the store and writes it if it
// changed. With restart (at the master's start), it takes up a buildset
// added but not recorded, and gathers the changes stored after the last
// handled; without, or without a recorded last change, it starts from the
// newest change.
func (ts *timedScheduler) catchUp(restart bool) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	before, err := json.Marshal(ts.state)
	if err != nil {
		return err
	}
	defer func() {
		after, err := json.Marshal(ts.state)
		if err == nil && string(after) != string(before) {
			err = ts.saveLocked()
		}
		if err != nil {
			ts.set.log.Error("save state", "scheduler", ts.cfg.Name, "err", err)
		}
	}()

	if restart && !ts.state.Building.IsZero() {
		at := ts.state.Building
		newest, err := ts.set.newestBuildset(ts.cfg.Name, ts.reason())
		if err != nil {
			return err
		}
		if newest.Before(at) {
			ts.set.log.Warn("the master stopped before the build of a time was added: it builds at once", "scheduler", ts.cfg.Name, "at", at)
		} else {
			ts.set.log.Warn("the master stopped after the build of a time was added, before it was recorded: taken as the last build", "scheduler", ts.cfg.Name, "at", at)
			built, err := ts.set.builtChanges(ts.cfg.Name)
			if err != nil {
				return err
			}
			ts.dropBuiltLocked(built)
			ts.state.LastBuild = at
		}
		ts.state.Building = time.Time{}
	}
	if !restart {
		ts.state.Building = time.Time{} // a reconfig: the predecessor wrote its state
	}
	if !ts.cfg.OnlyIfChanged {
		ts.state.LastChange = nil
		return nil
	}
	newest, err := ts.set.store.Changes(store.ChangeFilter{Desc: true, Limit: 1})
	if err != nil {
		return err
	}
	var top int64
	if len(newest) > 0 {
		top = newest[0].ID
	}
	if !restart || ts.state.LastChange == nil {
		ts.state.LastChange = &top
		return nil
	}
	last := *ts.state.LastChange
	if top <= last {
		return nil
	}
	built, err := ts.set.builtChanges(ts.cfg.Name)
	if err != nil {
		return err
	}
	// Changes are numbered densely from 1, so the top-last newest are those
	// after last.
	after, err := ts.set.store.Changes(store.ChangeFilter{Desc: true, Limit: int(top - last)})
	if err != nil {
		return err
	}
	slices.Reverse(after)
	var offer []store.Change
	var skip, ids []int64
	for _, c := range after {
		switch {
		case c.ID <= last:
		case built[c.ID] || ts.isPendingLocked(c.ID):
			skip = append(skip, c.ID)
		default:
			offer = append(offer, c)
			ids = append(ids, c.ID)
		}
	}
	if len(offer) > 0 {
		ts.set.log.Warn("gathering the changes stored but not gathered before the master stopped", "scheduler", ts.cfg.Name, "changes", ids)
	}
	ts.markLocked(skip)
	ts.gatherLocked(offer)
	return nil
}

// dropBuiltLocked drops the gathered changes that are in built: the
// buildset was added, the crash came before the state was written. ts.mu
// must be held.
func (ts *timedScheduler) dropBuiltLocked(built map[int64]bool) {
	keep, keepC := ts.state.Changes[:0], ts.seen[:0]
	for i, pc := range ts.state.Changes {
		if !built[pc.ID] {
			keep, keepC = append(keep, pc), append(keepC, ts.seen[i])
		}
	}
	if n := len(ts.state.Changes) - len(keep); n > 0 {
		ts.set.log.Warn("gathered changes were already built before a crash: dropped", "scheduler", ts.cfg.Name, "changes", n)
	}
	ts.state.Changes, ts.seen = keep, keepC
}

// isPendingLocked reports whether change id is gathered. ts.mu must be
// held.
func (ts *timedScheduler) isPendingLocked(id int64) bool {
	return slices.ContainsFunc(ts.state.Changes, func(pc pendingChange) bool { return pc.ID == id })
}

// handledLocked reports whether change id was handled already. ts.mu must
// be held.
func (ts *timedScheduler) handledLocked(id int64) bool {
	return ts.state.LastChange != nil && (id <= *ts.state.LastChange || ts.handled[id])
}

// markLocked records the changes ids as handled and moves LastChange on as
// far as every change up to it is. It reports whether it moved. ts.mu
// must be held.
func (ts *timedScheduler) markLocked(ids []int64) bool {
	if ts.state.LastChange == nil {
		return false
	}
	last := *ts.state.LastChange
	for _, id := range ids {
		if id > last {
			ts.handled[id] = true
		}
	}
	moved := false
	for ts.handled[last+1] {
		delete(ts.handled, last+1)
		last++
		moved = true
	}
	if moved {
		ts.state.LastChange = &last
	}
	return moved
}

// reason is the reason of the scheduler's buildsets, as buildbot's.
func (ts *timedScheduler) reason() string {
	kind := "Periodic"
	if ts.cfg.Type == "nightly" {
		kind = "Nightly"
	}
	return fmt.Sprintf("The %s scheduler named '%s' triggered this build", kind, ts.cfg.Name)
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
	st := timedState{LastBuild: at, LastChange: ts.state.LastChange}
	switch {
	case !ts.set.Enabled(ts.cfg.Name):
		ts.set.log.Info("scheduler disabled: build skipped", "scheduler", ts.cfg.Name)
		st.Changes = ts.state.Changes
	case ts.cfg.OnlyIfChanged && !important && !first:
		ts.set.log.Info("no important change: build skipped", "scheduler", ts.cfg.Name)
		st.Changes = ts.state.Changes
	default:
		ss := []store.SourceStamp{{
			Codebase:   ts.cfg.Codebase,
			Branch:     ts.cfg.Branch,
			Repository: ts.cfg.Repository,
			Project:    ts.cfg.Project,
		}}
		if ts.cfg.Codebases != nil {
			ss, _ = stampsWithDefaults(ts.cfg, nil) // no stamps given: no duplicate
		}
		// Building, then the buildset submitted at that time: the
		// catch-up at the next start finds whether it was added if a crash
		// comes before the state is written.
		ts.state.Building = at
		if err := ts.saveLocked(); err != nil {
			ts.set.log.Error("record the build of a time; not built", "scheduler", ts.cfg.Name, "err", err)
			st.Changes = ts.state.Changes
		} else if _, err := ts.set.newBuildsetAt(ts.cfg, ts.reason(), ts.seen, ss, at); err != nil {
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

// addChanges gathers the changes that pass the filter, with only_if_changed,
// and writes them with the mark that they were handled in one transaction.
func (ts *timedScheduler) addChanges(changes []store.Change) {
	if !ts.cfg.OnlyIfChanged {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.gatherLocked(changes) {
		if err := ts.saveLocked(); err != nil {
			ts.set.log.Error("save state", "scheduler", ts.cfg.Name, "err", err)
		}
	}
}

// gatherLocked gathers the changes that pass the filter and are not yet
// gathered, marks them all handled, and reports whether the state changed.
// ts.mu must be held.
func (ts *timedScheduler) gatherLocked(changes []store.Change) bool {
	changed := false
	ids := make([]int64, 0, len(changes))
	for _, c := range changes {
		if ts.handledLocked(c.ID) {
			continue // offered again: gathered once
		}
		ids = append(ids, c.ID)
		if !ts.filter.match(c) || ts.isPendingLocked(c.ID) {
			continue
		}
		important := ts.filter.important(c)
		if !important && ts.cfg.OnlyImportant {
			continue
		}
		ts.state.Changes = append(ts.state.Changes, pendingChange{ID: c.ID, Important: important})
		ts.seen = append(ts.seen, c)
		changed = true
	}
	return ts.markLocked(ids) || changed
}
