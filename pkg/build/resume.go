package build

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// finish_steps_on_restart: a master restart that lets the workers finish
// their running shell steps.
//
// With the option, every shell step runs as a resumable command
// (protocol.Command.ResumeKey); the other step types end RETRY on a
// restart, as without it.
// When the master stops cleanly, such a command is not interrupted: its
// stream ends (protocol.ErrMasterStopping), the step's stdio log stays
// open, and a store.ResumePoint records where the build was (the step, its
// index among the builder's steps, the results so far, the bytes of output
// the log has). The build stays running in the store; its worker keeps the
// command running, its output spooled.
//
// The master that starts again keeps those builds, abandons the others as
// before (Recover), and waits up to finish_steps_wait for their workers.
// A worker's hello lists the commands it kept: the engine resumes the
// build of each it knows (the step's log gets the output the master
// missed, then the live rest; the step ends with the command's real
// result; the build goes on with its next steps under the same number),
// and tells the worker to kill the others. A build whose worker does not
// come back in time, comes back without the command, or whose builder or
// step left the config, ends RETRY and runs again, as without the option.
//
// A step counting warnings (warning_pattern, suppress, max_warn_count)
// keeps its counter's state in the resume point (store.WarningState: the
// warnings so far and the unfinished last lines), taken at the resume
// point's Offset; the resumed step's counter goes on from it, so the
// count, the "warnings (N)" log, the warnings-count property, the result
// and the state string are those of a master that never restarted. The
// state is kept, not recounted from the stored log, because log_max_size
// may have cut the log but not what the counter saw. A step whose
// warning_pattern or suppress changed in the config meanwhile does not
// resume.
//
// Locks live in the master's memory. A build left to its worker keeps its
// builder's and its step's locks until the stopping master exits (they are
// not released on detach), and the restarted master's Recover takes them
// again for each build that waits for its worker, before the distributor
// starts any other build; they are released when the resumed build (or
// step) ends, or when it is given up. A build whose locks cannot be taken
// again (a reconfig made one stricter than what the builds left running
// held together) ends RETRY.
//
// A step's logfiles: the worker spools the tailed files' output with the
// rest (each chunk with its log's name), and Offset counts it too; their
// logs stay open like the stdio log, the resume point keeps their ids
// (Logfiles), and the resumed step writes each chunk to its log again.
//
// Each log's unfinished last line at the master's stop is written as a
// line, so a line the restart cuts shows as two; and a log's log_max_size
// counts afresh from the restart (the head and tail of a log cut before
// it are not kept in the resume point). The warning count is not
// affected by either.
//
// A master killed without a clean stop (SIGKILL, a crash) records no
// resume point: its builds end RETRY when it starts, as before, and the
// commands its workers kept are killed when they report them.

// resultDetached is what a step, and the build, end with when the master
// stops and leaves the step to its worker: the build is not finished.
const resultDetached = -2

// errDetached is returned by detachable when the command was left to the
// worker.
var errDetached = errors.New("build: step left to its worker while the master restarts")

// shutdownDetachWait bounds how long a resumable command waits, once the
// master is stopping, for its stream to end; then it is interrupted, and
// its build ends RETRY, as without finish_steps_on_restart.
const shutdownDetachWait = 10 * time.Second

// keepFor is how long a worker keeps a resumable command after its stream
// ended: the master's restart, then its wait, with room to spare.
func keepFor(wait time.Duration) time.Duration { return 2*wait + time.Minute }

// stepPos is where runStepsFrom is: the step's index, the build's results
// before it and whether a step halted the build.
type stepPos struct {
	index, results int
	halted         bool
	// warnings is the warning counter of the step's resumable command,
	// whose state a resume point keeps; nil when it counts none.
	warnings *warningCounter
}

// detachableLog is the store of a resumable command's logWriter: once the
// command is left to its worker, FinishLog does nothing, so that the log
// stays open for the restarted master.
type detachableLog struct {
	logStore
	detached atomic.Bool
}

func (d *detachableLog) FinishLog(id int64) error {
	if d.detached.Load() {
		return nil
	}
	return d.logStore.FinishLog(id)
}

// resumer is the engine's finish_steps_on_restart state.
type resumer struct {
	mu       sync.Mutex
	cfg      config.FinishSteps           // guarded by mu
	pending  map[string]store.ResumePoint // guarded by mu; builds waiting for their worker, by resume key
	deadline time.Time                    // guarded by mu; when the pending ones are given up
	// held are the locks Recover took again for the builds left running,
	// by build id, until they end or their resumed build takes them over.
	held map[int64]heldLocks // guarded by mu
}

// heldLocks are the locks of a build left running: its builder's, and
// those of the step its worker goes on with.
type heldLocks struct{ build, step func() }

func (h heldLocks) release() {
	if h.step != nil {
		h.step()
	}
	if h.build != nil {
		h.build()
	}
}

// SetFinishSteps replaces Config.FinishSteps for the steps started from
// now on.
func (e *Engine) SetFinishSteps(fs config.FinishSteps) {
	if fs.Wait <= 0 {
		fs.Wait = config.DefaultFinishStepsWait
	}
	e.resume.mu.Lock()
	e.resume.cfg = fs
	e.resume.mu.Unlock()
}

func (e *Engine) finishSteps() config.FinishSteps {
	e.resume.mu.Lock()
	defer e.resume.mu.Unlock()
	return e.resume.cfg
}

// resumeKey returns the resume key the command of shell step sc runs
// with, or "" when it is not resumable; wc is the step's warning counter
// (nil when it counts none), whose state a resume point keeps.
func (b *build) resumeKey(step store.Step, sc config.Step, wc *warningCounter) string {
	if !b.e.finishSteps().OnRestart {
		return ""
	}
	b.pos.warnings = wc
	return fmt.Sprintf("build%d-step%d-%s", b.id, step.ID, rand.Text()[:12])
}

// runOnWorker runs cmd on the build's worker; a resumable one (with a
// ResumeKey) through detachable. logID is the step's stdio log,
// logfileIDs the logs of its logfiles by name, all written through dl.
//
// Every command carries the secrets the build rendered, for the worker to
// hide in its own log.
func (b *build) runOnWorker(ctx context.Context, step store.Step, logID int64, logfileIDs map[string]int64, cmd protocol.Command, lw *logWriter, dl *detachableLog, out func(protocol.Output)) (protocol.Result, error) {
	cmd.Secrets = b.renderedSecrets()
	cmd.Build = b.number // for the worker's log lines
	if cmd.ResumeKey == "" {
		return b.ws.conn.Run(ctx, cmd, out)
	}
	cmd.Keep = keepFor(b.e.finishSteps().Wait)
	p := store.ResumePoint{StepID: step.ID, LogID: logID, Logfiles: logfileIDs, ResumeKey: cmd.ResumeKey}
	return b.detachable(ctx, p, lw, dl, out, func(ctx context.Context, out func(protocol.Output)) (protocol.Result, error) {
		return b.ws.conn.Run(ctx, cmd, out)
	})
}

// detachable runs a resumable command with run. A master shutdown does
// not interrupt it (a stop of the build does); when its stream ends
// because the master stops, the log stays open, p is recorded as the
// build's resume point (its Offset advanced by the output taken), and
// detachable returns errDetached.
func (b *build) detachable(ctx context.Context, p store.ResumePoint, lw *logWriter, dl *detachableLog, out func(protocol.Output),
	run func(context.Context, func(protocol.Output)) (protocol.Result, error)) (protocol.Result, error) {
	rctx, rcancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer rcancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	ended := make(chan struct{})
	defer close(ended) // before wg.Wait
	wg.Go(func() {
		select {
		case <-ended:
			return
		case <-ctx.Done():
		}
		if !errors.Is(context.Cause(ctx), ErrShutdown) {
			rcancel(context.Cause(ctx))
			return
		}
		t := time.NewTimer(shutdownDetachWait)
		defer t.Stop()
		select {
		case <-ended:
		case <-t.C:
			b.log.Warn("the stream of a resumable command did not end with the master: interrupting it")
			rcancel(ErrShutdown)
		}
	})
	n := p.Offset
	res, err := run(rctx, func(o protocol.Output) {
		n += int64(len(o.Data))
		out(o)
	})
	if !errors.Is(err, protocol.ErrConnectionLost) || !errors.Is(b.ws.conn.Err(), protocol.ErrMasterStopping) {
		return res, err
	}
	p.MasterID, p.BuildID, p.Builder, p.Worker = b.e.masterID, b.id, b.cfg.Name, b.worker
	p.StepIndex, p.StepName = b.pos.index, b.cfg.Steps[b.pos.index].Name
	p.Results, p.Halted = b.pos.results, b.pos.halted
	p.Offset, p.At = n, time.Now()
	// run has returned: every output counted in n went through the
	// counter, and no more will.
	p.Warnings = b.pos.warnings.state()
	dl.detached.Store(true)
	lw.endOutput()
	lw.header(fmt.Sprintf("master stopping: the command goes on on worker %s, this step after the master's restart", b.worker))
	if err := b.e.st.SetResumePoint(p); err != nil {
		b.log.Error("record resume point: the build will run again", "err", err)
		dl.detached.Store(false)
		return res, err
	}
	b.log.Info("step left to its worker", "step", p.StepName, "key", p.ResumeKey, "offset", p.Offset)
	return res, errDetached
}

// abandonLeft ends what a previous run of this master left running, as
// Recover says, and returns the ids of the builds it ended. With
// finish_steps_on_restart, the builds with a valid resume point are kept:
// they wait for their workers until the finish_steps_wait from now.
func (e *Engine) abandonLeft(now time.Time) ([]int64, error) {
	points, err := e.st.ResumePoints(e.masterID)
	if err != nil {
		return nil, err
	}
	fs := e.finishSteps()
	if !fs.OnRestart {
		for _, p := range points {
			if err := e.st.DeleteResumePoint(p.BuildID); err != nil {
				return nil, err
			}
		}
		return e.st.AbandonBuilds(e.masterID, now)
	}
	f := false
	running, err := e.st.Builds(store.BuildFilter{Complete: &f})
	if err != nil {
		return nil, err
	}
	left := map[int64]bool{}
	for _, b := range running {
		if b.MasterID == e.masterID {
			left[b.ID] = true
		}
	}
	pending := map[string]store.ResumePoint{}
	held := map[int64]heldLocks{}
	for _, p := range points {
		why := e.unresumable(p)
		if !left[p.BuildID] {
			why = "the build is not running"
		}
		if why == "" {
			var h heldLocks
			if h, why = e.retakeLocks(p); why == "" {
				held[p.BuildID] = h
			}
		}
		if why != "" {
			e.log.Warn("build left running by a previous run cannot resume", "builder", p.Builder, "worker", p.Worker, "build_id", p.BuildID, "why", why)
			if err := e.st.DeleteResumePoint(p.BuildID); err != nil {
				return nil, err
			}
			continue
		}
		pending[p.ResumeKey] = p
		delete(left, p.BuildID)
	}
	var ended []int64
	for id := range left {
		ok, err := e.st.AbandonBuild(id, now)
		if err != nil {
			return nil, err
		}
		if ok {
			ended = append(ended, id)
		}
	}
	e.resume.mu.Lock()
	e.resume.pending = pending
	e.resume.held = held
	e.resume.deadline = now.Add(fs.Wait)
	e.resume.mu.Unlock()
	for _, p := range pending {
		if err := e.st.SetBuildStateString(p.BuildID, fmt.Sprintf("%s: waiting for worker %s after the master's restart", p.StepName, p.Worker)); err != nil {
			return nil, err
		}
	}
	if len(pending) > 0 {
		e.log.Info("builds left running by a previous run wait for their workers", "builds", len(pending), "wait", fs.Wait)
	}
	return ended, nil
}

// retakeLocks takes again, before any other build may, the locks the
// build of p held when the master stopped: its builder's and its step's,
// as the current config defines them. Recover calls it, before the
// distributor starts, so the table is empty but for the other builds left
// running; they held their locks together, so they get them again unless
// a reconfig made a lock stricter: then why says so and nothing is held.
func (e *Engine) retakeLocks(p store.ResumePoint) (h heldLocks, why string) {
	e.mu.Lock()
	defs, bc := e.lockDefs, e.builders[p.Builder]
	e.mu.Unlock()
	// Take them now or never: a lock not free now is held by another
	// build left running.
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("held by another build left running"))
	take := func(accesses []config.LockAccess) (func(), error) {
		return e.locks.Acquire(ctx, lockRequests(defs, accesses, p.Worker))
	}
	var err error
	if h.build, err = take(bc.Locks); err != nil {
		return heldLocks{}, "its builder's locks: " + err.Error()
	}
	if h.step, err = take(bc.Steps[p.StepIndex].Locks); err != nil {
		h.build()
		return heldLocks{}, "its step's locks: " + err.Error()
	}
	return h, ""
}

// takeHeld returns, and forgets, the locks held for the build buildID;
// their funcs do nothing when it holds none.
func (e *Engine) takeHeld(buildID int64) heldLocks {
	e.resume.mu.Lock()
	defer e.resume.mu.Unlock()
	h, ok := e.resume.held[buildID]
	if !ok {
		return heldLocks{build: func() {}, step: func() {}}
	}
	delete(e.resume.held, buildID)
	return h
}

// unresumable says why the build of p cannot go on with the current
// config, or "".
func (e *Engine) unresumable(p store.ResumePoint) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	bc, ok := e.builders[p.Builder]
	switch {
	case !ok:
		return fmt.Sprintf("builder %q is no longer configured", p.Builder)
	case p.StepIndex >= len(bc.Steps) || bc.Steps[p.StepIndex].Name != p.StepName || bc.Steps[p.StepIndex].Type != "shell":
		return fmt.Sprintf("builder %q no longer has step %q as its step %d", p.Builder, p.StepName, p.StepIndex+1)
	case warningRules(bc.Steps[p.StepIndex]) != keptRules(p):
		return "the step's warning_pattern or suppress changed"
	}
	return ""
}

// keptRules is the warning rules p's counter state was counted with, ""
// when it keeps none.
func keptRules(p store.ResumePoint) string {
	if p.Warnings == nil {
		return ""
	}
	return p.Warnings.Rules
}

// armResumeDeadline wakes the engine when the builds waiting for their
// workers are given up; call the func returned to disarm it.
func (e *Engine) armResumeDeadline() (stop func()) {
	e.resume.mu.Lock()
	d, n := e.resume.deadline, len(e.resume.pending)
	e.resume.mu.Unlock()
	if n == 0 {
		return func() {}
	}
	t := time.AfterFunc(time.Until(d), e.Wake)
	return func() { t.Stop() }
}

// reattach answers the commands newly attached workers kept, resuming the
// builds of those it knows, and gives up the builds whose worker came back
// without their command, or did not come back in time.
func (e *Engine) reattach(ctx context.Context) {
	type fresh struct {
		name string
		ws   *workerState
		kept []protocol.Kept
	}
	var news []fresh
	e.mu.Lock()
	for name, ws := range e.conns {
		if ws.fresh {
			news = append(news, fresh{name, ws, ws.kept})
		}
	}
	e.mu.Unlock()
	for _, f := range news {
		var unknown []string
		for _, k := range f.kept {
			p, ok := e.takePending(k.ResumeKey, f.name)
			if !ok {
				unknown = append(unknown, k.ResumeKey)
				continue
			}
			e.startResumed(ctx, p, f.name, f.ws)
		}
		e.abandonKept(ctx, f.ws.conn, unknown, "unknown command")
		e.resume.mu.Lock()
		var lost []store.ResumePoint
		for key, p := range e.resume.pending {
			if p.Worker == f.name {
				lost = append(lost, p)
				delete(e.resume.pending, key)
			}
		}
		e.resume.mu.Unlock()
		for _, p := range lost {
			e.giveUp(p, fmt.Sprintf("worker %s came back without the step's command", f.name))
		}
		e.mu.Lock()
		f.ws.fresh, f.ws.kept = false, nil
		e.mu.Unlock()
	}
	e.resume.mu.Lock()
	var expired []store.ResumePoint
	if len(e.resume.pending) > 0 && !time.Now().Before(e.resume.deadline) {
		for _, p := range e.resume.pending {
			expired = append(expired, p)
		}
		e.resume.pending = nil
	}
	wait := e.resume.cfg.Wait
	e.resume.mu.Unlock()
	for _, p := range expired {
		e.giveUp(p, fmt.Sprintf("worker %s did not come back within finish_steps_wait (%s)", p.Worker, wait))
	}
}

// takePending returns, and forgets, the build waiting for command key on
// worker.
func (e *Engine) takePending(key, worker string) (store.ResumePoint, bool) {
	e.resume.mu.Lock()
	defer e.resume.mu.Unlock()
	p, ok := e.resume.pending[key]
	if !ok || p.Worker != worker {
		return store.ResumePoint{}, false
	}
	delete(e.resume.pending, key)
	return p, true
}

// abandonKept tells a worker to kill the kept commands keys the engine
// does not resume. It logs one line per worker's hello, with the count
// and a few keys (a worker's hello may list up to protocol.MaxKept), and
// gives up at the first that cannot be sent within 10s.
func (e *Engine) abandonKept(ctx context.Context, c Worker, keys []string, why string) {
	if len(keys) == 0 {
		return
	}
	e.log.Warn("worker kept commands this master does not resume: killing them", "worker", c.Name(),
		"count", len(keys), "keys", keys[:min(len(keys), 3)], "why", why)
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i, key := range keys {
		if err := c.Abandon(actx, key, why); err != nil {
			e.log.Warn("abandon kept commands", "worker", c.Name(), "key", key, "not_sent", len(keys)-i, "err", err)
			return
		}
	}
}

// giveUp ends the build of p RETRY: it runs again.
func (e *Engine) giveUp(p store.ResumePoint, why string) {
	e.log.Warn("build left running by a previous run ends RETRY", "builder", p.Builder, "worker", p.Worker, "build_id", p.BuildID, "why", why)
	if _, err := e.st.AbandonBuild(p.BuildID, time.Now()); err != nil {
		e.log.Error("abandon build", "builder", p.Builder, "worker", p.Worker, "build_id", p.BuildID, "err", err)
	}
	e.takeHeld(p.BuildID).release()
	e.Wake()
}

// startResumed rebuilds the build of p from the store and goes on with it
// on worker name, whose connection reported its command.
func (e *Engine) startResumed(ctx context.Context, p store.ResumePoint, name string, ws *workerState) {
	fail := func(why string) {
		e.abandonKept(ctx, ws.conn, []string{p.ResumeKey}, why)
		e.giveUp(p, why)
	}
	if why := e.unresumable(p); why != "" {
		fail(why)
		return
	}
	sb, err := e.st.Build(p.BuildID)
	if err != nil {
		fail(err.Error())
		return
	}
	req, err := e.st.BuildRequest(sb.BuildRequestID)
	if err != nil {
		fail(err.Error())
		return
	}
	e.mu.Lock()
	b := &build{e: e, req: req, cfg: e.builders[p.Builder], worker: name, ws: ws, parent: ctx, id: sb.ID, number: sb.Number}
	ws.take(b.cfg.Name)
	e.running[req.ID] = b
	e.mu.Unlock()
	e.wg.Go(func() {
		defer e.release(name, ws, b.cfg.Name)
		defer e.forget(b)
		b.resume(ctx, p)
	})
}

// resume finishes the step of p, then runs the build's next steps and
// records its end.
func (b *build) resume(ctx context.Context, p store.ResumePoint) {
	b.log = b.e.log.With("builder", b.cfg.Name, "worker", b.worker, "buildrequest", b.req.ID, "build", b.number)
	b.log.Info("build resumed after the master's restart", "step", p.StepName, "offset", p.Offset)
	// The locks Recover took again for the build; a build left to its
	// worker again keeps them until the master exits.
	held := b.e.takeHeld(b.id)
	finish := func(results int) {
		if results != resultDetached {
			held.build()
			b.check(b.e.st.DeleteResumePoint(b.id))
		}
		b.finish(results)
	}
	sc := b.cfg.Steps[p.StepIndex]
	b.check(b.e.st.SetBuildStateString(b.id, sc.Name))
	b.pos = stepPos{index: p.StepIndex, results: p.Results, halted: p.Halted}
	sctx, done, _ := b.stepContext(true) // a new build: not stopped
	r := b.resumeStep(sctx, p, sc)
	done()
	if r == resultDetached {
		finish(r)
		return
	}
	held.step()
	results, terminate := computeResult(sc, p.Results, r)
	if r == store.Retry || ctx.Err() != nil {
		finish(results)
		return
	}
	finish(b.runStepsFrom(ctx, p.StepIndex+1, results, p.Halted || terminate))
}

// resumeStep takes the command of p back from the worker, writes its
// output into the step's log, and ends the step as runShell does.
func (b *build) resumeStep(ctx context.Context, p store.ResumePoint, sc config.Step) int {
	if rsc, _, err := b.renderStep(sc); err == nil {
		sc = rsc
	}
	step := store.Step{ID: p.StepID, BuildID: b.id, Name: sc.Name}
	log := b.log.With("step", sc.Name)
	dl := &detachableLog{logStore: b.e.st}
	lw := newLogWriter(dl, p.LogID, b.e.logOptions(), log)
	lw.header(fmt.Sprintf("master restarted: the command goes on on worker %s (output from byte %d)", b.worker, p.Offset))
	wc := resumeWarningCounter(sc, p.Warnings)
	b.pos.warnings = wc
	out, closeLogs := b.logfileWriters(lw, dl, p.Logfiles, log)
	out = tapOutput(out, []func(protocol.Output){wc.output})
	res, err := b.detachable(ctx, p, lw, dl, out, func(ctx context.Context, out func(protocol.Output)) (protocol.Result, error) {
		return b.ws.conn.Resume(ctx, p.ResumeKey, p.Offset, out)
	})
	if errors.Is(err, errDetached) {
		closeLogs()
		lw.close()
		return resultDetached
	}
	results := commandResults(ctx, lw, res, err)
	closeLogs()
	lw.close()
	results = decodeRC(sc.DecodeRC, res, results)
	results = b.warningResults(step, sc, wc, results)
	desc := sc.Description
	if desc == "" {
		desc = quoteCommand(sc.Command)
	}
	return b.endStep(step, sc, results, desc+stateSuffix(results, res.TimedOut))
}

// stopPending stops a build that waits for its worker after the master's
// restart, as StopBuild does a running one: its step and the build end
// CANCELLED, with the reason; the worker's command is killed when it
// reports it. It returns false when the build is not waiting.
func (e *Engine) stopPending(bld store.Build, reason string) bool {
	e.resume.mu.Lock()
	var p store.ResumePoint
	found := false
	for key, q := range e.resume.pending {
		if q.BuildID == bld.ID {
			p, found = q, true
			delete(e.resume.pending, key)
		}
	}
	e.resume.mu.Unlock()
	if !found {
		return false
	}
	e.log.Info("stopping build waiting for its worker", "build_id", bld.ID, "reason", reason)
	now := time.Now()
	check := func(err error) {
		if err != nil {
			e.log.Error("stop build", "build_id", bld.ID, "err", err)
		}
	}
	check(e.st.FinishLog(p.LogID))
	for _, id := range p.Logfiles {
		check(e.st.FinishLog(id))
	}
	check(e.st.SetStepStateString(p.StepID, p.StepName+" (cancelled)"))
	check(e.st.FinishStep(p.StepID, store.Cancelled, now))
	check(e.st.DeleteResumePoint(bld.ID))
	check(e.st.SetBuildStateString(bld.ID, buildSummary(store.Cancelled)+" ("+reason+")"))
	check(e.st.FinishBuild(bld.ID, store.Cancelled, now))
	check(e.st.CompleteBuildRequestOf(bld.BuildRequestID, e.masterID, store.Cancelled, now))
	e.takeHeld(bld.ID).release()
	e.buildFinished()
	return true
}
