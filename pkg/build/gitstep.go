package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// runGit runs a git step, as buildbot's Git source step: the worker checks
// out the build's revision (its revision property) or the branch's tip
// (the step's branch, else the build's branch property, else the remote's
// default branch), and the build gets the got_revision property.
func (b *build) runGit(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, string) {
	st := b.e.st
	b.check(st.SetStepStateString(step.ID, "updating"))
	l, err := st.AddLog(step.ID, "stdio", "s")
	if err != nil {
		log.Error("add log", "err", err)
		return store.Exception, "update (exception)"
	}
	lw := newLogWriter(st, l.ID, b.e.flush, log)
	defer lw.close()

	props := b.currentProperties()
	branch := sc.Branch
	if branch == "" {
		branch = stringProperty(props, "branch")
	}
	cmd := protocol.Command{
		Builder: b.cfg.Name,
		Git: &protocol.GitCommand{
			RepoURL:  sc.RepoURL,
			Branch:   branch,
			Revision: stringProperty(props, "revision"),
			Mode:     sc.Mode,
			Method:   sc.Method,
			Depth:    sc.Shallow,
			Workdir:  sc.Workdir,
		},
	}
	res, err := b.ws.conn.Run(ctx, cmd, lw.output)
	lw.endOutput()
	switch {
	case errors.Is(err, protocol.ErrConnectionLost):
		lw.header("worker lost: " + err.Error())
		return store.Retry, "update (retry)"
	case err != nil && errors.Is(cause(ctx), ErrShutdown):
		lw.header("master shutting down: the build will run again")
		return store.Retry, "update (retry)"
	case err != nil:
		lw.header("error: " + err.Error())
		return store.Exception, "update (exception)"
	}
	if res.Err != "" {
		lw.header(res.Err)
		lw.header("program finished with exit code -1")
		return store.Failure, "update (failure)"
	}
	lw.header(fmt.Sprintf("program finished with exit code %d", res.ExitCode))
	lw.header(fmt.Sprintf("elapsedTime=%f", res.Elapsed.Seconds()))
	switch {
	case res.Interrupted && errors.Is(cause(ctx), ErrShutdown):
		return store.Retry, "update (retry)"
	case res.Interrupted:
		return store.Cancelled, "update (cancelled)"
	case res.ExitCode != 0 || res.GotRevision == "":
		return store.Failure, "update (failure)"
	}
	if p, err := scheduler.NewProperty(res.GotRevision, "Git"); err == nil {
		b.check(st.SetBuildProperty(b.id, "got_revision", p))
	}
	return store.Success, "update"
}

// currentProperties returns the build's properties as the store has them
// now (earlier steps may have set some); nil if it cannot read them.
func (b *build) currentProperties() store.Properties {
	builds, err := b.e.st.Builds(store.BuildFilter{BuildRequestID: b.req.ID})
	if err != nil {
		b.log.Error("read build properties", "err", err)
		return nil
	}
	for _, bld := range builds {
		if bld.ID == b.id {
			return bld.Properties
		}
	}
	return nil
}

// stringProperty is the string value of a property; "" when it is missing
// or not a string (buildbot's None).
func stringProperty(props store.Properties, name string) string {
	var s string
	if p, ok := props[name]; ok {
		_ = json.Unmarshal(p.Value, &s)
	}
	return s
}
