package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Store is what the schedulers need of the store.
type Store interface {
	Builder(id int64) (store.Builder, error)
	BuilderByName(name string) (store.Builder, error)
	AddBuildset(nb store.NewBuildset) (int64, map[int64]int64, error)
	Change(id int64) (store.Change, error)
	Buildset(id int64) (store.Buildset, error)
	BuildsetPage(f store.BuildsetFilter) ([]store.Buildset, error)
	Workers() ([]store.Worker, error)
	// Changes and Buildsets are read once at start, to schedule the
	// changes a crash left stored but not scheduled.
	Changes(f store.ChangeFilter) ([]store.Change, error)
	Buildsets(complete *bool) ([]store.Buildset, error)
	GetState(objectName, key string) (json.RawMessage, bool, error)
	SetState(objectName, key string, value json.RawMessage) error
}

// Set holds the configured schedulers.
//
// Lock order: opMu, then a scheduler's own mu, then mu. Store calls are
// never made under mu.
type Set struct {
	store Store
	wake  func()
	log   *slog.Logger

	// opMu serializes AddChanges and Reconfigure, so that no change is
	// offered while a changed scheduler is being replaced.
	opMu sync.Mutex

	mu         sync.Mutex
	force      map[string]*forceScheduler // guarded by mu
	forceOrder []string                   // guarded by mu
	trigger    map[string]*triggerable    // guarded by mu
	timers     map[string]timer           // guarded by mu: change, periodic and nightly schedulers by name
	disabled   map[string]bool            // guarded by mu: the schedulers disabled (see Enabled)
	runCtx     context.Context            // guarded by mu: Run's context while it runs, else nil
	// starting is set while New makes the first schedulers: they catch up
	// with the changes stored after the last they handled. built caches,
	// for them, the changes each scheduler's buildsets build.
	starting bool                      // guarded by opMu
	built    map[string]map[int64]bool // guarded by opMu; nil until needed, and after New
	// newest holds, with built, the submission time of the newest
	// buildset of each scheduler name and reason: a timed scheduler's last
	// build, when a crash came before it recorded it.
	newest  map[[2]string]time.Time // guarded by opMu; as built
	stopped bool                    // guarded by mu: Run has returned or is returning
	wg      sync.WaitGroup          // the timers' goroutines; Add only under mu while Run runs
}

// timer is a scheduler that runs a goroutine under Run: the change
// schedulers (for tree_stable_timer), periodic and nightly.
type timer interface {
	config() config.Scheduler
	// run runs the scheduler's timers until ctx is done.
	run(ctx context.Context)
	// job returns the control of the goroutine running run, if any.
	job() *runJob
}

// runJob controls a goroutine running a timer's run.
type runJob struct {
	cancel context.CancelFunc // guarded by Set.mu
	done   chan struct{}      // closed when run has returned; nil if never started
}

func (j *runJob) job() *runJob { return j }

// New makes the schedulers of cfg. wake is called after a buildset is added
// (nil means nothing to call); a nil log discards. Change schedulers with a
// tree_stable_timer restore the changes they had gathered from the store.
func New(cfg []config.Scheduler, st Store, wake func(), log *slog.Logger) *Set {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if wake == nil {
		wake = func() {}
	}
	s := &Set{store: st, wake: wake, log: log, timers: map[string]timer{}, disabled: map[string]bool{}}
	s.opMu.Lock()
	s.starting = true
	s.opMu.Unlock()
	s.Reconfigure(cfg)
	s.opMu.Lock()
	s.starting, s.built, s.newest = false, nil, nil
	s.opMu.Unlock()
	return s
}

// builtChanges returns the ids of the changes that the buildsets of the
// scheduler called name build, read from the store once for all the
// schedulers New makes. s.opMu must be held.
func (s *Set) builtChanges(name string) (map[int64]bool, error) {
	if err := s.readBuildsets(); err != nil {
		return nil, err
	}
	return s.built[name], nil
}

// newestBuildset returns the submission time of the newest buildset of the
// scheduler called name with the given reason (zero when there is none),
// read as builtChanges. s.opMu must be held.
func (s *Set) newestBuildset(name, reason string) (time.Time, error) {
	if err := s.readBuildsets(); err != nil {
		return time.Time{}, err
	}
	return s.newest[[2]string{name, reason}], nil
}

// readBuildsets fills built and newest, once. s.opMu must be held.
func (s *Set) readBuildsets() error {
	if s.built == nil {
		all, err := s.store.Buildsets(nil)
		if err != nil {
			return err
		}
		s.built, s.newest = map[string]map[int64]bool{}, map[[2]string]time.Time{}
		for _, bs := range all {
			k := [2]string{bs.SchedulerName, bs.Reason}
			if bs.SubmittedAt.After(s.newest[k]) {
				s.newest[k] = bs.SubmittedAt
			}
			if len(bs.ChangeIDs) == 0 {
				continue
			}
			m := s.built[bs.SchedulerName]
			if m == nil {
				m = map[int64]bool{}
				s.built[bs.SchedulerName] = m
			}
			for _, id := range bs.ChangeIDs {
				m[id] = true
			}
		}
	}
	return nil
}

// Reconfigure replaces the schedulers with those of cfg. A change,
// periodic or nightly scheduler whose config is unchanged (its line aside)
// keeps running with its state; one that is removed stops; one that changed
// stops and starts again from its state in the store.
func (s *Set) Reconfigure(cfg []config.Scheduler) {
	s.opMu.Lock()
	defer s.opMu.Unlock()

	force := map[string]*forceScheduler{}
	trigger := map[string]*triggerable{}
	var order []string
	wanted := map[string]config.Scheduler{}
	names := map[string]bool{}
	for _, sc := range cfg {
		names[sc.Name] = true
		switch sc.Type {
		case "force":
			force[sc.Name] = newForceScheduler(sc)
			order = append(order, sc.Name)
		case "triggerable":
			trigger[sc.Name] = &triggerable{cfg: sc}
		case "single_branch", "any_branch", "periodic", "nightly", "dependent", "nightly_triggerable":
			wanted[sc.Name] = sc
		default:
			s.log.Warn("scheduler type is not run by this version of gbb; it is ignored", "scheduler", sc.Name, "type", sc.Type)
		}
	}

	s.readEnabled(names)
	s.mu.Lock()
	s.force, s.forceOrder, s.trigger = force, order, trigger
	var stop []*runJob
	changed := map[string]bool{} // replaced by a new config: their successors go on from their state
	for name, t := range s.timers {
		if sc, ok := wanted[name]; ok && sameConfig(sc, t.config()) {
			delete(wanted, name)
			continue
		}
		_, changed[name] = wanted[name]
		delete(s.timers, name)
		j := t.job()
		if j.cancel != nil {
			j.cancel()
			stop = append(stop, j)
		}
	}
	s.mu.Unlock()

	// A scheduler that changed writes its state until its goroutine exits:
	// wait before its successor reads it.
	for _, j := range stop {
		<-j.done
	}
	made := map[string]timer{}
	for _, name := range slices.Sorted(maps.Keys(wanted)) {
		sc := wanted[name]
		var t timer
		switch sc.Type {
		case "single_branch", "any_branch":
			t = s.newChangeScheduler(sc, s.starting || changed[name])
		case "dependent", "nightly_triggerable":
			var err error
			if t, err = s.newFollower(sc); err != nil {
				s.log.Error("scheduler not started", "scheduler", name, "err", err)
				continue
			}
		default:
			ts, err := s.newTimedScheduler(sc, s.starting)
			if err != nil {
				s.log.Error("scheduler not started", "scheduler", name, "err", err)
				continue
			}
			t = ts
		}
		made[name] = t
	}

	if !s.starting {
		// Read for the changed schedulers' catch-up: not kept, as
		// buildsets come and go until the next reconfig.
		s.built, s.newest = nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, t := range made {
		s.timers[name] = t
		s.startLocked(t)
	}
}

// sameConfig reports whether a and b configure the same scheduler.
func sameConfig(a, b config.Scheduler) bool {
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}

// startLocked starts t's goroutine if Run is running. s.mu must be held.
func (s *Set) startLocked(t timer) {
	if s.runCtx == nil || s.stopped {
		return
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	j := t.job()
	j.cancel, j.done = cancel, make(chan struct{})
	s.wg.Go(func() {
		defer close(j.done)
		t.run(ctx)
	})
}

// Run runs the schedulers' timers (tree_stable_timer, periodic, nightly)
// until ctx is done, and returns after their goroutines have exited. Call
// it once, after New; schedulers added by Reconfigure while it runs start
// at once. It returns an error only when called twice.
func (s *Set) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.runCtx != nil {
		s.mu.Unlock()
		return errors.New("scheduler: Run called twice")
	}
	s.runCtx = ctx
	for _, name := range slices.Sorted(maps.Keys(s.timers)) {
		s.startLocked(s.timers[name])
	}
	s.mu.Unlock()

	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// AddChanges offers new changes (already stored, in order) to every change
// scheduler, and to the periodic and nightly schedulers that gather them
// for only_if_changed. A scheduler with no tree_stable_timer adds a buildset
// for an important change before AddChanges returns; one with a timer
// records the change in the store before AddChanges returns.
func (s *Set) AddChanges(changes []store.Change) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	var recv []changeReceiver
	for _, name := range slices.Sorted(maps.Keys(s.timers)) {
		if r, ok := s.timers[name].(changeReceiver); ok {
			recv = append(recv, r)
		}
	}
	s.mu.Unlock()
	for _, r := range recv {
		r.addChanges(changes)
	}
}

// changeReceiver is a scheduler that takes changes.
type changeReceiver interface {
	addChanges(changes []store.Change)
}

// stateObject is the object name under which the scheduler called name
// keeps its state in the store.
func stateObject(name string) string { return "scheduler:" + name }

// newBuildset adds a buildset of the scheduler sc for changes (possibly
// none, then of ss) and wakes the distributor.
func (s *Set) newBuildset(sc config.Scheduler, reason string, changes []store.Change, ss []store.SourceStamp) (int64, error) {
	return s.newBuildsetAt(sc, reason, changes, ss, time.Time{})
}

// newBuildsetAt is newBuildset with the buildset submitted at the time at
// (zero means now).
func (s *Set) newBuildsetAt(sc config.Scheduler, reason string, changes []store.Change, ss []store.SourceStamp, at time.Time) (int64, error) {
	ids, err := s.builderIDs(sc.BuilderNames)
	if err != nil {
		return 0, err
	}
	props, err := schedulerProperties(sc)
	if err != nil {
		return 0, err
	}
	nb := store.NewBuildset{
		Reason:        reason,
		SchedulerName: sc.Name,
		SourceStamps:  ss,
		Properties:    props,
		BuilderIDs:    ids,
		Priority:      sc.Priority,
		SubmittedAt:   at,
	}
	if len(changes) > 0 {
		nb.SourceStamps = changeStamps(sc, changes)
		for _, c := range changes {
			nb.ChangeIDs = append(nb.ChangeIDs, c.ID)
		}
		slices.Sort(nb.ChangeIDs)
	}
	bsid, _, err := s.store.AddBuildset(nb)
	if err != nil {
		return 0, err
	}
	s.log.Info("buildset added", "scheduler", sc.Name, "buildset", bsid, "changes", nb.ChangeIDs)
	s.wake()
	return bsid, nil
}

func (s *Set) builderIDs(names []string) ([]int64, error) {
	ids := make([]int64, 0, len(names))
	for _, n := range names {
		b, err := s.store.BuilderByName(n)
		if err != nil {
			return nil, fmt.Errorf("builder %q: %w", n, err)
		}
		ids = append(ids, b.ID)
	}
	return ids, nil
}

// schedulerProperties returns sc's properties and "scheduler", all with
// source "Scheduler".
func schedulerProperties(sc config.Scheduler) (store.Properties, error) {
	props := store.Properties{}
	for k, v := range sc.Properties {
		p, err := NewProperty(v, "Scheduler")
		if err != nil {
			return nil, fmt.Errorf("property %s: %w", k, err)
		}
		props[k] = p
	}
	props["scheduler"], _ = NewProperty(sc.Name, "Scheduler")
	return props, nil
}

// sourceStamps returns one sourcestamp per codebase, from the newest change
// of each, ordered by codebase.
func sourceStamps(changes []store.Change) []store.SourceStamp {
	newest := map[string]store.Change{}
	for _, c := range changes {
		if n, ok := newest[c.Codebase]; !ok || c.ID > n.ID {
			newest[c.Codebase] = c
		}
	}
	out := make([]store.SourceStamp, 0, len(newest))
	for _, c := range newest {
		out = append(out, store.SourceStamp{
			Codebase:   c.Codebase,
			Branch:     c.Branch,
			Revision:   c.Revision,
			Repository: c.Repository,
			Project:    c.Project,
		})
	}
	slices.SortFunc(out, func(a, b store.SourceStamp) int { return cmp.Compare(a.Codebase, b.Codebase) })
	return out
}
