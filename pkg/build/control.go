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
//
// Any master may be asked (several masters share a PostgreSQL store, behind
// one proxy). What the store holds (a worker's paused and graceful flags, a
// pending request's claim) the master asked changes itself; what only the
// master running a build or holding a worker's connection can do (interrupt
// the build, disconnect the worker, update its connection's state) it asks
// that master for with a control message (store.Control, as buildbot's
// ("control", ...) messages), which that master's engine acts on as on a
// local call (Control). The action then answers success, as buildbot's;
// when the master concerned is not active (stopped, or presumed dead by
// the others, which end its builds RETRY) nothing would act, and the
// action fails with an error wrapping store.ErrMasterInactive.

// ErrNotHere is returned (wrapped) by StopBuild and CancelBuildRequest for
// a build of this master that runs no more, nor ended: it is ending.
var ErrNotHere = errors.New("build: not running on this master")

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
// Stopping a finished build does nothing, as in buildbot. A build another
// master runs is stopped by that master (see Control). It returns an error
// wrapping store.ErrNotFound for an unknown id, and store.ErrMasterInactive
// when the master running the build is not active.
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
	if bld.MasterID != e.masterID {
		c := store.Control{To: bld.MasterID, What: store.ControlBuild, ID: buildID, Action: "stop", Reason: reason}
		if err := e.send(c); err != nil {
			return fmt.Errorf("stop build %d: it runs on master %d: %w", buildID, bld.MasterID, err)
		}
		return nil
	}
	if e.stopHere(bld, reason) {
		return nil
	}
	// Not running here any more: it has just ended.
	if bld, err := e.st.Build(buildID); err == nil && bld.Complete {
		return nil
	}
	return fmt.Errorf("stop build %d: %w", buildID, ErrNotHere)
}

// stopHere stops bld, a build of this master's that has not ended, when it
// runs (or waits for its worker) here; it returns false when it does not.
func (e *Engine) stopHere(bld store.Build, reason string) bool {
	e.mu.Lock()
	b := e.running[bld.BuildRequestID]
	e.mu.Unlock()
	if b == nil {
		return e.stopPending(bld, reason)
	}
	e.log.Info("stopping build", "builder", b.cfg.Name, "build", bld.Number, "worker", b.worker, "reason", reason)
	b.stop(reason)
	return true
}

// send sends c to the master it names, and logs it.
func (e *Engine) send(c store.Control) error {
	if err := e.st.SendControl(c); err != nil {
		return err
	}
	e.log.Info("control sent to the master concerned", "master", c.To, "what", c.What, "id", c.ID, "action", c.Action, "reason", c.Reason)
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
// with it when it was the last); a request claimed here has its build
// stopped, one claimed by another master has it stopped by that master (see
// Control). Cancelling a complete request does nothing. It returns an error
// wrapping store.ErrNotFound for an unknown id, and store.ErrMasterInactive
// when the master that claimed the request is not active.
func (e *Engine) CancelBuildRequest(ctx context.Context, brid int64, reason string) error {
	if reason == "" {
		reason = "no reason"
	}
	// A request released by its master between the claim and the read
	// below is pending again: claim it again, a few times at most.
	for range 3 {
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
		if e.cancelHere(brid, reason) {
			return nil
		}
		if req, err = e.st.BuildRequest(brid); err != nil {
			return fmt.Errorf("cancel buildrequest %d: %w", brid, err)
		}
		switch {
		case req.Complete:
			return nil
		case !req.Claimed:
			continue
		case req.ClaimedByMasterID != e.masterID:
			c := store.Control{To: req.ClaimedByMasterID, What: store.ControlRequest, ID: brid, Action: "cancel", Reason: reason}
			if err := e.send(c); err != nil {
				return fmt.Errorf("cancel buildrequest %d: master %d claimed it: %w", brid, req.ClaimedByMasterID, err)
			}
			return nil
		}
		break
	}
	return fmt.Errorf("cancel buildrequest %d: %w", brid, ErrNotHere)
}

// cancelHere stops the build of request brid, which this master claimed,
// when it runs (or waits for its worker) here; it returns false when none
// does.
func (e *Engine) cancelHere(brid int64, reason string) bool {
	e.mu.Lock()
	b := e.running[brid]
	e.mu.Unlock()
	if b != nil {
		e.log.Info("build request cancelled: stopping its build", "buildrequest", brid, "reason", reason)
		b.stop(reason)
		return true
	}
	done := false
	builds, err := e.st.Builds(store.BuildFilter{BuildRequestID: brid, Complete: &done})
	if err != nil {
		e.log.Error("cancel buildrequest: read its builds", "buildrequest", brid, "err", err)
		return false
	}
	for _, bld := range builds {
		if bld.MasterID == e.masterID && e.stopPending(bld, reason) {
			return true
		}
	}
	return false
}

// PauseWorker keeps new builds off a worker until UnpauseWorker; its
// running builds go on. The masters the worker is connected to keep it
// paused (see Control). It returns an error wrapping store.ErrNotFound for
// an unknown id.
func (e *Engine) PauseWorker(ctx context.Context, workerID int64, reason string) error {
	w, err := e.st.Worker(workerID)
	if err != nil {
		return fmt.Errorf("pause worker %d: %w", workerID, err)
	}
	if err := e.st.SetWorkerPaused(workerID, true, w.Graceful); err != nil {
		return err
	}
	e.pauseHere(workerID)
	e.log.Info("worker paused", "worker", w.Name, "reason", reason)
	e.tellConnected(w, "pause", reason)
	return nil
}

// pauseHere pauses worker id's connection to this master, if any.
func (e *Engine) pauseHere(id int64) {
	e.mu.Lock()
	if _, ws := e.connOf(id); ws != nil {
		ws.paused = true
	}
	e.mu.Unlock()
}

// UnpauseWorker lets a paused or gracefully shut down worker take builds
// again, on every master it is connected to. Unlike buildbot, it also
// clears the graceful state: a gbb worker reconnects by itself, and a
// graceful worker stays idle until unpaused.
func (e *Engine) UnpauseWorker(ctx context.Context, workerID int64) error {
	w, err := e.st.Worker(workerID)
	if err != nil {
		return fmt.Errorf("unpause worker %d: %w", workerID, err)
	}
	if err := e.st.SetWorkerPaused(workerID, false, false); err != nil {
		return err
	}
	e.unpauseHere(workerID)
	e.log.Info("worker unpaused", "worker", w.Name)
	e.tellConnected(w, "unpause", "")
	return nil
}

// unpauseHere unpauses worker id's connection to this master, if any.
func (e *Engine) unpauseHere(id int64) {
	e.mu.Lock()
	if _, ws := e.connOf(id); ws != nil {
		ws.paused, ws.graceful = false, false
	}
	e.mu.Unlock()
	e.Wake()
}

// GracefulWorker shuts a worker down gracefully, as buildbot's "stop": it
// takes no new build, its running builds finish, then the master holding
// its connection disconnects it (see Control). When it reconnects it stays
// idle until UnpauseWorker.
func (e *Engine) GracefulWorker(ctx context.Context, workerID int64) error {
	w, err := e.st.Worker(workerID)
	if err != nil {
		return fmt.Errorf("shut down worker %d: %w", workerID, err)
	}
	if err := e.st.SetWorkerPaused(workerID, w.Paused, true); err != nil {
		return err
	}
	e.log.Info("worker shutting down gracefully", "worker", w.Name)
	e.gracefulHere(workerID)
	e.tellConnected(w, "graceful", "")
	return nil
}

// gracefulHere shuts worker id's connection to this master, if any, down
// gracefully: at once when it runs no build.
func (e *Engine) gracefulHere(id int64) {
	e.mu.Lock()
	name, ws := e.connOf(id)
	idle := false
	if ws != nil {
		ws.graceful = true
		idle = ws.running == 0
	}
	e.mu.Unlock()
	if idle {
		e.shutdownWorker(name, ws)
	}
}

// KillWorker disconnects a worker now, as buildbot's "kill": its builds end
// RETRY and their requests run again. The worker reconnects by itself and
// takes builds again unless it is paused. A worker connected to another
// master is disconnected by that master (see Control). Killing a worker
// that is not connected does nothing. It returns an error wrapping
// store.ErrMasterInactive when the master the worker is connected to is
// not active.
func (e *Engine) KillWorker(ctx context.Context, workerID int64, reason string) error {
	w, err := e.st.Worker(workerID)
	if err != nil {
		return fmt.Errorf("kill worker %d: %w", workerID, err)
	}
	e.killHere(workerID, reason)
	for _, m := range w.ConnectedTo {
		if m == e.masterID {
			continue
		}
		c := store.Control{To: m, What: store.ControlWorker, ID: workerID, Action: "kill", Reason: reason}
		if err := e.send(c); err != nil {
			return fmt.Errorf("kill worker %s: it is connected to master %d: %w", w.Name, m, err)
		}
	}
	return nil
}

// DisconnectWorker disconnects worker id from this master only, if it is
// connected here, as KillWorker does: a reconfig that removed the worker
// from this master's config leaves its connections to other masters be.
func (e *Engine) DisconnectWorker(id int64, reason string) {
	e.killHere(id, reason)
}

// killHere disconnects worker id from this master, if it is connected.
func (e *Engine) killHere(id int64, reason string) {
	e.mu.Lock()
	name, ws := e.connOf(id)
	e.mu.Unlock()
	if ws == nil {
		return
	}
	e.log.Warn("killing worker", "worker", name, "reason", reason)
	ws.conn.Close(fmt.Errorf("%w: %s", ErrWorkerKilled, reason))
}

// connOf returns the name and state of worker id's connection to this
// master; nil when it is not connected here. e.mu must be held.
func (e *Engine) connOf(id int64) (string, *workerState) {
	for name, ws := range e.conns {
		if ws.id == id {
			return name, ws
		}
	}
	return "", nil
}

// tellConnected asks the other masters worker w is connected to to apply
// action to its connection, whose flags the store already holds. A master
// that is not active holds no connection any more (or loses it when the
// others presume it dead): the worker finds the flags when it reconnects,
// so that is only logged.
func (e *Engine) tellConnected(w store.Worker, action, reason string) {
	for _, m := range w.ConnectedTo {
		if m == e.masterID {
			continue
		}
		c := store.Control{To: m, What: store.ControlWorker, ID: w.ID, Action: action, Reason: reason}
		if err := e.send(c); err != nil {
			e.log.Warn("worker control: the master it is connected to was not told", "worker", w.Name, "action", action, "master", m, "err", err)
		}
	}
}

// Control acts on a control message another master sent this one, as on
// the local call, on what this master alone holds: it stops a build that
// runs here, the build of a request claimed here, and pauses, unpauses,
// shuts down gracefully or kills a worker connected here. A message about
// something that has just ended or moved does nothing. It does not block
// (it is the store's handler, see store.PG.SetControl): the message waits
// for Run, which acts on each in turn; messages beyond a backlog of 256 are
// dropped, and logged.
func (e *Engine) Control(c store.Control) {
	select {
	case e.controls <- c:
	default:
		e.log.Error("control message dropped: too many waiting", "what", c.What, "id", c.ID, "action", c.Action)
	}
}

// serveControls acts on the control messages (see Control) until ctx is
// done.
func (e *Engine) serveControls(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-e.controls:
			e.act(c)
		}
	}
}

// act does what control message c asks of this master.
func (e *Engine) act(c store.Control) {
	log := e.log.With("what", c.What, "id", c.ID, "action", c.Action, "reason", c.Reason)
	log.Info("control message from another master")
	reason := c.Reason
	if reason == "" {
		reason = "no reason"
	}
	switch c.What + "/" + c.Action {
	case store.ControlBuild + "/stop":
		bld, err := e.st.Build(c.ID)
		switch {
		case err != nil:
			log.Error("stop build", "err", err)
		case bld.Complete:
			log.Info("the build has ended already")
		case bld.MasterID != e.masterID:
			log.Warn("the build does not run on this master", "master", bld.MasterID)
		case !e.stopHere(bld, reason):
			log.Info("the build does not run here any more")
		}
	case store.ControlRequest + "/cancel":
		if !e.cancelHere(c.ID, reason) {
			log.Info("no build of the request runs here")
		}
	case store.ControlWorker + "/pause":
		e.pauseHere(c.ID)
	case store.ControlWorker + "/unpause":
		e.unpauseHere(c.ID)
	case store.ControlWorker + "/graceful":
		e.gracefulHere(c.ID)
	case store.ControlWorker + "/kill":
		e.killHere(c.ID, c.Reason)
	default:
		log.Error("unknown control message")
	}
}

// shutdownWorker disconnects a gracefully shut down worker that is idle.
func (e *Engine) shutdownWorker(name string, ws *workerState) {
	e.log.Info("disconnecting gracefully shut down worker", "worker", name)
	ws.conn.Close(errGraceful)
}
