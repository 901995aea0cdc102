package build

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/interpolate"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// errNoSecrets is a secret's error when the master has no secrets provider.
var errNoSecrets = errors.New("no [[secrets_providers]] configured")

// renderContext is what a step's strings are rendered with now: the
// build's properties as the store has them (earlier steps may have set
// some), its source stamps, the worker's info, and the secrets, each
// secret value given out being redacted from then on.
//
// A property holding secrets redacted (store.Property.Secrets, from a
// trigger's set_properties) renders with their values put back; when one
// cannot be had, the property renders as unset and *secretErr says why.
func (b *build) renderContext(secretErr *error) interpolate.Context {
	props := b.currentProperties()
	var stamps []store.SourceStamp
	if bs, err := b.e.st.Buildset(b.req.BuildsetID); err == nil {
		stamps = bs.SourceStamps
	} else {
		b.log.Error("read buildset", "err", err)
	}
	var info map[string]string
	if w, err := b.e.st.Worker(b.ws.id); err == nil {
		info = w.Info
	} else {
		b.log.Error("read worker", "err", err)
	}
	return interpolate.Context{
		Property: func(name string) (any, bool) {
			p, ok := props[name]
			if !ok {
				return nil, false
			}
			v, err := b.revealSecrets(propertyValue(p), p.Secrets)
			if err != nil {
				if secretErr != nil && *secretErr == nil {
					*secretErr = fmt.Errorf("property %s: %w", name, err)
				}
				return nil, false
			}
			return v, true
		},
		Source: func(codebase, attr string) (string, bool) {
			for _, ss := range stamps {
				if ss.Codebase != codebase {
					continue
				}
				v := map[string]string{
					"branch": ss.Branch, "revision": ss.Revision, "repository": ss.Repository,
					"project": ss.Project, "codebase": ss.Codebase,
				}[attr]
				return v, v != ""
			}
			return "", false
		},
		Secret: func(name string) (string, error) {
			if b.e.secrets == nil {
				return "", errNoSecrets
			}
			v, err := b.e.secrets.Get(name)
			if err != nil {
				return "", err
			}
			b.e.redact.add(name, v)
			b.addSecret(name, v)
			return v, nil
		},
		Worker: func(name string) (string, bool) {
			v, ok := info[name]
			return v, ok
		},
	}
}

// renderStep renders every string of sc that is rendered when the step
// runs (see config.Step.Render), and returns the context it used for the
// step's conditions. On error, sc is returned as it was.
func (b *build) renderStep(sc config.Step) (config.Step, interpolate.Context, error) {
	var secretErr error
	ctx := b.renderContext(&secretErr)
	out, err := sc.Render(func(s string) (string, error) {
		r, _, err := interpolate.Render(s, ctx)
		if err == nil {
			err = secretErr
		}
		return r, err
	})
	if err != nil {
		return sc, ctx, fmt.Errorf("render step %q: %w", sc.Name, err)
	}
	return out, ctx, nil
}

// beforeStep decides whether a started step runs: not when it could not be
// rendered (EXCEPTION, with why in its err.text log), nor when its
// do_step_if is false (SKIPPED, as buildbot's doStepIf). When it does not
// run, it returns the step's result and state string.
func (b *build) beforeStep(step store.Step, sc config.Step, renderErr error, ctx interpolate.Context) (results int, state string, done bool) {
	if renderErr != nil {
		return store.Exception, b.stepError(step, renderErr.Error()), true
	}
	if sc.DoStepIf == nil {
		return 0, "", false
	}
	run, err := sc.DoStepIf.Eval(ctx)
	if err != nil {
		return store.Exception, b.stepError(step, fmt.Sprintf("do_step_if %q: %v", sc.DoStepIf, err)), true
	}
	if !run {
		return store.Skipped, "skipped", true
	}
	return 0, "", false
}

// endStep records a step's end, then hides it if its hide_step_if, given
// %(kw:results)s (the result's name, as buildbot's hideStepIf gets the
// results), is true. It returns results.
func (b *build) endStep(step store.Step, sc config.Step, results int, state string) int {
	st := b.e.st
	// Output that could not be stored (a full disk) makes the step an
	// EXCEPTION that says why.
	if err := b.e.stepLogFailure(step.ID); err != nil {
		b.log.Error("step log not stored whole", "step", step.Name, "err", err)
		results = store.WorstResult(results, store.Exception)
		state += " (exception: log not stored: " + err.Error() + ")"
	}
	b.check(st.EndStep(step.ID, state, results, time.Now()))
	b.log.Info("step finished", "step", step.Name, "results", ResultName(results))
	if sc.HideStepIf == nil {
		return results
	}
	ctx := b.renderContext(nil)
	ctx.Keyword = map[string]any{"results": ResultName(results)}
	hide, err := sc.HideStepIf.Eval(ctx)
	if err != nil {
		b.log.Error("hide_step_if", "step", step.Name, "err", err)
		return results
	}
	if hide {
		b.check(st.SetStepHidden(step.ID, true))
	}
	return results
}

// stepError writes msg to the step's err.text log and returns it.
func (b *build) stepError(step store.Step, msg string) string {
	b.writeText(step, "err.text", msg)
	return msg
}

// writeText writes a whole text log of the step.
func (b *build) writeText(step store.Step, name, text string) {
	st := b.e.st
	l, err := st.AddLog(step.ID, name, "t")
	if err != nil {
		b.log.Error("add log", "log", name, "err", err)
		return
	}
	if text != "" {
		if text[len(text)-1] != '\n' {
			text += "\n"
		}
		_, err := st.AppendLog(l.ID, text)
		b.check(err)
	}
	b.check(st.FinishLog(l.ID))
}

// revealSecrets returns v, a property's value, with the secrets names
// holds redacted (<NAME>) replaced by their values, which are redacted
// from then on.
func (b *build) revealSecrets(v any, names []string) (any, error) {
	if len(names) == 0 {
		return v, nil
	}
	if b.e.secrets == nil {
		return nil, errNoSecrets
	}
	pairs := make([]string, 0, 2*len(names))
	for _, n := range names {
		val, err := b.e.secrets.Get(n)
		if err != nil {
			return nil, err
		}
		b.e.redact.add(n, val)
		b.addSecret(n, val)
		pairs = append(pairs, "<"+n+">", val)
	}
	return replaceStrings(v, strings.NewReplacer(pairs...)), nil
}

// replaceStrings applies r to every string in v, a decoded JSON value.
func replaceStrings(v any, r *strings.Replacer) any {
	switch v := v.(type) {
	case string:
		return r.Replace(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = replaceStrings(e, r)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = replaceStrings(e, r)
		}
		return out
	}
	return v
}

// addSecret records that the build rendered secret name, of value v, for
// the workers of its next commands to hide.
func (b *build) addSecret(name, v string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sec := protocol.Secret{Value: v, Name: name}
	if v != "" && !slices.Contains(b.secrets, sec) {
		b.secrets = append(b.secrets, sec)
	}
}

// renderedSecrets returns the secrets the build rendered so far.
func (b *build) renderedSecrets() []protocol.Secret {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.secrets)
}
