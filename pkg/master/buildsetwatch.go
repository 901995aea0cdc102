package master

import (
	"context"

	"github.com/gbb-ci/gbb/pkg/events"
)

// watchBuildsets tells the schedulers (the dependent ones) of every
// buildset added or completed, until ctx is done. A subscription that
// falls behind is taken again; the schedulers read the store, so a missed
// notice costs only a delay.
func watchBuildsets(ctx context.Context, bus *events.Bus, notify func()) error {
	for ctx.Err() == nil {
		sub, err := bus.Subscribe(ctx, []string{"buildsets/*/new", "buildsets/*/complete"}, bus.Last())
		if err != nil {
			return nil // ctx done, or the bus gone
		}
		notify() // anything since the last subscription
		for open := true; open; {
			select {
			case <-ctx.Done():
				sub.Close()
				return nil
			case _, open = <-sub.C:
				if open {
					notify()
				}
			}
		}
	}
	return nil
}
