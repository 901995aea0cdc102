package build

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// Build control, as buildbot's data API actions: stop and rebuild on a
// build, cancel on a build request, pause, unpause, graceful (buildbot's
// "stop") and kill on a worker.

// ErrNotHere is returned (wrapped) by StopBuild and CancelBuildRequest when
// the build runs, or the request is claimed, on another master.
var ErrNotHere = errors.New("build: running on another master")

// ErrWorkerKilled is why a killed worker's connection ended; its builds end
// RETRY.
var ErrWorkerKilled = errors.New("build: worker killed by an operator")

// errGraceful is why a worker shut down gracefully was disconnected.
var errGraceful = errors.New("build: worker shut down gracefully")

// stopCause is the cause a stopped build's step is cancelled with.
type stopCause struct{ reason string }

func (s *stopCause) Error() string { return "build stopped: " + s.reason }

// stepContext returns the context a piece of the build (taking its locks, a
// step) runs in, which a stop cancels, and the func to call once it is
// done. ok is false when the build is stopped and the piece is not
// always_run: it must not run.
func (b *build) stepContext(alwaysRun bool) (ctx context.Context, done func(), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped && !alwaysRun {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancelCause(b.parent)
	b.cancel = cancel
	return ctx, func() {
		b.mu.Lock()
		b.cancel = nil
		b.mu.Unlock()
		cancel(nil)
	}, true
}

// stop stops the build as buildbot's stopBuild: the running step is
// interrupted (the worker kills its process group), no further step runs
// but always_run ones, and the build ends CANCELLED with the reason in its
// state. A second stop interrupts the always_run step that runs.
func (b *build) stop(reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stopped {
		b.stopped, b.stopReason = true, reason
	}
	if b.cancel != nil {
		b.cancel(&stopCause{reason: reason})
	}
}

// stopState says whether the build was stopped, and why.
func (b *build) stopState() (reason string, stopped bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopReason, b.stopped
}

// StopBuild stops the build with the given id, as buildbot's "stop" action.
// Stopping a finished build does nothing, as in buildbot. It returns an
// error wrapping store.ErrNotFound for an unknown id, and ErrNotHere for a
// build another master runs.
func (e *Engine) StopBuild(ctx context.Context, buildID int64, reason string) error {
	if reason == "" {
		reason = "no reason"
	}
	bld, err := e.st.Build(buildID)
	if err != nil {
		return fmt.Errorf("stop build %d: %w", buildID, err)
	}
	if bld.Complete {
		return nil
	}
	e.mu.Lock()
	b := e.running[bld.BuildRequestID]
	e.mu.Unlock()
	if b == nil && bld.MasterID == e.masterID && e.stopPending(bld, reason) {
		return nil
	}
	if b == nil || bld.MasterID != e.masterID {
		return fmt.Errorf("stop build %d: %w", buildID, ErrNotHere)
	}
	e.log.Info("stopping build", "builder", b.cfg.Name, "build", bld.Number, "worker", b.worker, "reason", reason)
	b.stop(reason)
	return nil
}

// Rebuild adds a buildset that builds the build with the given id again,
// as buildbot's "rebuild": the same source stamps, the properties of its
// buildset, on its builder, with reason "rebuild". It returns the new
// buildset's id and its request id by builder id.
func (e *Engine) Rebuild(ctx context.Context, buildID int64) (int64, map[int64]int64, error) {
	bld, err := e.st.Build(buildID)
	if err != nil {
		return 0, nil, fmt.Errorf("rebuild %d: %w", buildID, err)
	}
	req, err := e.st.BuildRequest(bld.BuildRequestID)
	if err != nil {
		return 0, nil, fmt.Errorf("rebuild %d: %w", buildID, err)
	}
	bs, err := e.st.Buildset(req.BuildsetID)
	if err != nil {
		return 0, nil, fmt.Errorf("rebuild %d: %w", buildID, err)
	}
	stamps := slices.Clone(bs.SourceStamps)
	for i := range stamps {
		stamps[i].ID, stamps[i].CreatedAt = 0, time.Time{}
	}
	bsid, brids, err := e.st.AddBuildset(store.NewBuildset{
		Reason:        "rebuild",
		ExternalID:    bs.ExternalID,
		SchedulerName: "rebuild",
		ParentBuildID: bs.ParentBuildID,
		SourceStamps:  stamps,
		ChangeIDs:     bs.ChangeIDs,
		Properties:    bs.Properties,
		BuilderIDs:    []int64{bld.BuilderID},
		Priority:      req.Priority,

		RebuiltBuildID: bld.ID,
	})
	if err != nil {
		return 0, nil, fmt.Errorf("rebuild %d: %w", buildID, err)
	}
	e.log.Info("rebuild", "build_id", buildID, "buildset", bsid)
	e.Wake()
	return bsid, brids, nil
}

// CancelBuildRequest cancels a build request, as buildbot's "cancel": a
// pending request is claimed, then completes CANCELLED (and its buildset
// with it when it was the last); a request whose build runs here has that
// build stopped. Cancelling a complete request does nothing. It returns an
// error wrapping store.ErrNotFound for an unknown id and ErrNotHere when
// another master has claimed the request.
func (e *Engine) CancelBuildRequest(ctx context.Context, brid int64, reason string) error {
	if reason == "" {
		reason = "no reason"
	}
	req, err := e.st.BuildRequest(brid)
	if err != nil {
		return fmt.Errorf("cancel buildrequest %d: %w", brid, err)
	}
	if req.Complete {
		return nil
	}
	// Claim first, as buildbot: a claimed request cannot start a build.
	err = e.st.ClaimBuildRequest(brid, e.masterID, time.Now())
	switch {
	case err == nil:
		if err := e.st.CompleteBuildRequestOf(brid, e.masterID, store.Cancelled, time.Now()); err != nil {
			return fmt.Errorf("cancel buildrequest %d: %w", brid, err)
		}
		e.log.Info("build request cancelled", "buildrequest", brid, "reason", reason)
		return nil
	case !errors.Is(err, store.ErrClaimed):
		return fmt.Errorf("cancel buildrequest %d: %w", brid, err)
	}
	e.mu.Lock()
	b := e.running[brid]
	e.mu.Unlock()
	if b != nil {
		e.log.Info("build request cancelled: stopping its build", "buildrequest", brid, "reason", reason)
		b.stop(reason)
		return nil
	}
	if req, err := e.st.BuildRequest(brid); err == nil && req.Complete {
		return nil
	}
	return fmt.Errorf("cancel buildrequest %d: %w", brid, ErrNotHere)
}

// PauseWorker keeps new builds off a worker until UnpauseWorker; its
// running builds go on. It returns an error wrapping store.ErrNotFound for
// an unknown id.
func (e *Engine) PauseWorker(ctx context.Context, workerID int64, reason string) error {
	w, err := e.st.Worker(workerID)
	if err != nil {
		return fmt.Errorf("pause worker %d: %w", workerID, err)
	}
	if err := e.st.SetWorkerPaused(workerID, true, w.Graceful); err != nil {
		return err
	}
	e.mu.Lock()
	if ws, ok := e.conns[w.Name]; ok {
		ws.paused = true
	}
	e.mu.Unlock()
	e.log.Info("worker paused", "worker", w.Name, "reason", reason)
	return nil
}

// UnpauseWorker lets a paused or gracefully shut down worker take builds
// again. Unlike buildbot, it also clears the graceful state: a gbb worker
// reconnects by itself, and a graceful worker stays idle until unpaused.
func (e *Engine) UnpauseWorker(ctx context.Context, workerID int64) error {
	w, err := e.st.Worker(workerID)
	if err != nil {
		return fmt.Errorf("unpause worker %d: %w", workerID, err)
	}
	if err := e.st.SetWorkerPaused(workerID, false, false); err != nil {
		return err
	}
	e.mu.Lock()
	if ws, ok := e.conns[w.Name]; ok {
		ws.paused, ws.graceful = false, false
	}
	e.mu.Unlock()
	e.log.Info("worker unpaused", "worker", w.Name)
	e.Wake()
	return nil
}

// GracefulWorker shuts a worker down gracefully, as buildbot's "stop": it
// takes no new build, its running builds finish, then the master
// disconnects it. When it reconnects it stays idle until UnpauseWorker.
func (e *Engine) GracefulWorker(ctx context.Context, workerID int64) error {
	w, err := e.st.Worker(workerID)
	if err != nil {
		return fmt.Errorf("shut down worker %d: %w", workerID, err)
	}
	if err := e.st.SetWorkerPaused(workerID, w.Paused, true); err != nil {
		return err
	}
	e.mu.Lock()
	ws, ok := e.conns[w.Name]
	idle := false
	if ok {
		ws.graceful = true
		idle = ws.running == 0
	}
	e.mu.Unlock()
	e.log.Info("worker shutting down gracefully", "worker", w.Name)
	if idle {
		e.shutdownWorker(w.Name, ws)
	}
	return nil
}

// KillWorker disconnects a worker now, as buildbot's "kill": its builds end
// RETRY and their requests run again. The worker reconnects by itself and
// takes builds again unless it is paused. Killing a worker that is not
// connected does nothing.
func (e *Engine) KillWorker(ctx context.Context, workerID int64, reason string) error {
	w, err := e.st.Worker(workerID)
	if err != nil {
		return fmt.Errorf("kill worker %d: %w", workerID, err)
	}
	e.mu.Lock()
	ws, ok := e.conns[w.Name]
	e.mu.Unlock()
	if !ok {
		return nil
	}
	e.log.Warn("killing worker", "worker", w.Name, "reason", reason)
	ws.conn.Close(fmt.Errorf("%w: %s", ErrWorkerKilled, reason))
	return nil
}

// shutdownWorker disconnects a gracefully shut down worker that is idle.
func (e *Engine) shutdownWorker(name string, ws *workerState) {
	e.log.Info("disconnecting gracefully shut down worker", "worker", name)
	ws.conn.Close(errGraceful)
}
