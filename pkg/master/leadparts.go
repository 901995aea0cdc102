package master

import (
	"context"
	"errors"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/reporter"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// leaderParts are the components a leader's term runs.
type leaderParts struct {
	st        store.Store
	bus       *events.Bus
	engine    interface{ Wake() }
	pollers   *pollers
	reporters *reporter.Dispatcher
	missing   *missingWatcher
}

// recentChanges is how many of the newest changes a leader offers its
// schedulers again when it missed events (they leave out those they
// handled).
const recentChanges = 1000

// runLeader runs what only the leader runs, until ctx is done (its term
// ended), closing started once the schedulers and change sources run.
// The schedulers catch up at once with the changes stored since each
// handled its last (whichever master stored them), then hear of each new
// one through the store's events, which on PostgreSQL come from every
// master.
func (m *Master) runLeader(ctx context.Context, started chan<- struct{}, p leaderParts) error {
	after := p.bus.Last() // before the catch-up: nothing falls between
	m.mu.Lock()
	cfg := m.cfg
	_, leader := splitSchedulers(cfg.Schedulers)
	lead := scheduler.New(leader, p.st, p.engine.Wake, m.log)
	m.lead, m.leadCtx = lead, ctx
	p.pollers.apply(ctx, cfg.ChangeSources)
	m.mu.Unlock()
	// The term ends at once for the direct offers too (offerChanges).
	stopOffers := context.AfterFunc(ctx, func() {
		m.leadMu.Lock()
		m.mu.Lock()
		m.lead, m.leadCtx = nil, nil
		m.mu.Unlock()
		m.leadMu.Unlock()
	})
	defer func() {
		if stopOffers() {
			m.leadMu.Lock()
			m.mu.Lock()
			m.lead, m.leadCtx = nil, nil
			m.mu.Unlock()
			m.leadMu.Unlock()
		}
		p.pollers.stop()
	}()
	close(started)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return lead.Run(gctx) })
	g.Go(func() error { return feedChanges(gctx, p.bus, p.st, after, lead.AddChanges, m.log) })
	g.Go(func() error { return watchBuildsets(gctx, p.bus, lead.BuildsetsChanged) })
	g.Go(func() error { return runJanitor(gctx, p.st, m.janitorConfig, m.log) })
	g.Go(func() error { return p.reporters.Run(gctx) })
	g.Go(func() error { return p.missing.Run(gctx) })
	return g.Wait()
}

// feedChanges offers every change the store announces to offer, until ctx
// is done. When it missed events (it fell behind), it offers the newest
// changes again from the store.
func feedChanges(ctx context.Context, bus *events.Bus, st store.Store, after uint64, offer func([]store.Change), log interface {
	Error(msg string, args ...any)
}) error {
	for ctx.Err() == nil {
		sub, err := bus.Subscribe(ctx, []string{"changes/*/new"}, after)
		if errors.Is(err, events.ErrGone) {
			after = bus.Last()
			recent, err := st.Changes(store.ChangeFilter{Desc: true, Limit: recentChanges})
			if err != nil {
				log.Error("read the newest changes", "err", err)
				continue
			}
			slices.Reverse(recent)
			offer(recent)
			continue
		}
		if err != nil {
			return nil // ctx done, or the bus gone
		}
		for ev := range sub.C {
			after = ev.ID
			if c, ok := ev.Record.(store.Change); ok {
				offer([]store.Change{c})
			}
		}
	}
	return nil
}

// watchRequests wakes the engine for every request added or released,
// whichever master did it (on PostgreSQL the other masters' events come
// to this bus too), until ctx is done. A subscription that falls behind
// is taken again; the engine's slow tick covers what was missed.
func watchRequests(ctx context.Context, bus *events.Bus, wake func()) error {
	for ctx.Err() == nil {
		sub, err := bus.Subscribe(ctx, []string{"buildrequests/*/new", "buildrequests/*/unclaimed"}, bus.Last())
		if err != nil {
			return nil
		}
		wake()
		for range sub.C {
			wake()
		}
	}
	return nil
}

// offerChanges offers changes a poller or a webhook stored to the
// leader's schedulers when this master leads; otherwise the leader hears
// of them through the store's events.
func (m *Master) offerChanges(changes []store.Change) {
	m.leadMu.RLock()
	defer m.leadMu.RUnlock()
	m.mu.Lock()
	lead := m.lead
	m.mu.Unlock()
	if lead != nil {
		lead.AddChanges(changes)
	}
}

// setSchedulerEnabled is the API's enable control: a force or triggerable
// scheduler changes here; another changes in the leader's schedulers, or,
// when another master leads, in the store, where the leader reads it
// within a heartbeat_interval.
func (m *Master) setSchedulerEnabled(name string, enabled bool) error {
	m.mu.Lock()
	every, lead, st, cfg := m.scheds, m.lead, m.st, m.cfg
	m.mu.Unlock()
	if every == nil {
		return errors.New("master not running")
	}
	err := every.SetEnabled(name, enabled)
	if !errors.Is(err, scheduler.ErrUnknownScheduler) {
		return err
	}
	if lead != nil {
		return lead.SetEnabled(name, enabled)
	}
	if !slices.ContainsFunc(cfg.Schedulers, func(sc config.Scheduler) bool { return sc.Name == name }) {
		return err
	}
	return scheduler.KeepEnabled(st, name, enabled)
}

// schedulerEnabled reports whether the scheduler sc is enabled, wherever
// it runs. m.mu must be held.
func (m *Master) schedulerEnabledLocked(sc config.Scheduler) bool {
	switch {
	case onEveryMaster(sc.Type):
		return m.scheds == nil || m.scheds.Enabled(sc.Name)
	case m.lead != nil:
		return m.lead.Enabled(sc.Name)
	case m.st != nil:
		on, err := scheduler.StoredEnabled(m.st, sc.Name)
		return err != nil || on
	}
	return true
}

// triggerer routes trigger steps: a triggerable scheduler runs here; a
// nightly_triggerable one runs on the leader, and the trigger is recorded
// in the store, where the leader's scheduler reads it at its next time,
// whichever master ran the step.
type triggerer struct{ m *Master }

func (t triggerer) Trigger(ctx context.Context, name string, req scheduler.TriggerRequest) (int64, map[int64]int64, error) {
	t.m.mu.Lock()
	every, st := t.m.scheds, t.m.st
	nightly := slices.ContainsFunc(t.m.cfg.Schedulers, func(sc config.Scheduler) bool {
		return sc.Name == name && sc.Type == "nightly_triggerable"
	})
	t.m.mu.Unlock()
	switch {
	case every == nil || st == nil:
		return 0, nil, errors.New("master not running")
	case nightly:
		if err := scheduler.RecordNightlyTrigger(st, name, req); err != nil {
			return 0, nil, err
		}
		t.m.log.Info("trigger recorded for the next time", "scheduler", name, "parent", req.ParentBuildID)
		return 0, nil, nil
	}
	return every.Trigger(ctx, name, req)
}

// openStore opens the store cfg names: a bbolt file of the basedir, or a
// PostgreSQL database (store.OpenURL); its errors never show a password.
func openStore(cfg config.DB, basedir string, opts store.Options) (store.Store, error) {
	return store.OpenURL(cfg.URL, basedir, opts)
}

// reloadEnabled reads again which schedulers are enabled: another master
// may have changed it.
func (m *Master) reloadEnabled() {
	m.mu.Lock()
	every, lead := m.scheds, m.lead
	m.mu.Unlock()
	if every != nil {
		every.ReloadEnabled()
	}
	if lead != nil {
		lead.ReloadEnabled()
	}
}
