package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// ErrNotTriggerable is returned by Trigger when no triggerable scheduler has
// the name.
var ErrNotTriggerable = errors.New("scheduler: no such triggerable scheduler")

// TriggerRequest is what a trigger step asks of a triggerable scheduler.
type TriggerRequest struct {
	ParentBuildID int64
	Reason        string              // empty means buildbot's "The Triggerable scheduler named 'NAME' triggered this build"
	SourceStamps  []store.SourceStamp // the triggering build's, or updated ones
	Properties    store.Properties    // set_properties, already rendered
	WaitedFor     bool
}

// triggerable is one configured triggerable scheduler.
type triggerable struct {
	cfg config.Scheduler
}

// Trigger adds a buildset for the triggerable scheduler called name and
// wakes the distributor. The buildset's properties are the scheduler's,
// then req.Properties over them, then "scheduler". It returns the buildset
// id and the build request id of each builder. A nightly_triggerable
// scheduler records the trigger for its next time and returns 0 and no
// requests.
func (s *Set) Trigger(ctx context.Context, name string, req TriggerRequest) (bsid int64, brids map[int64]int64, err error) {
	if err := checkTriggerStamps(req); err != nil {
		return 0, nil, fmt.Errorf("trigger %s: %w", name, err)
	}
	if recorded, err := s.recordTrigger(name, req); recorded || err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	tr, ok := s.trigger[name]
	s.mu.Unlock()
	if !ok {
		return 0, nil, fmt.Errorf("%w: %q", ErrNotTriggerable, name)
	}
	ids, err := s.builderIDs(tr.cfg.BuilderNames)
	if err != nil {
		return 0, nil, fmt.Errorf("trigger %s: %w", name, err)
	}
	props, err := schedulerProperties(tr.cfg)
	if err != nil {
		return 0, nil, fmt.Errorf("trigger %s: %w", name, err)
	}
	sched := props["scheduler"]
	maps.Copy(props, req.Properties)
	props["scheduler"] = sched
	reason := req.Reason
	if reason == "" {
		reason = fmt.Sprintf("The Triggerable scheduler named '%s' triggered this build", name)
	}
	ss, err := stampsWithDefaults(tr.cfg, req.SourceStamps)
	if err != nil {
		return 0, nil, fmt.Errorf("trigger %s: %w", name, err)
	}
	bsid, brids, err = s.store.AddBuildset(store.NewBuildset{
		Reason:        reason,
		SchedulerName: name,
		ParentBuildID: req.ParentBuildID,
		SourceStamps:  ss,
		Properties:    props,
		BuilderIDs:    ids,
		WaitedFor:     req.WaitedFor,
		Priority:      tr.cfg.Priority,
	})
	if err != nil {
		return 0, nil, fmt.Errorf("trigger %s: %w", name, err)
	}
	s.log.Info("build triggered", "scheduler", name, "buildset", bsid, "parent", req.ParentBuildID)
	s.wake()
	return bsid, brids, nil
}

// checkTriggerStamps checks the stamps of req as the stamps of a force.
func checkTriggerStamps(req TriggerRequest) error {
	for i, ss := range req.SourceStamps {
		if err := CheckStamp(ss, func(f string) string { return fmt.Sprintf("source_stamps[%d].%s", i, f) }); err != nil {
			return err
		}
	}
	return nil
}

// recordTrigger records req for the nightly_triggerable scheduler called
// name, if it is one of s, for its next time (RecordNightlyTrigger).
func (s *Set) recordTrigger(name string, req TriggerRequest) (bool, error) {
	s.mu.Lock()
	_, ok := s.timers[name].(*nightlyTriggerable)
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := RecordNightlyTrigger(s.store, name, req); err != nil {
		return true, err
	}
	s.log.Info("trigger recorded for the next time", "scheduler", name, "parent", req.ParentBuildID)
	return true, nil
}
