package build

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// build is one running build.
type build struct {
	e      *Engine
	req    store.BuildRequest
	cfg    config.Builder
	worker string
	ws     *workerState
	log    *slog.Logger
	id     int64
	number int64
	// parent is the engine's context: cancelled with ErrShutdown when the
	// master stops. Each step runs in a child that a stop cancels.
	parent context.Context

	// pos is where runStepsFrom is, for a resume point.
	pos stepPos

	mu         sync.Mutex
	cancel     context.CancelCauseFunc // guarded by mu; cancels the running step, nil between steps
	stopped    bool                    // guarded by mu; set by stop
	stopReason string                  // guarded by mu
	// secrets are the secrets this build rendered, sent with each of its
	// commands so that the worker hides them in its own log.
	secrets []protocol.Secret // guarded by mu
}

// run runs the build to its end and records it. ctx is cancelled with
// ErrShutdown when the master stops.
func (b *build) run(ctx context.Context) {
	st := b.e.st
	b.log = b.e.log.With("builder", b.cfg.Name, "worker", b.worker, "buildrequest", b.req.ID)
	props := b.properties()
	bld, err := st.AddBuild(store.NewBuild{
		BuilderID:      b.req.BuilderID,
		BuildRequestID: b.req.ID,
		WorkerID:       b.ws.id,
		MasterID:       b.e.masterID,
		StateString:    "starting",
		Properties:     props,
	})
	if err != nil {
		b.log.Error("start build", "err", err)
		if err := st.UnclaimBuildRequestOf(b.req.ID, b.e.masterID); err != nil {
			b.log.Error("unclaim request", "err", err)
		}
		return
	}
	b.id, b.number = bld.ID, bld.Number
	b.log = b.log.With("build", bld.Number)
	b.log.Info("build started")
	num, _ := scheduler.NewProperty(bld.Number, "Build")
	b.check(st.SetBuildProperty(bld.ID, "buildnumber", num))

	b.finish(b.runLocked(ctx))
}

// finish records the end of the build with results; a build whose step was
// left to its worker (resultDetached) stays running in the store.
func (b *build) finish(results int) {
	st := b.e.st
	if errors.Is(cause(b.parent), ErrFenced) {
		// Ended RETRY by the master that presumed this one dead; its
		// request may be running on another master already.
		b.log.Warn("build stopped: this master was presumed dead; the build was ended RETRY by another master", "results", ResultName(results))
		b.e.buildFinished()
		return
	}
	if results == resultDetached {
		b.log.Info("master stopping: the running step is left to its worker, the build goes on after the restart")
		return
	}
	summary := buildSummary(results)
	if reason, stopped := b.stopState(); stopped {
		// As buildbot's stopBuild: a stopped build is CANCELLED, whatever
		// its steps did, and says why.
		results = store.WorstResult(results, store.Cancelled)
		summary = buildSummary(results) + " (" + reason + ")"
	}

	if !b.stillOurs() {
		b.e.buildFinished()
		return
	}
	b.check(st.EndBuild(b.id, summary, results, time.Now()))
	// The request is released or completed only while this master still
	// claims it: another master that presumed this one dead may have
	// released it, and run it again, since.
	var err error
	if results == store.Retry {
		err = st.UnclaimBuildRequestOf(b.req.ID, b.e.masterID)
	} else {
		err = st.CompleteBuildRequestOf(b.req.ID, b.e.masterID, results, time.Now())
	}
	if errors.Is(err, store.ErrClaimed) {
		b.log.Warn("the build's request is no longer this master's: left as it is", "err", err)
	} else {
		b.check(err)
	}
	b.e.buildFinished()
	b.log.Info("build finished", "results", ResultName(results))
}

// stillOurs reports whether the build is still this master's to end: not
// ended already by another master that presumed this one dead (it hung
// longer than master_timeout; Fence stops the builds once it hears of it,
// this catches one ending first).
func (b *build) stillOurs() bool {
	bld, err := b.e.st.Build(b.id)
	if err != nil || !bld.Complete {
		return true // an unreadable build is ended as usual
	}
	b.log.Warn("build ended by another master meanwhile (it presumed this one dead): its end is not recorded", "results", ResultName(bld.Results))
	return false
}

// check logs a store error; a build goes on as far as it can.
func (b *build) check(err error) {
	if err != nil {
		b.log.Error("record build", "err", err)
	}
}

func (b *build) properties() store.Properties {
	props := store.Properties{}
	set := func(name string, v any, source string) {
		p, err := scheduler.NewProperty(v, source)
		if err == nil {
			props[name] = p
		}
	}
	bs, bsErr := b.e.st.Buildset(b.req.BuildsetID)
	// As buildbot (process/build.py setupPropertiesKnownBeforeBuildStarts):
	// first the properties of the changes built (source "Change", as the
	// changes keep them), in the changes' order, so that anything later
	// overrides them; then the scheduler's (forced ones too); then the
	// builder's (builder.py setupProperties: BuilderConfig.properties
	// override the request's) and its default_properties where nothing
	// set them; then the worker's, then the build's own.
	if bsErr == nil {
		for _, id := range bs.ChangeIDs {
			c, err := b.e.st.Change(id)
			if err != nil {
				b.log.Error("read change for its properties", "change", id, "err", err)
				continue
			}
			for k, v := range c.Properties {
				props[k] = v
			}
		}
	}
	if err := bsErr; err == nil {
		for k, v := range bs.Properties {
			props[k] = v
		}
	}
	for k, v := range b.cfg.Properties {
		set(k, v, "Builder")
	}
	for k, v := range b.cfg.DefaultProperties {
		if _, ok := props[k]; !ok {
			set(k, v, "Builder")
		}
	}
	if err := bsErr; err == nil {
		// As buildbot's setupBuildProperties: with one source stamp only.
		if len(bs.SourceStamps) == 1 {
			ss := bs.SourceStamps[0]
			set("branch", ss.Branch, "Build")
			set("revision", ss.Revision, "Build")
			set("repository", ss.Repository, "Build")
			set("project", ss.Project, "Build")
			set("codebase", ss.Codebase, "Build")
		}
		if owners := b.owners(bs); len(owners) > 0 {
			set("owners", owners, "Build")
		}
	} else {
		b.log.Error("read buildset", "err", err)
	}
	for k, v := range b.e.workerProperties(b.worker) {
		set(k, v, "Worker")
	}
	set("buildername", b.cfg.Name, "Builder")
	set("workername", b.worker, "Worker")
	info := b.ws.conn.Info()
	set("builddir", joinPath(info.Basedir, b.cfg.WorkerDir()), "Worker")
	return props
}

// runSteps runs the worker preparation and the configured steps, in order,
// and returns the build's result, computed as buildbot does.
func (b *build) runSteps(ctx context.Context) int {
	st := b.e.st
	prep, err := st.StartNewStep(b.id, "worker_preparation", time.Now())
	if err != nil {
		b.log.Error("add step", "err", err)
		return store.Exception
	}
	b.check(st.EndStep(prep.ID, fmt.Sprintf("worker %s ready", b.worker), store.Success, time.Now()))
	return b.runStepsFrom(ctx, 0, store.Success, false)
}

// runStepsFrom runs the configured steps from the first'th on, given the
// build's results so far and whether a step halted it, and returns the
// build's result.
func (b *build) runStepsFrom(ctx context.Context, first, results int, halted bool) int {
	st := b.e.st
	for i := first; i < len(b.cfg.Steps); i++ {
		sc := b.cfg.Steps[i]
		if halted && !sc.AlwaysRun {
			continue
		}
		b.pos = stepPos{index: i, results: results, halted: halted}
		// A stopped build runs only its always_run steps, as buildbot's.
		sctx, done, ok := b.stepContext(sc.AlwaysRun)
		if !ok {
			continue
		}
		b.check(st.SetBuildStateString(b.id, sc.Name))
		r := b.runStepLocked(sctx, sc)
		done()
		if r == resultDetached {
			return r
		}
		var terminate bool
		results, terminate = computeResult(sc, results, r)
		if terminate {
			halted = true
		}
		// A lost worker or a master shutting down end the build at once;
		// buildbot runs no always_run step either when the worker is gone.
		if r == store.Retry || ctx.Err() != nil {
			return results
		}
	}
	return results
}

// cause is why ctx was cancelled, or nil.
func cause(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	return context.Cause(ctx)
}

// computeResult folds a step's result into the build's, as buildbot's
// BuildStep/Build.computeResultAndTermination; it also says whether the
// build stops running steps (except always_run ones).
func computeResult(sc config.Step, buildResult, stepResult int) (int, bool) {
	possible := stepResult
	terminate := false
	switch stepResult {
	case store.Failure:
		switch {
		case sc.FlunkOnFailure:
			possible = store.Failure
		case sc.WarnOnFailure:
			possible = store.Warnings
		default:
			possible = store.Success
		}
		if sc.HaltOnFailure {
			terminate = true
		}
	case store.Warnings:
		switch {
		case sc.FlunkOnWarnings:
			possible = store.Failure
		case sc.QuietWarnings:
			possible = store.Success
		default:
			possible = store.Warnings
		}
	case store.Exception, store.Retry, store.Cancelled:
		terminate = true
	case store.Skipped:
		possible = store.Success
	}
	return store.WorstResult(buildResult, possible), terminate
}

// runStep runs one configured step and returns its result. Its strings
// are rendered first (see renderStep).
func (b *build) runStep(ctx context.Context, sc config.Step) int {
	st := b.e.st
	sc, rctx, renderErr := b.renderStep(sc)
	step, err := st.StartNewStep(b.id, sc.Name, time.Now())
	if err != nil {
		b.log.Error("add step", "err", err)
		return store.Exception
	}
	log := b.log.With("step", step.Name)
	if res, state, done := b.beforeStep(step, sc, renderErr, rctx); done {
		return b.endStep(step, sc, res, state)
	}

	var res int
	var state string
	switch sc.Type {
	case "shell":
		res, state = b.runShell(ctx, step, sc, log)
	case "git":
		res, state = b.runGit(ctx, step, sc, log)
	case "trigger":
		res, state = b.runTrigger(ctx, step, sc)
	case "set_property":
		res, state = b.runSetProperty(step, sc)
	case "set_property_from_command":
		res, state = b.runSetPropertyFromCommand(ctx, step, sc, log)
	case "master_shell_command":
		res, state = b.runMasterShell(ctx, step, sc, log)
	case "log_message":
		res, state = b.runLogMessage(step, sc)
	case "mkdir", "rmdir", "remove_file", "file_upload", "directory_upload", "file_download", "string_download",
		"shell_sequence", "json_string_download", "json_properties_download", "multiple_file_upload":
		res, state = b.runWorkerStep(ctx, step, sc, log)
	default:
		res = store.Exception
		state = fmt.Sprintf("step type %q is not supported by this version of gbb", sc.Type)
		if l, err := st.AddLog(step.ID, "err.text", "t"); err == nil {
			_, err := st.AppendLog(l.ID, state+"\n")
			b.check(err)
			b.check(st.FinishLog(l.ID))
		}
	}
	if res == resultDetached {
		return res // the step goes on after the master's restart
	}
	return b.endStep(step, sc, res, state)
}

// runShell runs a shell step on the worker.
func (b *build) runShell(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, string) {
	desc := sc.Description
	if desc == "" {
		desc = quoteCommand(sc.Command)
	}
	b.check(b.e.st.SetStepStateString(step.ID, desc))
	wc := newWarningCounter(sc)
	res, results := b.runCommand(ctx, step, protocol.Command{
		Builder:   b.cfg.WorkerDir(),
		ResumeKey: b.resumeKey(step, sc, wc),
		Shell: &protocol.ShellCommand{
			Argv:     sc.Command.Argv,
			Script:   sc.Command.Script,
			Workdir:  sc.Workdir,
			Env:      sc.Env,
			EnvLists: sc.EnvLists,
			Timeout:  sc.Timeout.Duration,
			MaxTime:  sc.MaxTime.Duration,
			// buildbot's ShellCommand options.
			SigtermTime:     sc.SigtermTime.Duration,
			InterruptSignal: sc.InterruptSignal,
			NoStdout:        sc.DropStdout,
			NoStderr:        sc.DropStderr,
			Logfiles:        sc.Logfiles,
		},
	}, log, wc.output)
	if results == resultDetached {
		return results, desc
	}
	results = decodeRC(sc.DecodeRC, res, results)
	results = b.warningResults(step, sc, wc, results)
	return results, desc + stateSuffix(results, res.TimedOut)
}

// runCommand runs cmd on the worker, streaming its output into the step's
// stdio log, and says how it ended with buildbot's result codes: RETRY when
// the worker is lost, stops or the master shuts down, CANCELLED when the build is
// stopped, FAILURE when it cannot run, times out or exits non-zero. Each
// non-nil tap sees every chunk of output before the log does.
func (b *build) runCommand(ctx context.Context, step store.Step, cmd protocol.Command, log *slog.Logger, taps ...func(protocol.Output)) (protocol.Result, int) {
	return b.runCommandLog(ctx, step, "stdio", cmd, log, taps...)
}

// runCommandLog is runCommand with the output in the log called logName.
func (b *build) runCommandLog(ctx context.Context, step store.Step, logName string, cmd protocol.Command, log *slog.Logger, taps ...func(protocol.Output)) (protocol.Result, int) {
	l, err := b.e.st.AddLog(step.ID, logName, "s")
	if err != nil {
		log.Error("add log", "err", err)
		return protocol.Result{}, store.Exception
	}
	dl := &detachableLog{logStore: b.e.st}
	lw := newLogWriter(dl, l.ID, b.e.logOptions(), log)
	defer lw.close()

	// The worker writes the command's own header lines (argv, directory,
	// timeout), as buildbot's worker does; the master adds the endings.
	out, closeLogs, logfileIDs := b.logfiles(step, cmd, lw, dl, log)
	defer closeLogs()
	out = tapOutput(out, taps)
	res, err := b.runOnWorker(ctx, step, l.ID, logfileIDs, cmd, lw, dl, out)
	if errors.Is(err, errDetached) {
		return res, resultDetached
	}
	return res, commandResults(ctx, lw, res, err)
}

// commandResults ends the log of a command that ran on the worker and says
// how it ended, as runCommand does.
func commandResults(ctx context.Context, lw *logWriter, res protocol.Result, err error) int {
	lw.endOutput()
	shutdown := errors.Is(cause(ctx), ErrShutdown)
	switch {
	case errors.Is(err, protocol.ErrConnectionLost):
		lw.header("worker lost: " + err.Error())
		return store.Retry
	case errors.Is(err, protocol.ErrWorkerDraining):
		// As buildbot's worker lost: the build runs again, on another
		// worker (this one takes no new build while it drains).
		lw.header("worker stopping: it takes no new command, the build will run again")
		return store.Retry
	case err != nil && shutdown:
		lw.header("master shutting down: the build will run again")
		return store.Retry
	case err != nil:
		lw.header("error: " + err.Error())
		return store.Exception
	case res.Err != "":
		lw.header(res.Err)
		lw.header("program finished with exit code -1")
		return store.Failure
	}
	lw.header(fmt.Sprintf("program finished with exit code %d", res.ExitCode))
	lw.header(fmt.Sprintf("elapsedTime=%f", res.Elapsed.Seconds()))
	switch {
	case res.Interrupted && shutdown:
		return store.Retry
	case res.Interrupted && ctx.Err() == nil:
		// Nobody here asked: the worker is stopping (a second SIGTERM)
		// and interrupted it; as a lost worker, the build runs again.
		lw.header("worker stopping: the command was interrupted, the build will run again")
		return store.Retry
	case res.Interrupted:
		return store.Cancelled
	case res.ExitCode == 0 && res.Signal == "" && !res.TimedOut:
		return store.Success
	default:
		return store.Failure
	}
}

// stateSuffix is what a step's state string gets for its result, as
// buildbot's "'make' (failure)".
func stateSuffix(results int, timedOut bool) string {
	switch {
	case results == store.Success:
		return ""
	case results == store.Failure && timedOut:
		return " (timed out)"
	default:
		return " (" + ResultName(results) + ")"
	}
}

// buildSummary is the build's final state string.
func buildSummary(results int) string {
	switch results {
	case store.Success:
		return "build successful"
	case store.Warnings:
		return "build with warnings"
	case store.Failure:
		return "failed"
	default:
		return ResultName(results)
	}
}

// ResultName is buildbot's name for a result code.
func ResultName(r int) string {
	names := []string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}
	if r >= 0 && r < len(names) {
		return names[r]
	}
	return fmt.Sprintf("result %d", r)
}

// quoteCommand is buildbot's description of a shell command: 'make test'.
func quoteCommand(c config.Command) string {
	s := c.String()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return "'" + s + "'"
}

func joinPath(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, strings.TrimRight(p, "/"))
		}
	}
	return strings.Join(out, "/")
}
