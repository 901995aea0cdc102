package master

import (
	"context"
	"log/slog"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// janitorStore is what the janitor needs of the store.
type janitorStore interface {
	DeleteLogsBefore(t time.Time) (int, error)
	DeleteBuildsBefore(t time.Time) (int, error)
}

// runJanitor deletes old logs and builds as cfg says, once at start and
// then every cfg().Interval, until ctx is done; cfg is asked before each
// run, so a reconfig takes effect at the next one. It returns nil: a failed
// run is logged and tried again at the next interval. A nil log discards.
func runJanitor(ctx context.Context, st janitorStore, cfg func() config.Janitor, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for {
		j := cfg()
		janitorPass(st, j, time.Now(), log)
		every := j.Interval.Duration
		if every <= 0 {
			every = config.DefaultJanitorInterval
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// janitorPass runs the janitor once at now.
func janitorPass(st janitorStore, j config.Janitor, now time.Time, log *slog.Logger) {
	if h := j.BuildHorizon.Duration; h > 0 {
		start := time.Now()
		n, err := st.DeleteBuildsBefore(now.Add(-h))
		if err != nil {
			log.Error("janitor: delete old builds", "err", err, "deleted", n)
		} else if n > 0 {
			log.Info("janitor: deleted old builds", "builds", n, "build_horizon", h.String(), "took_seconds", time.Since(start).Seconds())
		}
	}
	if h := j.LogHorizon.Duration; h > 0 {
		start := time.Now()
		n, err := st.DeleteLogsBefore(now.Add(-h))
		if err != nil {
			log.Error("janitor: delete old logs", "err", err, "deleted", n)
		} else if n > 0 {
			log.Info("janitor: deleted old logs", "logs", n, "log_horizon", h.String(), "took_seconds", time.Since(start).Seconds())
		}
	}
}

var _ janitorStore = (*store.DB)(nil)
