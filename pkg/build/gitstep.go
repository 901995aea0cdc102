package build

import (
	"context"
	"encoding/json"
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
	props := b.currentProperties()
	branch := sc.Branch
	if branch == "" {
		branch = stringProperty(props, "branch")
	}
	res, results := b.runCommand(ctx, step, protocol.Command{
		Builder: b.cfg.WorkerDir(),
		Git: &protocol.GitCommand{
			RepoURL:           sc.RepoURL,
			Branch:            branch,
			Revision:          stringProperty(props, "revision"),
			Mode:              sc.Mode,
			Method:            sc.Method,
			Depth:             sc.Shallow,
			Workdir:           sc.Workdir,
			Submodules:        sc.Submodules,
			SSHPrivateKeyFile: sc.SSHPrivateKeyFile,
			Timeout:           sc.Timeout.Duration,
			MaxTime:           sc.MaxTime.Duration,
		},
	}, log)
	if results == store.Success && res.GotRevision == "" {
		results = store.Failure
	}
	if results != store.Success {
		return results, "update" + stateSuffix(results, false)
	}
	if p, err := scheduler.NewProperty(res.GotRevision, "Git"); err == nil {
		b.check(st.SetBuildProperty(b.id, "got_revision", p))
	}
	return store.Success, "update"
}

// currentProperties returns the build's properties as the store has them
// now (earlier steps may have set some); nil if it cannot read them.
func (b *build) currentProperties() store.Properties {
	bld, err := b.e.st.Build(b.id)
	if err != nil {
		b.log.Error("read build properties", "err", err)
		return nil
	}
	return bld.Properties
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
