package build

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/pkg/worker"
)

// controlRig is an engine running on a bbolt store, with a real worker
// ("w", pkg/worker's executor) connected over loopback gRPC, and builder
// "b" whose build sleeps until stopped.
type controlRig struct {
	db       *store.DB
	e        *Engine
	masterID int64
	builder  store.Builder
	worker   store.Worker
	attaches atomic.Int32 // connections the worker made
}

func newControlRig(t *testing.T) *controlRig {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &controlRig{db: db}
	m := mustDo[store.Master](t)(db.EnsureMaster("m"))
	r.masterID = m.ID
	r.builder = mustDo[store.Builder](t)(db.EnsureBuilder("b"))
	r.worker = mustDo[store.Worker](t)(db.EnsureWorker("w"))
	r.e = New(Config{
		Store: db, MasterID: m.ID, Basedir: t.TempDir(),
		Builders: []config.Builder{{Name: "b", WorkerNames: []string{"w"},
			Steps: []config.Step{{Type: "shell", Name: "sleep", Command: config.Command{Script: "sleep 1000"}}}}},
		Workers: []config.Worker{{Name: "w"}},
	})
	srv := protocol.NewServer(protocol.ServerConfig{
		Password: func(name string) (string, bool) { return "secret", name == "w" },
		Attach: func(c *protocol.WorkerConn) {
			r.attaches.Add(1)
			r.e.Attach(c)
		},
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := protocol.NewClient(protocol.ClientConfig{
		Master: lis.Addr().String(), Name: "w", Password: "secret",
		Executor:   worker.NewExecutor(t.TempDir(), nil),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, lis) })
	wg.Go(func() { r.e.Run(ctx) })
	wg.Go(func() { cl.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := db.Check(); err != nil {
			t.Error(err)
		}
		db.Close()
	})
	waitCond(t, "the worker attached", func() bool { return r.attaches.Load() == 1 && r.conn() != nil })
	return r
}

func mustDo[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// waitCond polls cond until it holds; 30s at most.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// conn returns a copy of the worker's connection state; nil when it is
// not connected.
func (r *controlRig) conn() *workerState {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	ws, ok := r.e.conns["w"]
	if !ok {
		return nil
	}
	c := *ws
	return &c
}

// startBuild adds a request for b and returns its build once its step
// runs on the worker.
func (r *controlRig) startBuild(t *testing.T) store.Build {
	t.Helper()
	_, brids := mustDo2[int64, map[int64]int64](t)(r.db.AddBuildset(store.NewBuildset{BuilderIDs: []int64{r.builder.ID}}))
	r.e.Wake()
	var bld store.Build
	waitCond(t, "the build's step started", func() bool {
		builds := mustDo[[]store.Build](t)(r.db.Builds(store.BuildFilter{BuildRequestID: brids[r.builder.ID]}))
		if len(builds) != 1 {
			return false
		}
		bld = builds[0]
		steps := mustDo[[]store.Step](t)(r.db.Steps(bld.ID))
		return len(steps) == 2 && steps[1].Name == "sleep" && !steps[1].StartedAt.IsZero()
	})
	return bld
}

func mustDo2[A, B any](t *testing.T) func(A, B, error) (A, B) {
	return func(a A, b B, err error) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// ended waits for build id to end, and returns it.
func (r *controlRig) ended(t *testing.T, id int64) store.Build {
	t.Helper()
	var b store.Build
	waitCond(t, "the build's end", func() bool {
		b = mustDo[store.Build](t)(r.db.Build(id))
		return b.Complete
	})
	return b
}

// TestControlMessages: the engine acts on another master's control
// messages as on a local call: a stop ends the build CANCELLED with the
// reason; a cancel stops the build of the request; pause keeps builds off
// the worker, unpause lets them on; graceful disconnects an idle worker;
// kill disconnects it, its build ends RETRY. A message about a build that
// has just ended, of another master, or unknown, changes nothing.
func TestControlMessages(t *testing.T) {
	t.Parallel()
	r := newControlRig(t)
	msg := func(what string, id int64, action, reason string) store.Control {
		return store.Control{To: r.masterID, What: what, ID: id, Action: action, Reason: reason}
	}

	bld := r.startBuild(t)
	r.e.Control(msg(store.ControlBuild, bld.ID, "stop", "asked on another master"))
	stopped := r.ended(t, bld.ID)
	if stopped.Results != store.Cancelled || !strings.Contains(stopped.StateString, "asked on another master") {
		t.Errorf("stopped build: %s, %q; want CANCELLED with the reason", ResultName(stopped.Results), stopped.StateString)
	}

	// A build of another master that this one does not run.
	// (Of a builder this engine does not have, which it does not claim.)
	other := mustDo[store.Master](t)(r.db.EnsureMaster("other"))
	elsewhere := mustDo[store.Builder](t)(r.db.EnsureBuilder("elsewhere"))
	_, brids := mustDo2[int64, map[int64]int64](t)(r.db.AddBuildset(store.NewBuildset{BuilderIDs: []int64{elsewhere.ID}}))
	otherReq := brids[elsewhere.ID]
	if err := r.db.ClaimBuildRequest(otherReq, other.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	otherBuild := mustDo[store.Build](t)(r.db.AddBuild(store.NewBuild{BuilderID: elsewhere.ID, BuildRequestID: otherReq, MasterID: other.ID}))
	// Late, moved, unknown and malformed messages; then a pause, whose
	// effect says the ones before it were handled (in turn).
	r.e.Control(msg(store.ControlBuild, bld.ID, "stop", "late"))
	r.e.Control(msg(store.ControlRequest, bld.BuildRequestID, "cancel", "late"))
	r.e.Control(msg(store.ControlBuild, otherBuild.ID, "stop", "moved"))
	r.e.Control(msg(store.ControlRequest, otherReq, "cancel", "moved"))
	r.e.Control(msg(store.ControlBuild, 9999, "stop", "unknown"))
	r.e.Control(msg(store.ControlWorker, 9999, "kill", "unknown"))
	r.e.Control(msg(store.ControlWorker, r.worker.ID, "explode", ""))
	r.e.Control(msg(store.ControlWorker, r.worker.ID, "pause", "maintenance"))
	waitCond(t, "the pause", func() bool { return r.conn().paused })
	if got := mustDo[store.Build](t)(r.db.Build(bld.ID)); got.StateString != stopped.StateString || !got.CompleteAt.Equal(stopped.CompleteAt) || got.Results != stopped.Results {
		t.Errorf("a late stop changed the ended build: %+v, was %+v", got, stopped)
	}
	if got := mustDo[store.Build](t)(r.db.Build(otherBuild.ID)); got.Complete {
		t.Errorf("a stop meant for another master's build ended it: %+v", got)
	}
	if got := mustDo[store.BuildRequest](t)(r.db.BuildRequest(otherReq)); got.Complete || got.ClaimedByMasterID != other.ID {
		t.Errorf("a cancel meant for another master's request changed it: %+v", got)
	}
	if r.attaches.Load() != 1 {
		t.Errorf("the worker was disconnected by a message about another worker")
	}

	// Paused: a new request waits.
	_, brids = mustDo2[int64, map[int64]int64](t)(r.db.AddBuildset(store.NewBuildset{BuilderIDs: []int64{r.builder.ID}}))
	req := brids[r.builder.ID]
	r.e.Wake()
	r.e.Control(msg(store.ControlWorker, r.worker.ID, "unpause", ""))
	var running store.Build
	waitCond(t, "the build after the unpause", func() bool {
		builds := mustDo[[]store.Build](t)(r.db.Builds(store.BuildFilter{BuildRequestID: req}))
		if len(builds) == 1 {
			running = builds[0]
		}
		return len(builds) == 1
	})
	if r.conn().paused {
		t.Error("the worker is still paused after the unpause message")
	}
	waitCond(t, "the step started", func() bool {
		steps := mustDo[[]store.Step](t)(r.db.Steps(running.ID))
		return len(steps) == 2 && !steps[1].StartedAt.IsZero()
	})
	r.e.Control(msg(store.ControlRequest, req, "cancel", "not needed"))
	if b := r.ended(t, running.ID); b.Results != store.Cancelled || !strings.Contains(b.StateString, "not needed") {
		t.Errorf("build of the cancelled request: %s, %q", ResultName(b.Results), b.StateString)
	}
	var cancelled store.BuildRequest
	waitCond(t, "the request complete", func() bool {
		cancelled = mustDo[store.BuildRequest](t)(r.db.BuildRequest(req))
		return cancelled.Complete
	})
	if cancelled.Results != store.Cancelled {
		t.Errorf("cancelled request: %+v", cancelled)
	}

	// Kill: the running build ends RETRY, the worker comes back.
	killed := r.startBuild(t)
	r.e.Control(msg(store.ControlWorker, r.worker.ID, "kill", "stuck"))
	if b := r.ended(t, killed.ID); b.Results != store.Retry {
		t.Errorf("build on the killed worker: %s, want RETRY", ResultName(b.Results))
	}
	waitCond(t, "the worker back after the kill", func() bool { return r.attaches.Load() == 2 })

	// Graceful, once it is idle: disconnected. (Its graceful flag is the
	// sender's to store, so it takes builds when it is back.)
	var rerun store.Build
	waitCond(t, "the rerun's step started", func() bool {
		builds := mustDo[[]store.Build](t)(r.db.Builds(store.BuildFilter{BuildRequestID: killed.BuildRequestID}))
		if len(builds) != 2 {
			return false
		}
		rerun = builds[1]
		steps := mustDo[[]store.Step](t)(r.db.Steps(rerun.ID))
		return len(steps) == 2 && !steps[1].StartedAt.IsZero()
	})
	r.e.Control(msg(store.ControlBuild, rerun.ID, "stop", "make it idle"))
	r.ended(t, rerun.ID)
	waitCond(t, "the worker idle", func() bool { c := r.conn(); return c != nil && c.running == 0 })
	r.e.Control(msg(store.ControlWorker, r.worker.ID, "graceful", ""))
	waitCond(t, "the worker disconnected gracefully and back", func() bool { return r.attaches.Load() == 3 })
}

// TestAttachStoreFails: a worker connection the store cannot record (here
// a worker with no record; in life the database away, as an outside probe
// found) is dropped, so that the worker connects again — to this master or
// its next — rather than staying connected to a master that never gives
// it a build.
func TestAttachStoreFails(t *testing.T) {
	t.Parallel()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := mustDo[store.Master](t)(db.EnsureMaster("m"))
	e := New(Config{Store: db, MasterID: m.ID, Basedir: t.TempDir(), Workers: []config.Worker{{Name: "w"}}})
	var attaches atomic.Int32
	srv := protocol.NewServer(protocol.ServerConfig{
		Password: func(name string) (string, bool) { return "secret", name == "w" },
		Attach: func(c *protocol.WorkerConn) {
			attaches.Add(1)
			e.Attach(c)
		},
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := protocol.NewClient(protocol.ClientConfig{
		Master: lis.Addr().String(), Name: "w", Password: "secret",
		Executor:   worker.NewExecutor(t.TempDir(), nil),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, lis) })
	wg.Go(func() { e.Run(ctx) })
	wg.Go(func() { cl.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
		db.Close()
	}()
	waitCond(t, "the worker, dropped, connecting again", func() bool { return attaches.Load() >= 3 })
	e.mu.Lock()
	n := len(e.conns)
	e.mu.Unlock()
	if n != 0 {
		t.Errorf("the engine keeps %d connections it could not record", n)
	}
}
