package scheduler

import (
	"log/slog"
	"slices"
	"sync"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Store is what the schedulers need of the store.
type Store interface {
	Builder(id int64) (store.Builder, error)
	BuilderByName(name string) (store.Builder, error)
	AddBuildset(nb store.NewBuildset) (int64, map[int64]int64, error)
}

// Set holds the configured schedulers.
type Set struct {
	store Store
	wake  func()
	log   *slog.Logger

	mu         sync.Mutex
	force      map[string]*forceScheduler // guarded by mu
	forceOrder []string                   // guarded by mu
}

// New makes the schedulers of cfg. wake is called after a buildset is added
// (nil means nothing to call); a nil log discards.
func New(cfg []config.Scheduler, st Store, wake func(), log *slog.Logger) *Set {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if wake == nil {
		wake = func() {}
	}
	s := &Set{store: st, wake: wake, log: log}
	s.Reconfigure(cfg)
	return s
}

// Reconfigure replaces the schedulers with those of cfg.
func (s *Set) Reconfigure(cfg []config.Scheduler) {
	force := map[string]*forceScheduler{}
	var order []string
	for _, sc := range cfg {
		switch sc.Type {
		case "force":
			force[sc.Name] = &forceScheduler{name: sc.Name, builders: slices.Clone(sc.BuilderNames)}
			order = append(order, sc.Name)
		default:
			s.log.Warn("scheduler type is not run by this version of gbb; it is ignored", "scheduler", sc.Name, "type", sc.Type)
		}
	}
	s.mu.Lock()
	s.force, s.forceOrder = force, order
	s.mu.Unlock()
}
