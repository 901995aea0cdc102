package master

import (
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/metrics"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// newMetrics makes the master's metrics. They read *st, *engine and *srv
// when scraped, which Run sets before the web server serves.
func (m *Master) newMetrics(st *store.Store, engine **build.Engine, srv **protocol.Server) *metrics.Metrics {
	var names sync.Map // builder id → name: a builder's name never changes
	return metrics.New(metrics.Config{
		Pending: func() (int, time.Time, error) { return (*st).PendingStats() },
		Workers: func() []metrics.WorkerState { return m.workerStates(*st, *engine) },
		StoreSize: func() (int64, error) {
			return (*st).Size()
		},
		Builder: func(id int64) (string, bool) {
			if n, ok := names.Load(id); ok {
				return n.(string), true
			}
			b, err := (*st).Builder(id)
			if err != nil {
				return "", false
			}
			names.Store(id, b.Name)
			return b.Name, true
		},
		BuildBuilder: func(id int64) (int64, bool) {
			b, err := (*st).Build(id)
			return b.BuilderID, err == nil
		},
		Streams: func() int { return (*srv).Streams() },
	})
}

// workerStates returns the configured workers as the metrics show them:
// connected to this master, running one of its builds, paused.
func (m *Master) workerStates(st store.Store, engine *build.Engine) []metrics.WorkerState {
	m.mu.Lock()
	cfg := m.cfg
	m.mu.Unlock()
	masterID := m.masterID.Load()
	known := map[string]store.Worker{}
	if ws, err := st.Workers(); err == nil {
		for _, w := range ws {
			known[w.Name] = w
		}
	}
	busy := map[string]bool{}
	running, _ := engine.Running()
	for _, r := range running {
		busy[r.Worker] = true
	}
	out := make([]metrics.WorkerState, 0, len(cfg.Workers))
	for _, w := range cfg.Workers {
		sw := known[w.Name]
		connected := false
		for _, id := range sw.ConnectedTo {
			connected = connected || id == masterID
		}
		out = append(out, metrics.WorkerState{Name: w.Name, Connected: connected, Busy: busy[w.Name], Paused: sw.Paused})
	}
	return out
}

// builderNames lists the configured builders' names.
func builderNames(bs []config.Builder) []string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name
	}
	return names
}
