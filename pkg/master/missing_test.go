package master

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestWorkerMissing: a worker with notify_on_missing away past its
// missing_timeout gets one WorkerMissing outbox entry per absence, as
// buildbot's missing timer: from the master's start, and again after it
// came back and left; none for a worker without notify_on_missing, nor
// for one back in time.
func TestWorkerMissing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	synctest.Test(t, func(t *testing.T) {
		bus := events.New(events.Config{})
		st, err := store.Open(path, store.Options{Events: bus})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		st.SetOutbox(func() {})
		ms, _ := st.EnsureMaster("m")
		w1, _ := st.EnsureWorker("w1")
		w2, _ := st.EnsureWorker("w2")
		w3, _ := st.EnsureWorker("quiet")
		const timeout = 10 * time.Minute
		workers := []config.Worker{
			{Name: "w1", NotifyOnMissing: []string{"a@example.org"}, MissingTimeout: timeout},
			{Name: "w2", NotifyOnMissing: []string{"a@example.org"}, MissingTimeout: timeout},
			{Name: "quiet", MissingTimeout: timeout},
		}
		if err := st.WorkerConnected(w2.ID, ms.ID, nil); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		mw := newMissingWatcher(st, bus, workers, slog.New(slog.DiscardHandler))
		done := make(chan error)
		go func() { done <- mw.Run(ctx) }()
		entries := func() []string {
			es, err := st.OutboxAfter(0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, e := range es {
				out = append(out, e.Worker)
			}
			return out
		}
		synctest.Wait()
		time.Sleep(timeout - time.Second)
		synctest.Wait()
		if got := entries(); len(got) != 0 {
			t.Fatalf("entries before the timeout: %v", got)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := entries(); len(got) != 1 || got[0] != "w1" {
			t.Fatalf("entries after w1's timeout: %v", got)
		}
		// w1 stays away: no second entry for the same absence. w2 leaves
		// and comes back in time: none.
		st.WorkerDisconnected(w2.ID, ms.ID)
		synctest.Wait()
		time.Sleep(timeout / 2)
		st.WorkerConnected(w2.ID, ms.ID, nil)
		synctest.Wait()
		time.Sleep(3 * timeout)
		synctest.Wait()
		if got := entries(); len(got) != 1 {
			t.Fatalf("entries: %v, want w1's one", got)
		}
		// w1 comes back and leaves again: a new absence, a new entry.
		st.WorkerConnected(w1.ID, ms.ID, nil)
		synctest.Wait()
		st.WorkerDisconnected(w1.ID, ms.ID)
		synctest.Wait()
		time.Sleep(timeout + time.Second)
		synctest.Wait()
		if got := entries(); len(got) != 2 || got[1] != "w1" {
			t.Fatalf("entries after w1's second absence: %v", got)
		}
		_ = w3
		cancel()
		<-done
	})
}
