package master

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/store"
)

// missingWatcher writes a WorkerMissing outbox entry when a worker with
// notify_on_missing stays disconnected past its missing_timeout, once per
// absence, as buildbot's worker missing timer: the timer starts when the
// master starts or the worker disconnects, and stops when it connects.
type missingWatcher struct {
	st  store.Store
	bus *events.Bus
	log *slog.Logger

	mu      sync.Mutex
	workers []config.Worker // guarded by mu
	changed chan struct{}   // capacity 1: the workers changed
}

func newMissingWatcher(st store.Store, bus *events.Bus, workers []config.Worker, log *slog.Logger) *missingWatcher {
	return &missingWatcher{st: st, bus: bus, log: log, workers: workers, changed: make(chan struct{}, 1)}
}

// setWorkers follows a reconfig.
func (m *missingWatcher) setWorkers(ws []config.Worker) {
	m.mu.Lock()
	m.workers = ws
	m.mu.Unlock()
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// absence is what the watcher knows of one worker away.
type absence struct {
	since    time.Time // when it was found away
	reported bool      // its WorkerMissing entry is written
}

// Run watches until ctx is done.
func (m *missingWatcher) Run(ctx context.Context) error {
	away := map[string]*absence{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		sub, err := m.bus.Subscribe(ctx, []string{"workers/*/connected", "workers/*/disconnected"}, m.bus.Last())
		if err != nil {
			return nil // ctx done, or the bus gone: nothing to watch
		}
		for resub := false; !resub; {
			next := m.check(away)
			if !next.IsZero() {
				timer.Reset(time.Until(next))
			} else {
				timer.Stop()
			}
			select {
			case <-ctx.Done():
				sub.Close()
				return nil
			case _, ok := <-sub.C:
				// Fell behind: subscribe again; check reads the store.
				resub = !ok
			case <-m.changed:
			case <-timer.C:
			}
		}
	}
}

// check reads the workers' connections from the store, writes the
// entries that are due and returns when the next one falls due (zero:
// none).
func (m *missingWatcher) check(away map[string]*absence) time.Time {
	m.mu.Lock()
	workers := m.workers
	m.mu.Unlock()
	now := time.Now()
	var next time.Time
	configured := map[string]bool{}
	for _, w := range workers {
		if len(w.NotifyOnMissing) == 0 {
			continue
		}
		configured[w.Name] = true
		sw, err := m.st.WorkerByName(w.Name)
		if err != nil {
			m.log.Error("missing workers: read worker", "worker", w.Name, "err", err)
			continue
		}
		if len(sw.ConnectedTo) > 0 {
			delete(away, w.Name)
			continue
		}
		a := away[w.Name]
		if a == nil {
			a = &absence{since: now}
			away[w.Name] = a
		}
		if a.reported {
			continue
		}
		due := a.since.Add(w.MissingAfter())
		if !now.Before(due) {
			if err := m.st.AddWorkerMissing(w.Name, a.since); err != nil {
				m.log.Error("missing workers: record", "worker", w.Name, "err", err)
				due = now.Add(time.Minute)
			} else {
				a.reported = true
				m.log.Info("worker missing", "worker", w.Name, "since", a.since.UTC().Format(time.RFC3339), "missing_timeout", w.MissingAfter())
				continue
			}
		}
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	for name := range away {
		if !configured[name] {
			delete(away, name)
		}
	}
	return next
}
