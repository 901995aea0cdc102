package master

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testpg"
	"github.com/gbb-ci/gbb/internal/teststore"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// newPGDatabase starts a PostgreSQL server for t and returns the URL of a
// new database on it.
func newPGDatabase(t *testing.T) string {
	t.Helper()
	srv, err := testpg.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	return srv.NewDatabase(t)
}

// TestSyncMastersAtOnce: masters sharing a PostgreSQL store that start
// together (each on its own connections) each record their place on the
// shared builders and workers; none loses another's, as a read of the
// builder or worker then a write of the whole list would.
func TestSyncMastersAtOnce(t *testing.T) {
	t.Parallel()
	url := newPGDatabase(t)
	const masters, builders, workers = 4, 6, 3
	cfg := &config.Config{}
	var workerNames []string
	for i := range workers {
		workerNames = append(workerNames, fmt.Sprint("w", i))
		cfg.Workers = append(cfg.Workers, config.Worker{Name: workerNames[i]})
	}
	for i := range builders {
		cfg.Builders = append(cfg.Builders, config.Builder{Name: fmt.Sprint("b", i), WorkerNames: workerNames})
	}
	sts := make([]store.Store, masters)
	ms := make([]*Master, masters)
	for i := range masters {
		sts[i] = teststore.OpenURL(t, url, store.Options{})
		ms[i] = New(t.TempDir(), cfg, nil)
	}
	ids := make([]int64, masters)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range masters {
		wg.Go(func() {
			<-start
			id, err := ms[i].sync(sts[i], cfg)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(ids)
	bs, err := sts[0].Builders()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if !slices.Equal(b.MasterIDs, ids) {
			t.Errorf("builder %s on masters %v, want %v", b.Name, b.MasterIDs, ids)
		}
	}
	ws, err := sts[0].Workers()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		per := map[int64]int{}
		for _, bm := range w.ConfiguredOn {
			per[bm.MasterID]++
		}
		for _, id := range ids {
			if per[id] != builders {
				t.Errorf("worker %s configured on %d builders of master %d, want %d (all: %v)", w.Name, per[id], id, builders, w.ConfiguredOn)
			}
		}
	}
}

// TestHeartbeatRacesReap: on PostgreSQL, a master's late heartbeat races
// another master's reaper, on separate connections: exactly one wins. The
// heartbeat lands first (the master stays active and its build runs on),
// or the reaper does (the master is inactive, its build ended RETRY, and
// its heartbeat reports ErrDeclaredDead instead of bringing it back). A
// master left active with its build ended, or marked inactive though its
// heartbeat was recorded, would run builds that run again elsewhere.
func TestHeartbeatRacesReap(t *testing.T) {
	t.Parallel()
	url := newPGDatabase(t)
	sa := teststore.OpenURL(t, url, store.Options{})
	sb := teststore.OpenURL(t, url, store.Options{})
	if _, err := sa.EnsureMaster("a's store"); err != nil {
		t.Fatal(err)
	}
	mb, err := sb.EnsureMaster("reaper")
	if err != nil {
		t.Fatal(err)
	}
	reaper := &cluster{st: sb, id: mb.ID, log: slog.New(slog.DiscardHandler), timeout: time.Minute, now: time.Now}
	bl, err := sa.EnsureBuilder("b")
	if err != nil {
		t.Fatal(err)
	}
	w, err := sa.EnsureWorker("w")
	if err != nil {
		t.Fatal(err)
	}
	wins := map[string]int{}
	for i := range 30 {
		m, err := sa.EnsureMaster(fmt.Sprint("raced", i))
		if err != nil {
			t.Fatal(err)
		}
		_, brids, err := sa.AddBuildset(store.NewBuildset{Reason: "r", BuilderIDs: []int64{bl.ID}})
		if err != nil {
			t.Fatal(err)
		}
		if err := sa.ClaimBuildRequest(brids[bl.ID], m.ID, time.Time{}); err != nil {
			t.Fatal(err)
		}
		bld, err := sa.AddBuild(store.NewBuild{BuilderID: bl.ID, BuildRequestID: brids[bl.ID], WorkerID: w.ID, MasterID: m.ID})
		if err != nil {
			t.Fatal(err)
		}
		now, err := sb.Now()
		if err != nil {
			t.Fatal(err)
		}
		if err := sa.SetMasterActive(m.ID, true, now.Add(-2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		raced := &cluster{st: sa, id: m.ID, log: slog.New(slog.DiscardHandler), timeout: time.Minute, now: time.Now}
		var beat error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; beat = raced.heartbeat() })
		wg.Go(func() { <-start; reaper.reap() })
		close(start)
		wg.Wait()
		if beat != nil && !errors.Is(beat, ErrDeclaredDead) {
			t.Fatal(beat)
		}
		alive := beat == nil
		ms, err := sa.Masters()
		if err != nil {
			t.Fatal(err)
		}
		active := ms[slices.IndexFunc(ms, func(x store.Master) bool { return x.ID == m.ID })].Active
		b, err := sa.Build(bld.ID)
		if err != nil {
			t.Fatal(err)
		}
		if active != alive || b.Complete == alive {
			t.Fatalf("round %d: heartbeat recorded %v, but the master is active %v and its build complete %v", i, alive, active, b.Complete)
		}
		if alive {
			wins["heartbeat"]++
			if err := sa.SetMasterActive(m.ID, false, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if _, err := sa.AbandonBuild(bld.ID, time.Time{}); err != nil {
				t.Fatal(err)
			}
		} else {
			wins["reaper"]++
		}
	}
	t.Logf("wins: %v", wins)
}
