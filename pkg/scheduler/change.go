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
	skipCI   []*regexp.Regexp
}

func newChangeFilter(sc config.Scheduler) changeFilter {
	f := changeFilter{sc: sc}
	if sc.BranchRe != "" {
		f.branchRe = regexp.MustCompile(sc.BranchRe) // checked by config.Parse
	}
	for _, p := range sc.SkipCIPatterns() {
		f.skipCI = append(f.skipCI, regexp.MustCompile(p)) // checked by config.Parse
	}
	return f
}

// match reports whether c passes the filter: a change whose comments
// match a skip_ci pattern does not.
func (f changeFilter) match(c store.Change) bool {
	sc := f.sc
	return !slices.ContainsFunc(f.skipCI, func(re *regexp.Regexp) bool { return re.MatchString(c.Comments) }) &&
		(sc.Branch == "" || c.Branch == sc.Branch) &&
		(f.branchRe == nil || f.branchRe.MatchString(c.Branch)) &&
		(sc.Project == "" || c.Project == sc.Project) &&
		(sc.Repository == "" || c.Repository == sc.Repository) &&
		(sc.Category == "" || c.Category == sc.Category) &&
		(sc.Codebase == "" || c.Codebase == sc.Codebase) &&
		takesCodebase(sc, c.Codebase)
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
// state cleared after, in two transactions.
//
// It also keeps in the store (state key "lastChange") the id up to which
// every change has been handled: built, made pending, or found not to
// pass the filter. A change is stored (by a poller or a webhook) before it
// is offered to the schedulers, so a master killed in between would lose
// it; when the master starts, each scheduler offers itself the changes
// after its lastChange. Against building a change twice (a crash after the
// buildset was added, before lastChange or the pending state was written),
// the changes that its buildsets already build are left out, then and
// from the restored pending ones.
type changeScheduler struct {
	set    *Set
	cfg    config.Scheduler
	filter changeFilter
	kick   chan struct{} // a deadline moved; buffered
	runJob

	mu      sync.Mutex
	pending map[string]*pendingGroup // guarded by mu: by timer key
	last    int64                    // guarded by mu: every change up to this id is handled
	handled map[int64]bool           // guarded by mu: changes handled after last
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

const (
	pendingKey = "pending"
	lastKey    = "lastChange"
)

// retryDelay is the least time before a scheduler tries again to add a
// buildset the store refused.
const retryDelay = time.Minute

// newChangeScheduler makes the scheduler of sc from its state in the
// store. With catchUp it offers itself the changes stored after the last
// it handled: at the master's start, and when a reconfig replaces a
// changed scheduler, since a change stored before the reconfig may be
// offered only after it (its offer waited for the reconfig, or comes from
// another master through the store's events), and starting from the
// newest would skip it for good. Without (a scheduler new to this run of
// the master), it starts from the newest change. s.opMu must be held.
func (s *Set) newChangeScheduler(sc config.Scheduler, catchUp bool) *changeScheduler {
	cs := &changeScheduler{
		set:     s,
		cfg:     sc,
		filter:  newChangeFilter(sc),
		kick:    make(chan struct{}, 1),
		pending: map[string]*pendingGroup{},
		handled: map[int64]bool{},
	}
	if err := cs.restore(); err != nil {
		s.log.Error("restore pending changes", "scheduler", sc.Name, "err", err)
	}
	if err := cs.catchUp(catchUp); err != nil {
		s.log.Error("catch up with the changes stored while down", "scheduler", sc.Name, "err", err)
	}
	return cs
}

// catchUp sets cs.last from the store and, with offer, offers cs the
// changes after it, leaving out those its buildsets already build.
func (cs *changeScheduler) catchUp(offer bool) error {
	name := stateObject(cs.cfg.Name)
	newest, err := cs.set.store.Changes(store.ChangeFilter{Desc: true, Limit: 1})
	if err != nil {
		return err
	}
	var top int64
	if len(newest) > 0 {
		top = newest[0].ID
	}
	v, found, err := cs.set.store.GetState(name, lastKey)
	if err != nil {
		return err
	}
	if !found || !offer {
		cs.last = top
		return cs.saveLast()
	}
	if err := json.Unmarshal(v, &cs.last); err != nil {
		return fmt.Errorf("decode state %s: %w", lastKey, err)
	}
	if top <= cs.last && len(cs.pending) == 0 {
		return nil
	}
	built, err := cs.set.builtChanges(cs.cfg.Name)
	if err != nil {
		return err
	}
	// Pending changes already in a buildset: the timer fired, the crash
	// came before the pending state was cleared.
	dropped := 0
	for k, g := range cs.pending {
		keep := g.Changes[:0]
		var keepC []store.Change
		for i, pc := range g.Changes {
			if built[pc.ID] {
				dropped++
				continue
			}
			keep = append(keep, pc)
			keepC = append(keepC, g.changes[i])
		}
		g.Changes, g.changes = keep, keepC
		if len(g.Changes) == 0 {
			delete(cs.pending, k)
		}
	}
	if dropped > 0 {
		cs.set.log.Warn("pending changes were already built before a crash: dropped", "scheduler", cs.cfg.Name, "changes", dropped)
		cs.mu.Lock()
		err := cs.saveLocked()
		cs.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if top <= cs.last {
		return nil
	}
	// Changes are numbered densely from 1, so the top-last newest are those
	// after last.
	after, err := cs.set.store.Changes(store.ChangeFilter{Desc: true, Limit: int(top - cs.last)})
	if err != nil {
		return err
	}
	slices.Reverse(after)
	var offer2 []store.Change
	var skip []int64
	for _, c := range after {
		switch {
		case c.ID <= cs.last:
		case built[c.ID] || cs.isPending(c.ID):
			skip = append(skip, c.ID)
		default:
			offer2 = append(offer2, c)
		}
	}
	if len(offer2) > 0 {
		ids := make([]int64, len(offer2))
		for i, c := range offer2 {
			ids[i] = c.ID
		}
		if cs.set.starting {
			cs.set.log.Warn("offering the changes stored but not scheduled before the master stopped", "scheduler", cs.cfg.Name, "changes", ids)
		} else {
			cs.set.log.Info("changed scheduler: offering the changes stored but not yet offered to its predecessor", "scheduler", cs.cfg.Name, "changes", ids)
		}
	}
	cs.mu.Lock()
	cs.markLocked(skip)
	cs.mu.Unlock()
	cs.addChanges(offer2)
	return nil
}

// isPending reports whether change id is pending.
func (cs *changeScheduler) isPending(id int64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, g := range cs.pending {
		if slices.ContainsFunc(g.Changes, func(pc pendingChange) bool { return pc.ID == id }) {
			return true
		}
	}
	return false
}

// markLocked records the changes ids as handled and moves last on as far
// as every change up to it is. cs.mu must be held.
func (cs *changeScheduler) markLocked(ids []int64) {
	for _, id := range ids {
		if id > cs.last {
			cs.handled[id] = true
		}
	}
	moved := false
	for cs.handled[cs.last+1] {
		delete(cs.handled, cs.last+1)
		cs.last++
		moved = true
	}
	if moved {
		if err := cs.saveLast(); err != nil {
			cs.set.log.Error("save the last change handled", "scheduler", cs.cfg.Name, "err", err)
		}
	}
}

// saveLast writes cs.last to the store. cs.mu must be held, or cs not yet
// running.
func (cs *changeScheduler) saveLast() error {
	v, err := json.Marshal(cs.last)
	if err != nil {
		return err
	}
	return cs.set.store.SetState(stateObject(cs.cfg.Name), lastKey, v)
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

// addChanges handles changes; one it has handled already (see markLocked)
// is left alone, so that a change offered twice builds once.
func (cs *changeScheduler) addChanges(changes []store.Change) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !cs.set.Enabled(cs.cfg.Name) {
		// Disabled, it ignores them, as buildbot's stops consuming changes.
		ids := make([]int64, len(changes))
		for i, c := range changes {
			ids[i] = c.ID
		}
		cs.markLocked(ids)
		return
	}
	timer := cs.cfg.TreeStableTimer.Duration
	moved := false
	var done []int64 // handled now; a buildset the store refused is not, and is offered again at the next start
	defer func() { cs.markLocked(done) }()
	for _, c := range changes {
		if c.ID <= cs.last || cs.handled[c.ID] {
			// Offered again: by the store's event and by the poller or
			// hook that added it, or by a master that became the leader.
			continue
		}
		if !cs.filter.match(c) {
			done = append(done, c.ID)
			continue
		}
		important := cs.filter.important(c)
		if !important && cs.cfg.OnlyImportant {
			done = append(done, c.ID)
			continue
		}
		if timer == 0 {
			// Buildbot ignores unimportant changes without a timer.
			if important {
				if _, err := cs.set.newBuildset(cs.cfg, cs.reason(), []store.Change{c}, nil); err != nil {
					cs.set.log.Error("add buildset", "scheduler", cs.cfg.Name, "change", c.ID, "err", err)
					continue
				}
			}
			done = append(done, c.ID)
			continue
		}
		k := cs.timerKey(c)
		g := cs.pending[k]
		if g == nil {
			g = &pendingGroup{Key: k}
			cs.pending[k] = g
		}
		if slices.ContainsFunc(g.Changes, func(pc pendingChange) bool { return pc.ID == c.ID }) {
			continue // offered again: already pending
		}
		done = append(done, c.ID)
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

// next returns the earliest deadline, and false when no timer runs (none
// runs while the scheduler is disabled: its gathered changes wait).
func (cs *changeScheduler) next() (time.Time, bool) {
	if !cs.set.Enabled(cs.cfg.Name) {
		return time.Time{}, false
	}
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
	if !cs.set.Enabled(cs.cfg.Name) {
		return // the changes wait for it to be enabled again
	}
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
