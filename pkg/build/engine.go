package build

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/internal/masterfiles"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Store is what the build engine needs of the store.
type Store interface {
	BuilderByName(name string) (store.Builder, error)
	WorkerByName(name string) (store.Worker, error)
	WorkerConnected(id, masterID int64, info map[string]string) error
	WorkerDisconnected(id, masterID int64) error

	Worker(id int64) (store.Worker, error)
	SetWorkerPaused(id int64, paused, graceful bool) error
	// SendControl asks the master holding a build, request or worker to
	// act on it (see Engine.Control).
	SendControl(c store.Control) error

	AddBuildset(nb store.NewBuildset) (int64, map[int64]int64, error)
	Buildset(id int64) (store.Buildset, error)
	// Change reads the changes a build builds, for its owners property.
	Change(id int64) (store.Change, error)
	BuildRequest(id int64) (store.BuildRequest, error)
	BuildRequests(f store.BuildRequestFilter) ([]store.BuildRequest, error)
	PendingBuildRequests(limits map[int64]int) ([]store.BuildRequest, error)
	ClaimBuildRequest(id, masterID int64, at time.Time) error
	// UnclaimBuildRequestOf and CompleteBuildRequestOf act only on a
	// request this master still claims (else store.ErrClaimed): another
	// master that presumed this one dead may have released it.
	UnclaimBuildRequestOf(id, masterID int64) error
	CompleteBuildRequestOf(id, masterID int64, results int, at time.Time) error

	AddBuild(nb store.NewBuild) (store.Build, error)
	Build(id int64) (store.Build, error)
	Builds(f store.BuildFilter) ([]store.Build, error)
	SetBuildStateString(id int64, s string) error
	SetBuildProperty(id int64, name string, p store.Property) error
	FinishBuild(id int64, results int, at time.Time) error
	// EndBuild is SetBuildStateString and FinishBuild in one write.
	EndBuild(id int64, state string, results int, at time.Time) error
	AbandonBuilds(masterID int64, at time.Time) ([]int64, error)
	// The resume points of finish_steps_on_restart (see resume.go).
	SetResumePoint(p store.ResumePoint) error
	ResumePoints(masterID int64) ([]store.ResumePoint, error)
	DeleteResumePoint(buildID int64) error
	AbandonBuild(buildID int64, at time.Time) (bool, error)

	// StartNewStep adds a step to a build, started at at, in one write.
	StartNewStep(buildID int64, name string, at time.Time) (store.Step, error)
	SetStepStateString(id int64, s string) error
	SetStepHidden(id int64, hidden bool) error
	FinishStep(id int64, results int, at time.Time) error
	// EndStep is SetStepStateString and FinishStep in one write.
	EndStep(id int64, state string, results int, at time.Time) error

	AddLog(stepID int64, name, typ string) (store.Log, error)
	AppendLog(logID int64, lines string) (int64, error)
	FinishLog(logID int64) error
	Logs(stepID int64) ([]store.Log, error)
}

// Config is what an Engine runs with.
type Config struct {
	Store    Store
	MasterID int64
	Builders []config.Builder
	Workers  []config.Worker
	Locks    []config.Lock // the [[locks]] builders and steps take
	Logger   *slog.Logger  // nil means discard
	// LogFlush is how often a step's log output is written to the store
	// while it runs; zero means 200ms.
	LogFlush time.Duration
	// Basedir is the master's base directory: the transfer steps' master
	// paths are relative to it and may not leave it; "" refuses them.
	Basedir string
	// MasterFiles are the master's own files (config.Config.MasterFiles):
	// no transfer step reads or writes them. Nil protects only the basedir
	// itself, which a directory_upload may not replace.
	MasterFiles []masterfiles.File
	// Secrets gives the values of %(secret:NAME)s; nil means there are
	// none (a step asking for one fails). Every value rendered is then
	// redacted as <NAME> in what the builds store.
	Secrets Secrets
	// LogMaxSize is log_max_size: the bytes of a log kept from its start;
	// zero means no limit. LogMaxTailSize is log_max_tail_size: the bytes
	// then kept from its end; zero keeps none. See logOptions.
	LogMaxSize, LogMaxTailSize int64
	// FinishSteps is finish_steps_on_restart: whether a stopping master
	// leaves its shell steps running on their workers, to go on with their
	// builds when it starts again (see resume.go). The zero value is off.
	FinishSteps config.FinishSteps
}

// Secrets is what the engine needs of the secrets providers.
type Secrets interface {
	// Get returns the value of the secret name, or an error (no such
	// secret, an unreadable one).
	Get(name string) (string, error)
}

// ErrShutdown is the cause given to running builds when the master stops:
// they end RETRY and their requests run again.
var ErrShutdown = errors.New("build: master shutting down")

// ErrFenced is the cause given to running builds by Fence: the other
// masters sharing the store presumed this one dead, ended its builds RETRY
// and gave its requests to others, so the builds stop recording anything.
// It wraps ErrShutdown: every step stops as at a shutdown.
var ErrFenced = fmt.Errorf("%w: presumed dead by the other masters", ErrShutdown)

// Engine matches pending build requests with idle connected workers and runs
// the builds.
type Engine struct {
	st       Store
	masterID int64
	basedir  string // Config.Basedir
	secrets  Secrets
	redact   *redactor // the secrets rendered so far; st redacts them
	log      *slog.Logger
	flush    time.Duration
	wake     chan struct{}

	// connMu serialises Attach's and the connection watchers' records of
	// a worker connecting and disconnecting; it is taken before mu.
	connMu sync.Mutex

	mu       sync.Mutex
	builders map[string]config.Builder // guarded by mu
	maxB     map[string]int            // guarded by mu; worker name → max builds (0: no limit)
	conns    map[string]*workerState   // guarded by mu; connected workers by name
	running  map[int64]*build          // guarded by mu; builds of this master by build request id
	// pinned counts, by builder id, the requests the last round left
	// waiting for the worker they chose (see chosenWorker): pending reads
	// that many more, so that they hold up no other request.
	pinned   map[int64]int             // guarded by mu
	lockDefs map[string]config.Lock    // guarded by mu; [[locks]] by name
	wprops   map[string]map[string]any // guarded by mu; worker name → its config properties
	logMax   [2]int64                  // guarded by mu; LogMaxSize, LogMaxTailSize
	locks    *Locks
	guard    *masterfiles.Guard      // guarded by mu; the master's own files
	ctx      context.Context         // guarded by mu; set by Run, nil before
	stopRun  context.CancelCauseFunc // guarded by mu; cancels ctx; set by Run
	fenced   bool                    // guarded by mu; Fence was called
	// triggerer starts triggered builds; finished is closed (and replaced)
	// whenever a build ends.
	triggerer Triggerer      // guarded by mu
	finished  chan struct{}  // guarded by mu
	wg        sync.WaitGroup // builds and connection watchers
	resume    resumer        // finish_steps_on_restart
	// draining is set by Drain: no new build starts. gone is closed (and
	// replaced) whenever a build leaves running.
	draining bool          // guarded by mu
	gone     chan struct{} // guarded by mu
	// logFails are the logs whose output could not all be stored (a
	// full disk), by log id, until their step ends.
	logFails map[int64]error // guarded by mu
	// controls are the control messages of other masters, which Run acts
	// on (see Control).
	controls chan store.Control
}

// Worker is a connected worker as the engine drives it: a gbb-worker's
// *protocol.WorkerConn, or a buildbot-worker's *bbworker.Worker. The
// methods are those of *protocol.WorkerConn, with its documentation:
//
//   - Name, Info and Remote do not change while the connection lasts.
//   - Done is closed when the connection ends; Err then says why, and
//     Run returns protocol.ErrConnectionLost for a command that did not
//     complete. Close ends the connection with a reason.
//   - Draining is closed when the worker said it is stopping gently; a
//     worker that never says so returns a channel that is never closed.
//   - Run runs one command; several may run at once (one per build).
//     Cancelling ctx interrupts the command, which then still completes.
//   - Kept lists the commands the worker kept from a previous master
//     run (finish_steps_on_restart); Resume and Abandon answer each. A
//     worker that keeps none returns nil from Kept, and errors from
//     Resume and Abandon.
type Worker interface {
	Name() string
	Info() protocol.WorkerInfo
	Remote() string
	Done() <-chan struct{}
	Draining() <-chan struct{}
	Close(reason error)
	Err() error
	Run(ctx context.Context, cmd protocol.Command, out func(protocol.Output)) (protocol.Result, error)
	Kept() []protocol.Kept
	Resume(ctx context.Context, key string, offset int64, out func(protocol.Output)) (protocol.Result, error)
	Abandon(ctx context.Context, key, why string) error
}

type workerState struct {
	conn    Worker
	id      int64
	running int
	// builders counts the running builds by builder name: as buildbot's
	// WorkerForBuilder, a (builder, worker) pair runs one build at a time,
	// so a builder with a build here takes no other one on this worker.
	builders map[string]int
	// paused and graceful (buildbot's "stop") keep new builds off the
	// worker; they are kept in the store, so they outlast a reconnection.
	paused   bool
	graceful bool
	// draining is set when the worker said it is stopping (a first
	// SIGTERM; protocol.WorkerConn.Draining): it takes no new build, as a
	// graceful one, for as long as this connection lasts. drainMarked
	// says the engine set the stored graceful flag for it, to clear when
	// the worker detaches (as buildbot resets graceful at the next
	// attach), unless someone asked for a graceful shutdown meanwhile.
	draining    bool
	drainMarked bool
	// fresh is set from Attach until the engine answered the commands the
	// worker kept (kept, from its hello; see resume.go): meanwhile it
	// takes no new build.
	fresh bool
	kept  []protocol.Kept
}

// New makes an engine; it starts nothing until Run.
func New(cfg Config) *Engine {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	flush := cfg.LogFlush
	if flush == 0 {
		flush = 200 * time.Millisecond
	}
	red := &redactor{}
	e := &Engine{
		st:       redactingStore{Store: cfg.Store, r: red},
		secrets:  cfg.Secrets,
		redact:   red,
		masterID: cfg.MasterID,
		basedir:  cfg.Basedir,
		log:      log,
		flush:    flush,
		wake:     make(chan struct{}, 1),
		conns:    map[string]*workerState{},
		running:  map[int64]*build{},
		locks:    NewLocks(),
		finished: make(chan struct{}),
		gone:     make(chan struct{}),
		controls: make(chan store.Control, 256),
	}
	e.SetConfig(cfg.Builders, cfg.Workers)
	e.SetLocks(cfg.Locks)
	e.SetLogLimits(cfg.LogMaxSize, cfg.LogMaxTailSize)
	e.SetFinishSteps(cfg.FinishSteps)
	e.SetMasterFiles(cfg.MasterFiles)
	return e
}

// SetMasterFiles replaces Config.MasterFiles, for the transfers started
// from now on.
func (e *Engine) SetMasterFiles(files []masterfiles.File) {
	g := masterfiles.New(e.basedir, files)
	e.mu.Lock()
	e.guard = g
	e.mu.Unlock()
}

// masterGuard is the check of the transfers' master paths.
func (e *Engine) masterGuard() *masterfiles.Guard {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.guard
}

// SetLogLimits replaces Config.LogMaxSize and LogMaxTailSize for the logs
// opened from now on.
func (e *Engine) SetLogLimits(maxSize, tailSize int64) {
	e.mu.Lock()
	e.logMax = [2]int64{maxSize, tailSize}
	e.mu.Unlock()
}

// logOptions are the options of a new step log.
func (e *Engine) logOptions() logOptions {
	e.mu.Lock()
	defer e.mu.Unlock()
	return logOptions{Flush: e.flush, MaxSize: e.logMax[0], TailSize: e.logMax[1], WriteFailed: e.logWriteFailed}
}

// SetLocks replaces the lock definitions; locks held keep being held until
// released, and new max counts apply to the next acquisitions.
func (e *Engine) SetLocks(locks []config.Lock) {
	m := make(map[string]config.Lock, len(locks))
	for _, l := range locks {
		m[l.Name] = l
	}
	e.mu.Lock()
	e.lockDefs = m
	e.mu.Unlock()
}

// SetConfig replaces the builders and workers that new builds use; running
// builds keep the config they started with.
func (e *Engine) SetConfig(builders []config.Builder, workers []config.Worker) {
	bm := make(map[string]config.Builder, len(builders))
	for _, b := range builders {
		bm[b.Name] = b
	}
	wm := make(map[string]int, len(workers))
	wp := make(map[string]map[string]any, len(workers))
	for _, w := range workers {
		wm[w.Name] = w.MaxBuilds
		wp[w.Name] = w.Properties
	}
	e.mu.Lock()
	e.builders, e.maxB, e.wprops = bm, wm, wp
	e.mu.Unlock()
	e.Wake()
}

// Wake tells the engine that requests may be waiting.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Recover ends what a previous run of this master left running: its builds
// end RETRY, and requests it had claimed run again.
func (e *Engine) Recover() error {
	now := time.Now()
	ids, err := e.abandonLeft(now)
	if err != nil {
		return fmt.Errorf("recover builds: %w", err)
	}
	if len(ids) > 0 {
		e.log.Warn("builds left running by a previous run end RETRY", "builds", ids)
	}
	claimed, done := true, false
	reqs, err := e.st.BuildRequests(store.BuildRequestFilter{Claimed: &claimed, Complete: &done})
	if err != nil {
		return fmt.Errorf("recover requests: %w", err)
	}
	for _, r := range reqs {
		if r.ClaimedByMasterID != e.masterID {
			continue
		}
		running, err := e.st.Builds(store.BuildFilter{BuildRequestID: r.ID, Complete: &done})
		if err != nil {
			return fmt.Errorf("recover request %d: %w", r.ID, err)
		}
		if len(running) == 0 {
			if err := e.st.UnclaimBuildRequestOf(r.ID, e.masterID); err != nil && !errors.Is(err, store.ErrClaimed) {
				return fmt.Errorf("recover request %d: %w", r.ID, err)
			}
		}
	}
	return nil
}

// Run distributes requests until ctx is done, then interrupts running builds
// (they end RETRY) and returns once every build and watcher has finished.
func (e *Engine) Run(ctx context.Context) error {
	bctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	e.mu.Lock()
	e.ctx, e.stopRun = bctx, cancel
	if e.fenced {
		cancel(ErrFenced)
	}
	e.mu.Unlock()
	defer e.wg.Wait()
	defer cancel(ErrShutdown)
	controlsDone := make(chan struct{})
	go func() {
		defer close(controlsDone)
		e.serveControls(ctx)
	}()
	defer func() { <-controlsDone }()

	// A slow tick catches anything a missed wake-up would leave waiting.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	defer e.armResumeDeadline()()
	e.Wake()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.wake:
		case <-tick.C:
		}
		e.reattach(bctx)
		if err := e.distribute(bctx); err != nil {
			e.log.Error("distribute build requests", "err", err)
		}
	}
}

// refuseAttach drops a worker's connection that the store could not
// record (the database away, say): the worker connects again, here or to
// its next master, rather than staying connected to a master that never
// gives it a build.
func (e *Engine) refuseAttach(c Worker, log *slog.Logger, err error) {
	log.Error("attach worker: the store cannot record its connection; dropping it so that it connects again", "err", err)
	c.Close(fmt.Errorf("the master cannot record the worker's connection (its database?): %w", err))
}

// Attach registers a connected worker; it is used until its connection
// ends. A connection the store cannot record is dropped (refuseAttach).
func (e *Engine) Attach(c Worker) {
	name := c.Name()
	log := e.log.With("worker", name)
	w, err := e.st.WorkerByName(name)
	if err != nil {
		e.refuseAttach(c, log, err)
		return
	}
	info := c.Info()
	m := map[string]string{
		"admin": info.Admin, "host": info.Host, "os": info.OS, "arch": info.Arch,
		"version": info.Version, "basedir": info.Basedir, "numcpus": fmt.Sprint(info.NumCPU),
	}
	for k, v := range info.Extra {
		m[k] = v
	}
	if m["protocol"] == "" {
		m["protocol"] = "gbb" // a buildbot-worker's says "pb" or "msgpack"
	}
	// connMu orders this record and the old connection's "disconnected",
	// so a worker replacing its own dead connection stays connected.
	e.connMu.Lock()
	defer e.connMu.Unlock()
	if err := e.st.WorkerConnected(w.ID, e.masterID, m); err != nil {
		e.refuseAttach(c, log, err)
		return
	}
	e.mu.Lock()
	graceful := w.Graceful
	// A drained connection this one replaces: its graceful flag was only
	// its drain's.
	old, ok := e.conns[name]
	undrain := ok && old.drainMarked && !old.graceful
	if undrain {
		graceful = false
	}
	e.conns[name] = &workerState{conn: c, id: w.ID, builders: map[string]int{}, paused: w.Paused, graceful: graceful, fresh: true, kept: c.Kept()}
	e.mu.Unlock()
	if undrain {
		e.clearDrainMark(w.ID, log)
	}
	log.Info("worker attached", "host", info.Host, "os", info.OS, "arch", info.Arch, "version", info.Version, "protocol", m["protocol"])
	e.wg.Go(func() {
		select {
		case <-c.Draining():
			e.workerDraining(name, c, log)
			<-c.Done()
		case <-c.Done():
		}
		e.connMu.Lock()
		defer e.connMu.Unlock()
		e.mu.Lock()
		ws, ok := e.conns[name]
		if ok && ws.conn == c {
			delete(e.conns, name)
		}
		replaced := ok && ws.conn != c
		undrain := ok && ws.conn == c && ws.drainMarked && !ws.graceful
		e.mu.Unlock()
		if !replaced {
			if err := e.st.WorkerDisconnected(w.ID, e.masterID); err != nil {
				log.Error("detach worker", "err", err)
			}
		}
		if undrain {
			e.clearDrainMark(w.ID, log)
		}
		log.Info("worker detached", "reason", c.Err(), "replaced", replaced)
	})
	e.Wake()
}

// workerDraining takes worker name, connected as c, out of the
// distribution: it said it is stopping gently, so it would refuse a new
// build's commands. Its running builds go on. As buildbot's worker asking
// for its graceful shutdown, the stored worker shows graceful meanwhile.
func (e *Engine) workerDraining(name string, c Worker, log *slog.Logger) {
	e.mu.Lock()
	ws, ok := e.conns[name]
	if !ok || ws.conn != c {
		e.mu.Unlock()
		return
	}
	ws.draining = true
	mark := !ws.graceful
	ws.drainMarked = mark // set first: a replacing connection sees it
	running := ws.running
	e.mu.Unlock()
	log.Info("worker stopping: it takes no new build; its running builds go on", "running", running)
	if mark {
		w, err := e.st.Worker(ws.id)
		if err == nil {
			err = e.st.SetWorkerPaused(ws.id, w.Paused, true)
		}
		if err != nil {
			log.Error("record the worker's graceful stop", "err", err)
		}
	}
	// Requests waiting for this worker may go to another one now.
	e.Wake()
}

// clearDrainMark clears the stored graceful flag a worker's drain set.
func (e *Engine) clearDrainMark(id int64, log *slog.Logger) {
	w, err := e.st.Worker(id)
	if err == nil {
		err = e.st.SetWorkerPaused(id, w.Paused, false)
	}
	if err != nil {
		log.Error("clear the worker's graceful stop", "err", err)
	}
}

// distribute claims pending requests for which an idle worker is connected
// and starts their builds.
func (e *Engine) distribute(ctx context.Context) error {
	reqs, err := e.pending()
	if err != nil {
		return err
	}
	if len(reqs) == 0 || e.isDraining() {
		return nil
	}
	names := e.builderNames()
	if reqs, err = e.collapse(reqs, names); err != nil {
		return err
	}
	pinned := map[int64]int{}
	defer e.notePinned(pinned)
	for _, r := range reqs {
		if ctx.Err() != nil {
			return nil
		}
		bname := names[r.BuilderID]
		chosen := e.chosenWorker(r)
		e.mu.Lock()
		bcfg, configured := e.builders[bname]
		var ws *workerState
		var wname string
		if configured {
			wname, ws = e.pickWorker(bcfg, chosen)
			if ws == nil && slices.Contains(bcfg.WorkerNames, chosen) {
				pinned[r.BuilderID]++
			}
		}
		if ws == nil || e.draining {
			e.mu.Unlock()
			continue
		}
		ws.take(bcfg.Name)
		// The build is known before its request is claimed, so that a
		// cancel that finds the request claimed finds the build.
		b := &build{e: e, req: r, cfg: bcfg, worker: wname, ws: ws, parent: ctx}
		e.running[r.ID] = b
		e.mu.Unlock()

		if err := e.st.ClaimBuildRequest(r.ID, e.masterID, time.Now()); err != nil {
			e.forget(b)
			e.release(wname, ws, bcfg.Name)
			if errors.Is(err, store.ErrClaimed) {
				// Another master took it; the next round reads the
				// requests past the ones this round asked for.
				e.Wake()
				continue
			}
			return err
		}
		e.wg.Go(func() {
			defer e.release(wname, ws, bcfg.Name)
			defer e.forget(b)
			b.run(ctx)
		})
	}
	return nil
}

// take records a build of builder starting on the worker. e.mu must be
// held.
func (ws *workerState) take(builder string) {
	ws.running++
	ws.builders[builder]++
}

// busyFor reports whether builder has a build running on the worker. e.mu
// must be held.
func (ws *workerState) busyFor(builder string) bool {
	return ws.builders[builder] > 0
}

// release records the end of a build of builder on worker name.
func (e *Engine) release(name string, ws *workerState, builder string) {
	e.mu.Lock()
	ws.running--
	if ws.builders[builder]--; ws.builders[builder] <= 0 {
		delete(ws.builders, builder)
	}
	idle := ws.graceful && ws.running == 0
	e.mu.Unlock()
	if idle {
		e.shutdownWorker(name, ws)
	}
	e.Wake()
}

// forget removes b from the running builds.
func (e *Engine) forget(b *build) {
	e.mu.Lock()
	if e.running[b.req.ID] == b {
		delete(e.running, b.req.ID)
		close(e.gone)
		e.gone = make(chan struct{})
	}
	e.mu.Unlock()
}

// logWriteFailed records that a log could not be stored whole.
func (e *Engine) logWriteFailed(logID int64, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.logFails == nil {
		e.logFails = map[int64]error{}
	}
	e.logFails[logID] = err
}

// stepLogFailure returns, and forgets, the first write error of the logs
// of a step, or nil when they were all stored.
func (e *Engine) stepLogFailure(stepID int64) error {
	e.mu.Lock()
	none := len(e.logFails) == 0
	e.mu.Unlock()
	if none {
		return nil
	}
	logs, err := e.st.Logs(stepID)
	if err != nil {
		return fmt.Errorf("list the step's logs: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var first error
	for _, l := range logs {
		if err, ok := e.logFails[l.ID]; ok {
			delete(e.logFails, l.ID)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Fence stops every running build at once, recording nothing more of
// them (their end, their requests' release), and starts no new one: the
// other masters presumed this one dead and ended its builds themselves
// (store.AbandonBuilds), and another master may run their requests now.
// Run returns once they have stopped.
func (e *Engine) Fence() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fenced, e.draining = true, true
	if e.stopRun != nil {
		e.stopRun(ErrFenced)
	}
}

// Drain makes the engine start no new build, as buildbot's clean shutdown:
// pending requests stay pending in the store (a forced build is still
// accepted) and run after the next start; running builds go on.
func (e *Engine) Drain() {
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
}

func (e *Engine) isDraining() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.draining
}

// RunningBuild is a build running on this master, as Running lists it.
type RunningBuild struct {
	Builder        string
	Worker         string
	BuildRequestID int64
}

// Running lists the builds running on this master, by request id, and
// returns a channel closed when one of them leaves the list.
func (e *Engine) Running() ([]RunningBuild, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RunningBuild, 0, len(e.running))
	for id, b := range e.running {
		out = append(out, RunningBuild{Builder: b.cfg.Name, Worker: b.worker, BuildRequestID: id})
	}
	slices.SortFunc(out, func(a, b RunningBuild) int { return int(a.BuildRequestID - b.BuildRequestID) })
	return out, e.gone
}

// pending returns the requests the distributor looks at now, in the order
// it takes them (highest priority, then oldest): of each builder with room
// on a connected worker, as many as it has free workers; of a builder
// that collapses requests, all of them. Only those are read from the store,
// so a round costs what it can start, not what waits.
func (e *Engine) pending() ([]store.BuildRequest, error) {
	names := e.builderNames()
	limits := make(map[int64]int, len(names))
	e.mu.Lock()
	for id, name := range names {
		b, ok := e.builders[name]
		if !ok {
			continue
		}
		if b.CollapseRequests {
			limits[id] = 0
		} else if room := e.room(b); room > 0 {
			limits[id] = room + e.pinned[id]
		}
	}
	e.mu.Unlock()
	if len(limits) == 0 {
		return nil, nil
	}
	return e.st.PendingBuildRequests(limits)
}

// room returns how many more builds of b its connected workers can take
// now: one on each that has no build of b and is under its max_builds.
// e.mu must be held.
func (e *Engine) room(b config.Builder) int {
	n := 0
	for _, w := range b.WorkerNames {
		if ws, ok := e.conns[w]; ok && e.canStart(w, ws, b.Name) {
			n++
		}
	}
	return n
}

// canStart reports whether worker name, connected as ws, can start a build
// of builder now, as buildbot's WorkerForBuilder.isAvailable: it has no
// build of that builder running, is neither paused nor stopping (asked
// to, or by itself), and is under its max_builds. e.mu must be held.
func (e *Engine) canStart(name string, ws *workerState, builder string) bool {
	if ws.paused || ws.graceful || ws.draining || ws.busyFor(builder) {
		return false
	}
	limit := e.maxB[name]
	return limit <= 0 || ws.running < limit
}

// builderNames maps the store ids of the configured builders to their names.
func (e *Engine) builderNames() map[int64]string {
	e.mu.Lock()
	names := make([]string, 0, len(e.builders))
	for n := range e.builders {
		names = append(names, n)
	}
	e.mu.Unlock()
	ids := make(map[int64]string, len(names))
	for _, n := range names {
		if b, err := e.st.BuilderByName(n); err == nil {
			ids[b.ID] = n
		}
	}
	return ids
}

// pickWorker returns the least busy connected worker of b that can start a
// build of b, or nil; only the worker called chosen, when it is one of b's
// (see chosenWorker). e.mu must be held.
func (e *Engine) pickWorker(b config.Builder, chosen string) (string, *workerState) {
	var best *workerState
	var bestName string
	pinned := slices.Contains(b.WorkerNames, chosen)
	for _, n := range b.WorkerNames {
		if pinned && n != chosen {
			continue
		}
		ws, ok := e.conns[n]
		if !ok || ws.fresh || !e.canStart(n, ws, b.Name) {
			continue
		}
		if best == nil || ws.running < best.running {
			best, bestName = ws, n
		}
	}
	return bestName, best
}
