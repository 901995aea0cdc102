package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// changeFilter is a scheduler's change filter and file importance, as
// buildbot's ChangeFilter and fileIsImportant.
type changeFilter struct {
	sc       config.Scheduler
	branchRe *regexp.Regexp // nil when none
}

func newChangeFilter(sc config.Scheduler) changeFilter {
	f := changeFilter{sc: sc}
	if sc.BranchRe != "" {
		f.branchRe = regexp.MustCompile(sc.BranchRe) // checked by config.Parse
	}
	return f
}

// match reports whether c passes the filter.
func (f changeFilter) match(c store.Change) bool {
	sc := f.sc
	return (sc.Branch == "" || c.Branch == sc.Branch) &&
		(f.branchRe == nil || f.branchRe.MatchString(c.Branch)) &&
		(sc.Project == "" || c.Project == sc.Project) &&
		(sc.Repository == "" || c.Repository == sc.Repository) &&
		(sc.Category == "" || c.Category == sc.Category) &&
		(sc.Codebase == "" || c.Codebase == sc.Codebase)
}

// important reports whether c is important: with file patterns, when one of
// its files matches one of them; without, always.
func (f changeFilter) important(c store.Change) bool {
	if f.sc.Files == nil {
		return true
	}
	return slices.ContainsFunc(c.Files, func(file string) bool {
		return slices.ContainsFunc(f.sc.Files, func(p string) bool { return config.MatchFile(p, file) })
	})
}

// changeScheduler is a single_branch or any_branch scheduler.
//
// With a tree_stable_timer, it keeps its pending changes and the timers'
// deadlines in the store (state key "pending"), written before addChanges
// returns. When a timer fires, the buildset is added first and the pending
// state cleared after, in two transactions: a crash between the two builds
// those changes again after the restart, never loses them.
type changeScheduler struct {
	set    *Set
	cfg    config.Scheduler
	filter changeFilter
	kick   chan struct{} // a deadline moved; buffered
	runJob

	mu      sync.Mutex
	pending map[string]*pendingGroup // guarded by mu: by timer key
}

// pendingGroup is the changes gathered for one tree-stable timer: the only
// one of a single_branch scheduler, one per codebase, project, repository
// and branch of an any_branch scheduler, as buildbot's.
type pendingGroup struct {
	Key      string          `json:"key"`
	Changes  []pendingChange `json:"changes"`
	Deadline time.Time       `json:"deadline,omitzero"` // zero while no important change started the timer

	changes []store.Change // as Changes
}

type pendingChange struct {
	ID        int64 `json:"id"`
	Important bool  `json:"important"`
}

const pendingKey = "pending"

// retryDelay is the least time before a scheduler tries again to add a
// buildset the store refused.
const retryDelay = time.Minute

func (s *Set) newChangeScheduler(sc config.Scheduler) *changeScheduler {
	cs := &changeScheduler{
		set:     s,
		cfg:     sc,
		filter:  newChangeFilter(sc),
		kick:    make(chan struct{}, 1),
		pending: map[string]*pendingGroup{},
	}
	if err := cs.restore(); err != nil {
		s.log.Error("restore pending changes", "scheduler", sc.Name, "err", err)
	}
	return cs
}

func (cs *changeScheduler) config() config.Scheduler { return cs.cfg }

// restore reads the pending changes from the store.
func (cs *changeScheduler) restore() error {
	v, ok, err := cs.set.store.GetState(stateObject(cs.cfg.Name), pendingKey)
	if err != nil || !ok {
		return err
	}
	var groups []*pendingGroup
	if err := json.Unmarshal(v, &groups); err != nil {
		return fmt.Errorf("decode state: %w", err)
	}
	for _, g := range groups {
		kept := g.Changes[:0]
		for _, pc := range g.Changes {
			c, err := cs.set.store.Change(pc.ID)
			if err != nil {
				cs.set.log.Warn("pending change is gone", "scheduler", cs.cfg.Name, "change", pc.ID, "err", err)
				continue
			}
			kept = append(kept, pc)
			g.changes = append(g.changes, c)
		}
		g.Changes = kept
		if len(g.Changes) > 0 {
			cs.pending[g.Key] = g
		}
	}
	return nil
}

// saveLocked writes the pending changes to the store. cs.mu must be held.
func (cs *changeScheduler) saveLocked() error {
	groups := make([]*pendingGroup, 0, len(cs.pending))
	for _, k := range slices.Sorted(maps.Keys(cs.pending)) {
		groups = append(groups, cs.pending[k])
	}
	v, err := json.Marshal(groups)
	if err != nil {
		return err
	}
	return cs.set.store.SetState(stateObject(cs.cfg.Name), pendingKey, v)
}

// timerKey names the timer of c.
func (cs *changeScheduler) timerKey(c store.Change) string {
	if cs.cfg.Type == "single_branch" {
		return ""
	}
	return strings.Join([]string{c.Codebase, c.Project, c.Repository, c.Branch}, "\x00")
}

func (cs *changeScheduler) reason() string {
	kind := "SingleBranchScheduler"
	if cs.cfg.Type == "any_branch" {
		kind = "AnyBranchScheduler"
	}
	return fmt.Sprintf("The %s scheduler named '%s' triggered this build", kind, cs.cfg.Name)
}

func (cs *changeScheduler) addChanges(changes []store.Change) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	timer := cs.cfg.TreeStableTimer.Duration
	moved := false
	for _, c := range changes {
		if !cs.filter.match(c) {
			continue
		}
		important := cs.filter.important(c)
		if !important && cs.cfg.OnlyImportant {
			continue
		}
		if timer == 0 {
			// Buildbot ignores unimportant changes without a timer.
			if important {
				if _, err := cs.set.newBuildset(cs.cfg, cs.reason(), []store.Change{c}, nil); err != nil {
					cs.set.log.Error("add buildset", "scheduler", cs.cfg.Name, "change", c.ID, "err", err)
				}
			}
			continue
		}
		k := cs.timerKey(c)
		g := cs.pending[k]
		if g == nil {
			g = &pendingGroup{Key: k}
			cs.pending[k] = g
		}
		g.Changes = append(g.Changes, pendingChange{ID: c.ID, Important: important})
		g.changes = append(g.changes, c)
		if important || !g.Deadline.IsZero() {
			g.Deadline = time.Now().Add(timer)
			moved = true
		}
	}
	if timer == 0 {
		return
	}
	if err := cs.saveLocked(); err != nil {
		cs.set.log.Error("save pending changes", "scheduler", cs.cfg.Name, "err", err)
	}
	if moved {
		select {
		case cs.kick <- struct{}{}:
		default:
		}
	}
}

// next returns the earliest deadline, and false when no timer runs.
func (cs *changeScheduler) next() (time.Time, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var next time.Time
	for _, g := range cs.pending {
		if !g.Deadline.IsZero() && (next.IsZero() || g.Deadline.Before(next)) {
			next = g.Deadline
		}
	}
	return next, !next.IsZero()
}

func (cs *changeScheduler) run(ctx context.Context) {
	for {
		var fire <-chan time.Time
		var t *time.Timer
		if next, ok := cs.next(); ok {
			t = time.NewTimer(time.Until(next))
			fire = t.C
		}
		select {
		case <-ctx.Done():
		case <-cs.kick:
		case <-fire:
			cs.fireDue()
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// fireDue adds a buildset for each group whose deadline has passed.
func (cs *changeScheduler) fireDue() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	now := time.Now()
	fired := false
	for _, k := range slices.Sorted(maps.Keys(cs.pending)) {
		g := cs.pending[k]
		if g.Deadline.IsZero() || g.Deadline.After(now) {
			continue
		}
		if _, err := cs.set.newBuildset(cs.cfg, cs.reason(), g.changes, nil); err != nil {
			cs.set.log.Error("add buildset; retrying after the timer", "scheduler", cs.cfg.Name, "err", err)
			g.Deadline = now.Add(max(cs.cfg.TreeStableTimer.Duration, retryDelay))
			continue
		}
		delete(cs.pending, k)
		fired = true
	}
	if fired {
		if err := cs.saveLocked(); err != nil {
			cs.set.log.Error("save pending changes", "scheduler", cs.cfg.Name, "err", err)
		}
	}
}
