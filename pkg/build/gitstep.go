package build

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// runGit runs a git step, as buildbot's Git source step: the worker checks
// out the build's revision (its revision property) or the branch's tip
// (the build's branch property, else the step's branch, else the remote's
// default branch), and the build gets the got_revision property. A step
// with a codebase, or in a build of several source stamps, takes the
// revision and branch of its codebase's stamp instead (the step's branch
// when the stamp has none), and a step with a codebase sets
// got_revision[codebase] (see setSourceProperty); a build with no stamp of
// its codebase fails the step, as buildbot's.
func (b *build) runGit(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, string) {
	st := b.e.st
	b.check(st.SetStepStateString(step.ID, "updating"))
	props := b.currentProperties()
	// As buildbot's Source step: the build's branch, else the step's.
	branch := cmp.Or(stringProperty(props, "branch"), sc.Branch)
	revision := stringProperty(props, "revision")
	if stamps := b.sourceStamps(); sc.Codebase != "" || len(stamps) > 1 {
		// As buildbot's Source step: the source stamp of its codebase,
		// its branch else the step's.
		i := slices.IndexFunc(stamps, func(ss store.SourceStamp) bool { return ss.Codebase == sc.Codebase })
		if i < 0 {
			msg := fmt.Sprintf("No sourcestamp found in build for codebase '%s'", sc.Codebase)
			log.Warn("git step: no source stamp for its codebase", "codebase", sc.Codebase)
			b.writeText(step, "log", msg)
			return store.Failure, fmt.Sprintf("Codebase %s not in build", sc.Codebase)
		}
		branch, revision = cmp.Or(stamps[i].Branch, sc.Branch), stamps[i].Revision
	}
	gc := &protocol.GitCommand{
		RepoURL:           sc.RepoURL,
		Branch:            branch,
		Revision:          revision,
		Mode:              sc.Mode,
		Method:            sc.Method,
		Depth:             sc.Shallow,
		Workdir:           sc.Workdir,
		Submodules:        sc.Submodules,
		SSHPrivateKeyFile: sc.SSHPrivateKeyFile,
		Timeout:           sc.Timeout.Duration,
		MaxTime:           sc.MaxTime.Duration,
	}
	if err := gc.Check(); err != nil {
		// Refused where it entered (force, hooks, triggers); one that came
		// another way (a poller, an older master's buildset) stops here.
		log.Warn("git step: refused", "err", err)
		b.writeText(step, "log", "refused: "+err.Error())
		return store.Failure, "update" + stateSuffix(store.Failure, false)
	}
	res, results := b.runCommand(ctx, step, protocol.Command{Builder: b.cfg.WorkerDir(), Git: gc}, log)
	if results == store.Success && res.GotRevision == "" {
		results = store.Failure
	}
	if results != store.Success {
		return results, "update" + stateSuffix(results, false)
	}
	b.setSourceProperty(sc.Codebase, "got_revision", res.GotRevision, log)
	return store.Success, "update"
}

// setSourceProperty sets a property of a source step, as buildbot's
// updateSourceProperty: the value itself for codebase "", else a table
// codebase → value, to which each source step of a codebase adds its own.
func (b *build) setSourceProperty(codebase, name, value string, log *slog.Logger) {
	var v any = value
	if codebase != "" {
		m := map[string]any{}
		if p, ok := b.currentProperties()[name]; ok {
			if err := json.Unmarshal(p.Value, &m); err != nil || m == nil {
				log.Warn("source step with a codebase: the property held no table of codebases; replaced", "property", name)
				m = map[string]any{}
			}
		}
		m[codebase] = value
		v = m
	}
	if p, err := scheduler.NewProperty(v, "Git"); err == nil {
		b.check(b.e.st.SetBuildProperty(b.id, name, p))
	}
}

// sourceStamps returns the source stamps of the build's buildset; none
// when it cannot be read.
func (b *build) sourceStamps() []store.SourceStamp {
	bs, err := b.e.st.Buildset(b.req.BuildsetID)
	if err != nil {
		b.log.Error("read buildset", "err", err)
		return nil
	}
	return bs.SourceStamps
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
