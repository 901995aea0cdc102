package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// rescanEvery is how often a dependent scheduler reads the store without
// being told that a buildset changed: buildsets completed by another
// master, or a notice missed.
const rescanEvery = time.Minute

// BuildsetsChanged tells the dependent schedulers that a buildset was
// added or completed; they read the store at once. The master calls it on
// the store's buildset events.
func (s *Set) BuildsetsChanged() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.timers {
		if d, ok := t.(*dependent); ok {
			select {
			case d.kick <- struct{}{}:
			default:
			}
		}
	}
}

// dependent is a dependent scheduler, as buildbot's Dependent.
//
// Its state in the store (key "dependent") holds the id of the newest
// buildset it has looked at, the upstream buildsets it waits for (as
// buildbot's upstream_bsids), and, while it adds a buildset, which
// upstream buildset that is for and when: a master killed between the add
// and the write of the state finds at its start whether the buildset was
// added (a buildset of this scheduler submitted at that time or later)
// and builds it neither twice nor never.
type dependent struct {
	set  *Set
	cfg  config.Scheduler
	kick chan struct{} // buffered
	runJob

	mu    sync.Mutex
	state dependentState // guarded by mu
}

type dependentState struct {
	Seen     int64   `json:"seen"`     // every buildset up to this id has been looked at
	Upstream []int64 `json:"upstream"` // the upstream buildsets waited for, oldest first
	Building *struct {
		Bsid int64     `json:"bsid"`
		At   time.Time `json:"at"`
	} `json:"building,omitempty"`
}

const (
	dependentKey    = "dependent"
	dependentReason = "downstream" // buildbot's
)

// newDependent makes the dependent scheduler of sc from its state in the
// store; a new one waits for the upstream buildsets added from now on.
// s.opMu must be held.
func (s *Set) newDependent(sc config.Scheduler) (*dependent, error) {
	d := &dependent{set: s, cfg: sc, kick: make(chan struct{}, 1)}
	v, ok, err := s.store.GetState(stateObject(sc.Name), dependentKey)
	if err != nil {
		return nil, err
	}
	if ok {
		if err := json.Unmarshal(v, &d.state); err != nil {
			return nil, fmt.Errorf("decode state: %w", err)
		}
	} else if d.state.Seen, err = s.newestBuildsetID(); err != nil {
		return nil, err
	}
	if b := d.state.Building; b != nil && s.starting {
		newest, err := s.newestBuildset(sc.Name, dependentReason)
		if err != nil {
			return nil, err
		}
		if !newest.Before(b.At) {
			s.log.Warn("the master stopped after a dependent buildset was added, before it was recorded", "scheduler", sc.Name, "upstream", b.Bsid)
			d.state.Upstream = slices.DeleteFunc(d.state.Upstream, func(id int64) bool { return id == b.Bsid })
		}
	}
	d.state.Building = nil // after a reconfig, the predecessor settled it
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.saveLocked(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *dependent) config() config.Scheduler { return d.cfg }

func (d *dependent) saveLocked() error {
	v, err := json.Marshal(d.state)
	if err != nil {
		return err
	}
	return d.set.store.SetState(stateObject(d.cfg.Name), dependentKey, v)
}

func (d *dependent) run(ctx context.Context) {
	for {
		d.check()
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-time.After(rescanEvery):
		}
	}
}

// check looks at the buildsets added since the last check, and adds a
// buildset for each upstream one that completed with SUCCESS or WARNINGS.
// While disabled, it waits for no new upstream buildset (as buildbot's
// stops consuming) and builds none.
func (d *dependent) check() {
	d.mu.Lock()
	defer d.mu.Unlock()
	enabled := d.set.Enabled(d.cfg.Name)
	before := slices.Clone(d.state.Upstream)
	seen := d.state.Seen
	newest, err := d.set.newestBuildsetID()
	if err != nil {
		d.set.log.Error("read the newest buildset", "scheduler", d.cfg.Name, "err", err)
		return
	}
	for id := seen + 1; id <= newest; id++ {
		bs, err := d.set.store.Buildset(id)
		if errors.Is(err, store.ErrNotFound) {
			d.state.Seen = id // deleted already (the janitor)
			continue
		}
		if err != nil {
			d.set.log.Error("read buildset", "scheduler", d.cfg.Name, "buildset", id, "err", err)
			return
		}
		d.state.Seen = id
		if bs.SchedulerName == d.cfg.Upstream && enabled {
			d.state.Upstream = append(d.state.Upstream, id)
		}
	}
	if d.state.Seen != seen || !slices.Equal(before, d.state.Upstream) {
		if err := d.saveLocked(); err != nil {
			d.set.log.Error("save state", "scheduler", d.cfg.Name, "err", err)
			return
		}
	}
	if !enabled {
		return
	}
	for _, id := range slices.Clone(d.state.Upstream) {
		bs, err := d.set.store.Buildset(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Gone (the janitor): nothing to wait for.
		case err != nil:
			d.set.log.Error("read buildset", "scheduler", d.cfg.Name, "buildset", id, "err", err)
			continue
		case !bs.Complete:
			continue
		case bs.Results == store.Success || bs.Results == store.Warnings:
			if !d.buildLocked(bs) {
				continue
			}
		default:
			d.set.log.Info("upstream buildset failed: nothing built", "scheduler", d.cfg.Name, "upstream", id, "results", bs.Results)
		}
		d.state.Upstream = slices.DeleteFunc(d.state.Upstream, func(x int64) bool { return x == id })
		if err := d.saveLocked(); err != nil {
			d.set.log.Error("save state", "scheduler", d.cfg.Name, "err", err)
			return
		}
	}
}

// buildLocked adds the buildset that follows the upstream one, with its
// source stamps, and reports whether it did. d.mu must be held.
func (d *dependent) buildLocked(up store.Buildset) bool {
	at := time.Now()
	d.state.Building = &struct {
		Bsid int64     `json:"bsid"`
		At   time.Time `json:"at"`
	}{up.ID, at}
	defer func() { d.state.Building = nil }()
	if err := d.saveLocked(); err != nil {
		d.set.log.Error("record a dependent buildset; not built", "scheduler", d.cfg.Name, "err", err)
		return false
	}
	if _, err := d.set.newBuildsetAt(d.cfg, dependentReason, nil, plainStamps(up.SourceStamps), at); err != nil {
		d.set.log.Error("add buildset", "scheduler", d.cfg.Name, "upstream", up.ID, "err", err)
		return false
	}
	return true
}

// plainStamps returns ss without the store's ids and times, to be stored
// again.
func plainStamps(ss []store.SourceStamp) []store.SourceStamp {
	out := make([]store.SourceStamp, len(ss))
	for i, x := range ss {
		out[i] = store.SourceStamp{Codebase: x.Codebase, Branch: x.Branch, Revision: x.Revision, Repository: x.Repository, Project: x.Project}
	}
	return out
}

// nightlyTriggerable is a nightly_triggerable scheduler, as buildbot's
// NightlyTriggerable.
//
// A trigger step on any master records its trigger in the store, under the
// scheduler's object state key "nightly_triggerable_trigger"
// (RecordNightlyTrigger), replacing the one before, as buildbot's
// trigger() does with setState("lastTrigger"). The scheduler runs on the
// leader, and reads that key at each of its times. Its own state (key
// "nightly_triggerable") holds the time of its last actuation and the id
// of the last trigger it built: a trigger is built once, and one recorded
// while a time builds another is built at the next time, as the leader
// never clears the key another master writes.
//
// An actuation that builds records its time and the trigger's id as
// Building, adds the buildset (submitted at that time), then records the
// trigger as built: a master killed in between finds at its start whether
// the buildset was added, as the timed schedulers do. A time missed while
// the master was down is taken at once.
type nightlyTriggerable struct {
	set  *Set
	cfg  config.Scheduler
	cron cron.Schedule
	runJob

	mu    sync.Mutex
	state nightlyTrigState // guarded by mu
}

type nightlyTrigState struct {
	LastBuild time.Time `json:"last_build,omitzero"`
	Built     string    `json:"built,omitempty"` // the id of the last trigger built
	Building  time.Time `json:"building,omitzero"`
	// BuildingID is the id of the trigger Building builds.
	BuildingID string `json:"building_id,omitempty"`
	// Trigger is where gbb before RecordNightlyTrigger kept the trigger;
	// the scheduler moves it to its own key at start.
	Trigger *recordedTrigger `json:"trigger,omitempty"`
}

// recordedTrigger is a trigger waiting for the next time.
type recordedTrigger struct {
	ID            string              `json:"id,omitempty"` // random, new for each trigger
	SourceStamps  []store.SourceStamp `json:"source_stamps"`
	Properties    store.Properties    `json:"properties,omitempty"`
	ParentBuildID int64               `json:"parent_build_id,omitempty"`
}

const (
	nightlyTrigKey    = "nightly_triggerable"
	nightlyPendingKey = "nightly_triggerable_trigger"
)

// RecordNightlyTrigger records req in st as the trigger of the next time
// of the nightly_triggerable scheduler called name, replacing any other.
// Any master may call it: the leader's scheduler reads the trigger at its
// next time. The step goes on at once, as buildbot's NightlyTriggerable.
func RecordNightlyTrigger(st interface {
	SetState(objectName, key string, value json.RawMessage) error
}, name string, req TriggerRequest) error {
	if err := checkTriggerStamps(req); err != nil {
		return fmt.Errorf("trigger %s: %w", name, err)
	}
	tr := recordedTrigger{
		ID:            rand.Text(),
		SourceStamps:  plainStamps(req.SourceStamps),
		Properties:    maps.Clone(req.Properties),
		ParentBuildID: req.ParentBuildID,
	}
	v, err := json.Marshal(tr)
	if err != nil {
		return fmt.Errorf("trigger %s: %w", name, err)
	}
	if err := st.SetState(stateObject(name), nightlyPendingKey, v); err != nil {
		return fmt.Errorf("trigger %s: record for the next time: %w", name, err)
	}
	return nil
}

// newNightlyTriggerable makes the scheduler of sc from its state in the
// store. s.opMu must be held.
func (s *Set) newNightlyTriggerable(sc config.Scheduler) (*nightlyTriggerable, error) {
	c, err := config.ParseCron(sc.Cron)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", sc.Cron, err)
	}
	n := &nightlyTriggerable{set: s, cfg: sc, cron: c}
	v, ok, err := s.store.GetState(stateObject(sc.Name), nightlyTrigKey)
	if err != nil {
		return nil, err
	}
	if ok {
		if err := json.Unmarshal(v, &n.state); err != nil {
			return nil, fmt.Errorf("decode state: %w", err)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	save := false
	if old := n.state.Trigger; old != nil {
		// Recorded by an older gbb in the scheduler's own state: moved
		// to the trigger's key, unless a newer trigger is there.
		if _, newer, err := n.pending(); err != nil {
			return nil, err
		} else if !newer {
			old.ID = rand.Text()
			v, err := json.Marshal(old)
			if err != nil {
				return nil, err
			}
			if err := s.store.SetState(stateObject(sc.Name), nightlyPendingKey, v); err != nil {
				return nil, err
			}
			if !n.state.Building.IsZero() {
				n.state.BuildingID = old.ID
			}
		}
		n.state.Trigger = nil
		save = true
	}
	if at := n.state.Building; !at.IsZero() {
		newest := at // after a reconfig, the predecessor added it
		if s.starting {
			if newest, err = s.newestBuildset(sc.Name, n.reason()); err != nil {
				return nil, err
			}
		}
		if !newest.Before(at) {
			s.log.Warn("the master stopped after the build of a time was added, before it was recorded: taken as built", "scheduler", sc.Name, "at", at)
			n.state.Built, n.state.LastBuild = n.state.BuildingID, at
		}
		n.state.Building, n.state.BuildingID = time.Time{}, ""
		save = true
	}
	if save {
		if err := n.saveLocked(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (n *nightlyTriggerable) config() config.Scheduler { return n.cfg }

func (n *nightlyTriggerable) reason() string {
	return fmt.Sprintf("The NightlyTriggerable scheduler named '%s' triggered this build", n.cfg.Name)
}

func (n *nightlyTriggerable) saveLocked() error {
	v, err := json.Marshal(n.state)
	if err != nil {
		return err
	}
	return n.set.store.SetState(stateObject(n.cfg.Name), nightlyTrigKey, v)
}

// pending returns the trigger recorded in the store, and whether it is
// one not yet built. n.mu must be held.
func (n *nightlyTriggerable) pending() (*recordedTrigger, bool, error) {
	v, ok, err := n.set.store.GetState(stateObject(n.cfg.Name), nightlyPendingKey)
	if err != nil || !ok {
		return nil, false, err
	}
	var tr recordedTrigger
	if err := json.Unmarshal(v, &tr); err != nil {
		return nil, false, fmt.Errorf("decode the recorded trigger: %w", err)
	}
	return &tr, tr.ID != n.state.Built, nil
}

func (n *nightlyTriggerable) run(ctx context.Context) {
	for {
		n.mu.Lock()
		last := n.state.LastBuild
		n.mu.Unlock()
		if last.IsZero() {
			last = time.Now()
		}
		at := n.cron.Next(last.In(time.Local))
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		n.actuate(later(at, time.Now()))
	}
}

// actuate builds the trigger recorded since the last one built, if any,
// for the time at.
func (n *nightlyTriggerable) actuate(at time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	tr, todo, err := n.pending()
	switch {
	case err != nil:
		// Kept in the store: the next time builds it.
		n.set.log.Error("read the recorded trigger; not built this time", "scheduler", n.cfg.Name, "err", err)
	case !todo:
	case !n.set.Enabled(n.cfg.Name):
		n.set.log.Info("scheduler disabled: build skipped", "scheduler", n.cfg.Name)
	default:
		n.state.Building, n.state.BuildingID = at, tr.ID
		if err := n.saveLocked(); err != nil {
			n.set.log.Error("record the build of a time; not built", "scheduler", n.cfg.Name, "err", err)
			n.state.Building, n.state.BuildingID = time.Time{}, ""
			return
		}
		if err := n.buildLocked(tr, at); err != nil {
			n.set.log.Error("add buildset", "scheduler", n.cfg.Name, "err", err)
		} else {
			n.state.Built = tr.ID
		}
		n.state.Building, n.state.BuildingID = time.Time{}, ""
	}
	n.state.LastBuild = at
	if err := n.saveLocked(); err != nil {
		n.set.log.Error("save state", "scheduler", n.cfg.Name, "err", err)
	}
}

// buildLocked adds the buildset of tr: the scheduler's properties, then
// the trigger's over them, then "scheduler". n.mu must be held.
func (n *nightlyTriggerable) buildLocked(tr *recordedTrigger, at time.Time) error {
	ids, err := n.set.builderIDs(n.cfg.BuilderNames)
	if err != nil {
		return err
	}
	props, err := schedulerProperties(n.cfg)
	if err != nil {
		return err
	}
	sched := props["scheduler"]
	maps.Copy(props, tr.Properties)
	props["scheduler"] = sched
	nb := store.NewBuildset{
		Reason:        n.reason(),
		SchedulerName: n.cfg.Name,
		ParentBuildID: tr.ParentBuildID,
		SourceStamps:  plainStamps(tr.SourceStamps),
		Properties:    props,
		BuilderIDs:    ids,
		Priority:      n.cfg.Priority,
		SubmittedAt:   at,
	}
	bsid, _, err := n.set.store.AddBuildset(nb)
	if errors.Is(err, store.ErrNotFound) && nb.ParentBuildID != 0 {
		// The triggering build is gone (the janitor): build without it.
		nb.ParentBuildID = 0
		bsid, _, err = n.set.store.AddBuildset(nb)
	}
	if err != nil {
		return err
	}
	n.set.log.Info("buildset added", "scheduler", n.cfg.Name, "buildset", bsid, "parent", tr.ParentBuildID)
	n.set.wake()
	return nil
}

// newFollower makes a dependent or nightly_triggerable scheduler. s.opMu
// must be held.
func (s *Set) newFollower(sc config.Scheduler) (timer, error) {
	if sc.Type == "dependent" {
		return s.newDependent(sc)
	}
	return s.newNightlyTriggerable(sc)
}

// newestBuildsetID returns the id of the newest buildset, 0 when there is
// none.
func (s *Set) newestBuildsetID() (int64, error) {
	page, err := s.store.BuildsetPage(store.BuildsetFilter{Desc: true, Limit: 1})
	if err != nil || len(page) == 0 {
		return 0, err
	}
	return page[0].ID, nil
}
