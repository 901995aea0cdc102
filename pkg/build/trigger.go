package build

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Triggerer starts builds on triggerable schedulers, for trigger steps.
type Triggerer interface {
	Trigger(ctx context.Context, name string, req scheduler.TriggerRequest) (int64, map[int64]int64, error)
}

// SetTriggerer gives the engine the schedulers that trigger steps use; a
// trigger step fails while there is none.
func (e *Engine) SetTriggerer(t Triggerer) {
	e.mu.Lock()
	e.triggerer = t
	e.mu.Unlock()
}

// finishedChan returns a channel closed at the next end of a build.
func (e *Engine) finishedChan() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.finished
}

// buildFinished wakes whoever waits for builds to end.
func (e *Engine) buildFinished() {
	e.mu.Lock()
	close(e.finished)
	e.finished = make(chan struct{})
	e.mu.Unlock()
}

// runTrigger runs a trigger step, as buildbot's Trigger: a buildset on each
// named triggerable scheduler, with this build's source stamps (at the
// revision it got, with update_source_stamp), or the step's source_stamps,
// or none with always_use_latest (see triggerStamps), and set_properties; with
// wait_for_finish, the step waits for them and takes their worst result.
func (b *build) runTrigger(ctx context.Context, step store.Step, sc config.Step) (int, string) {
	st := b.e.st
	desc := "triggered " + strings.Join(sc.SchedulerNames, ", ")
	b.e.mu.Lock()
	trig := b.e.triggerer
	b.e.mu.Unlock()
	l, err := st.AddLog(step.ID, "trigger", "t")
	if err != nil {
		b.log.Error("add log", "err", err)
		return store.Exception, desc + stateSuffix(store.Exception, false)
	}
	lw := newLogWriter(st, l.ID, b.e.logOptions(), b.log)
	defer lw.close()
	if trig == nil {
		lw.text("no triggerable schedulers are running")
		return store.Exception, desc + stateSuffix(store.Exception, false)
	}

	bs, err := st.Buildset(b.req.BuildsetID)
	if err != nil {
		lw.text("read this build's buildset: " + err.Error())
		return store.Exception, desc + stateSuffix(store.Exception, false)
	}
	stamps := b.triggerStamps(bs, sc)
	props := store.Properties{}
	for k, v := range sc.SetProperties {
		p, err := scheduler.NewProperty(v, "Trigger")
		if err != nil {
			lw.text(fmt.Sprintf("property %s: %v", k, err))
			return store.Exception, desc + stateSuffix(store.Exception, false)
		}
		// Stored properties never hold a secret's value, as everywhere
		// else; the triggered builds get the secret's name, and put its
		// value back where they render the property (revealSecrets).
		props[k] = b.e.redact.redactPropertyNamed(p)
	}

	var bsids []int64
	for _, name := range sc.SchedulerNames {
		bsid, brids, err := trig.Trigger(ctx, name, scheduler.TriggerRequest{
			ParentBuildID: b.id,
			Reason:        fmt.Sprintf("Triggered by %s build %d", b.cfg.Name, b.number),
			SourceStamps:  stamps,
			Properties:    props,
			WaitedFor:     sc.WaitForFinish,
		})
		if err != nil {
			lw.text(fmt.Sprintf("trigger %s: %v", name, err))
			return store.Exception, desc + stateSuffix(store.Exception, false)
		}
		if bsid == 0 {
			// A nightly_triggerable scheduler: nothing to wait for.
			lw.text(fmt.Sprintf("triggered %s: recorded for its next time", name))
			continue
		}
		reqs := make([]string, 0, len(brids))
		for _, brid := range brids {
			reqs = append(reqs, fmt.Sprint(brid))
		}
		slices.Sort(reqs)
		lw.text(fmt.Sprintf("triggered %s: buildset %d, build requests %s", name, bsid, strings.Join(reqs, ", ")))
		bsids = append(bsids, bsid)
	}
	if !sc.WaitForFinish {
		return store.Success, desc
	}

	results, err := b.waitBuildsets(ctx, bsids)
	switch {
	case err != nil && errors.Is(cause(ctx), ErrShutdown):
		lw.text("master shutting down: the build will run again")
		return store.Retry, desc + stateSuffix(store.Retry, false)
	case err != nil && ctx.Err() != nil:
		lw.text("stopped while waiting for the triggered builds")
		return store.Cancelled, desc + stateSuffix(store.Cancelled, false)
	case err != nil:
		lw.text("wait for the triggered builds: " + err.Error())
		return store.Exception, desc + stateSuffix(store.Exception, false)
	}
	lw.text("the triggered builds ended: " + ResultName(results))
	return results, desc + stateSuffix(results, false)
}

// waitBuildsets waits until every buildset is complete and returns their
// worst result.
func (b *build) waitBuildsets(ctx context.Context, ids []int64) (int, error) {
	for {
		// Take the channel before reading, so that an end between the
		// read and the wait is not missed.
		finished := b.e.finishedChan()
		results := store.Success
		done := true
		for _, id := range ids {
			bs, err := b.e.st.Buildset(id)
			if err != nil {
				return 0, err
			}
			if !bs.Complete {
				done = false
				break
			}
			results = store.WorstResult(results, bs.Results)
		}
		if done {
			return results, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-finished:
		case <-time.After(time.Minute):
			// A buildset completed by another master, or by a cancel,
			// ends no build here: look again now and then.
		}
	}
}

// triggerStamps returns the source stamps a trigger step passes on (see
// passStamps), from bs, this build's buildset, and its properties now.
func (b *build) triggerStamps(bs store.Buildset, sc config.Step) []store.SourceStamp {
	var got map[string]string
	if sc.UpdateSourceStamp && len(sc.SourceStamps) == 0 && !sc.AlwaysUseLatest {
		got = gotRevisions(b.currentProperties())
	}
	return passStamps(bs.SourceStamps, sc, got)
}

// passStamps returns the source stamps a trigger step sc passes on, as
// buildbot's Trigger.prepareSourcestampListForTrigger: its source_stamps
// (rendered), or none with always_use_latest (the triggered schedulers
// then build the latest of their codebases), or else the build's stamps,
// each at the revision got (by codebase) has for it with
// update_source_stamp; a got_revision string is codebase "", or the
// build's one stamp whatever its codebase, as a git step without codebase
// checks that out (see runGit). In codebase order.
func passStamps(build []store.SourceStamp, sc config.Step, got map[string]string) []store.SourceStamp {
	var stamps []store.SourceStamp
	switch {
	case len(sc.SourceStamps) > 0:
		for _, ss := range sc.SourceStamps {
			stamps = append(stamps, store.SourceStamp{Codebase: ss.Codebase, Repository: ss.Repository, Branch: ss.Branch, Revision: ss.Revision, Project: ss.Project})
		}
	case sc.AlwaysUseLatest:
		return nil
	default:
		stamps = slices.Clone(build)
		if sc.UpdateSourceStamp {
			if rev, ok := got[""]; ok && len(stamps) == 1 && len(got) == 1 {
				got = map[string]string{stamps[0].Codebase: rev}
			}
			for i := range stamps {
				if rev, ok := got[stamps[i].Codebase]; ok && rev != "" {
					stamps[i].Revision = rev
				}
			}
		}
	}
	slices.SortFunc(stamps, func(a, b store.SourceStamp) int { return cmp.Compare(a.Codebase, b.Codebase) })
	return stamps
}

// gotRevisions is the got_revision property by codebase: a string is the
// revision of codebase "", as buildbot's getAllGotRevisions.
func gotRevisions(props store.Properties) map[string]string {
	p, ok := props["got_revision"]
	if !ok {
		return nil
	}
	var v any
	if err := json.Unmarshal(p.Value, &v); err != nil {
		return nil
	}
	out := map[string]string{}
	switch v := v.(type) {
	case string:
		out[""] = v
	case map[string]any:
		for cb, rev := range v {
			if s, ok := rev.(string); ok {
				out[cb] = s
			}
		}
	}
	return out
}
