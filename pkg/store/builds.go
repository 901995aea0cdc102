package store

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AddBuild stores a new build, numbered after the builder's highest number
// (from 1), with Results -1.
func (db *DB) AddBuild(nb NewBuild) (Build, error) {
	var b Build
	outbox := db.outboxOn()
	err := db.batch(func(tx *bolt.Tx) error {
		if bucket(tx, bucketBuilder).Get(itob(nb.BuilderID)) == nil {
			return fmt.Errorf("builder %d: %w", nb.BuilderID, ErrNotFound)
		}
		if nb.BuildRequestID != 0 && bucket(tx, bucketRequest).Get(itob(nb.BuildRequestID)) == nil {
			return fmt.Errorf("buildrequest %d: %w", nb.BuildRequestID, ErrNotFound)
		}
		number := int64(1)
		if k := lastUnder(tx, bucketBuildByBuilder, nb.BuilderID); k != nil {
			number = btoi(k[8:]) + 1
		}
		id, err := nextID(tx, bucketBuild)
		if err != nil {
			return err
		}
		b = newBuild(id, number, nb)
		if err := put(tx, bucketBuild, id, &b); err != nil {
			return err
		}
		if err := bucket(tx, bucketBuildByBuilder).Put(key2(nb.BuilderID, number), itob(id)); err != nil {
			return err
		}
		if err := countBuild(tx, nb.BuilderID, 1); err != nil {
			return err
		}
		if err := bucket(tx, bucketBuildIncomplete).Put(itob(id), nil); err != nil {
			return err
		}
		if err := bucket(tx, bucketBuildByWorker).Put(key2(nb.WorkerID, id), nil); err != nil {
			return err
		}
		if outbox {
			if err := addOutbox(tx, OutboxEntry{Event: OutboxStarted, BuildID: id, At: b.StartedAt}); err != nil {
				return err
			}
		}
		if nb.BuildRequestID != 0 {
			return bucket(tx, bucketBuildByRequest).Put(key2(nb.BuildRequestID, id), nil)
		}
		return nil
	}, func(e emit) { e.build("new", b) })
	if err != nil {
		return Build{}, fmt.Errorf("add build: %w", err)
	}
	if outbox {
		db.notifyOutbox()
	}
	return b, nil
}

// Build returns the build with the given id.
func (db *DB) Build(id int64) (Build, error) {
	var b Build
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		b, err = get[Build](tx, bucketBuild, id)
		return err
	})
	if err != nil {
		return Build{}, fmt.Errorf("get build: %w", err)
	}
	return b, nil
}

// BuildByNumber returns the build of a builder with the given number.
func (db *DB) BuildByNumber(builderID, number int64) (Build, error) {
	var b Build
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		v := bucket(tx, bucketBuildByBuilder).Get(key2(builderID, number))
		if v == nil {
			return ErrNotFound
		}
		b, err = get[Build](tx, bucketBuild, btoi(v))
		return err
	})
	if err != nil {
		return Build{}, fmt.Errorf("get build %d of builder %d: %w", number, builderID, err)
	}
	return b, nil
}

// Builds lists the builds that match f, by id (newest first when f.Desc),
// skipping f.Offset of them and returning at most f.Limit. It decodes only
// the builds it returns.
func (db *DB) Builds(f BuildFilter) ([]Build, error) {
	var out []Build
	err := db.bolt.View(func(tx *bolt.Tx) error {
		out = nil
		skip := f.Offset
		var err error
		eachBuildID(tx, f, func(id int64) bool {
			if skip > 0 {
				skip--
				return true
			}
			var b Build
			if b, err = get[Build](tx, bucketBuild, id); err != nil {
				return false
			}
			out = append(out, b)
			return f.Limit <= 0 || len(out) < f.Limit
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	return out, nil
}

// modifyBuild changes build id with fn, then publishes its "update" and
// calls more, when not nil, with the build as stored.
func (db *DB) modifyBuild(op string, id int64, fn func(*Build), more func(emit, Build)) error {
	var out Build
	err := db.batch(func(tx *bolt.Tx) error {
		return modify(tx, bucketBuild, id, func(b *Build) error {
			fn(b)
			out = *b
			return nil
		})
	}, func(e emit) {
		e.build("update", out)
		if more != nil {
			more(e, out)
		}
	})
	if err != nil {
		return fmt.Errorf("%s %d: %w", op, id, err)
	}
	return nil
}

// SetBuildStateString sets the line that describes what a build is doing.
func (db *DB) SetBuildStateString(id int64, s string) error {
	return db.modifyBuild("set state of build", id, func(b *Build) { b.StateString = s }, nil)
}

// SetBuildProperty sets one property of a build.
func (db *DB) SetBuildProperty(id int64, name string, p Property) error {
	return db.modifyBuild("set property of build", id, func(b *Build) { setBuildProperty(b, name, p) },
		func(e emit, b Build) { e.buildProperties(b.ID, Properties{name: p}) })
}

// setBuildProperty sets property name of b to p (both stores).
func setBuildProperty(b *Build, name string, p Property) {
	if b.Properties == nil {
		b.Properties = Properties{}
	}
	b.Properties[name] = p
}

// newBuild is the build AddBuild stores (both stores).
func newBuild(id, number int64, nb NewBuild) Build {
	return Build{
		ID:             id,
		Number:         number,
		BuilderID:      nb.BuilderID,
		BuildRequestID: nb.BuildRequestID,
		WorkerID:       nb.WorkerID,
		MasterID:       nb.MasterID,
		StartedAt:      at(nb.StartedAt),
		Results:        -1,
		StateString:    nb.StateString,
		Properties:     maps.Clone(nb.Properties),
	}
}

// EndBuild is SetBuildStateString then FinishBuild in one transaction;
// it publishes both events, "update" then "finished", each with the build
// as committed (finished).
func (db *DB) EndBuild(id int64, state string, results int, t time.Time) error {
	t = at(t)
	var out Build
	outbox := db.outboxOn()
	err := db.batch(func(tx *bolt.Tx) error {
		err := modify(tx, bucketBuild, id, func(b *Build) error {
			b.StateString = state
			return nil
		})
		if err != nil {
			return err
		}
		out, err = finishBuild(tx, id, results, t, outbox)
		return err
	}, func(e emit) {
		e.build("update", out)
		e.build("finished", out)
	})
	if err != nil {
		return fmt.Errorf("end build %d: %w", id, err)
	}
	if outbox {
		db.notifyOutbox()
	}
	return nil
}

// FinishBuild marks a build complete with results at t (zero means now).
func (db *DB) FinishBuild(id int64, results int, t time.Time) error {
	var b Build
	outbox := db.outboxOn()
	err := db.batch(func(tx *bolt.Tx) (err error) {
		b, err = finishBuild(tx, id, results, at(t), outbox)
		return err
	}, func(e emit) { e.build("finished", b) })
	if err != nil {
		return fmt.Errorf("finish build %d: %w", id, err)
	}
	if outbox {
		db.notifyOutbox()
	}
	return nil
}

// finishBuild completes build id and returns it as stored; with outbox,
// it writes the build's Finished outbox entry too.
func finishBuild(tx *bolt.Tx, id int64, results int, t time.Time, outbox bool) (Build, error) {
	var out Build
	err := modify(tx, bucketBuild, id, func(b *Build) error {
		b.Complete, b.CompleteAt, b.Results = true, t, results
		out = *b
		return nil
	})
	if err != nil {
		return Build{}, err
	}
	if outbox {
		if err := addOutbox(tx, OutboxEntry{Event: OutboxFinished, BuildID: id, At: t}); err != nil {
			return Build{}, err
		}
	}
	return out, bucket(tx, bucketBuildIncomplete).Delete(itob(id))
}

// AbandonBuilds ends every incomplete build of masterID (left by a crash)
// with Retry at t (zero means now), ends their incomplete steps with Retry
// and their logs, and unclaims their build requests so they run again. It
// also unclaims every other incomplete request that masterID had claimed,
// since that master is gone. It returns the ids of the builds it ended.
func (db *DB) AbandonBuilds(masterID int64, t time.Time) ([]int64, error) {
	t = at(t)
	var ended []int64
	a := abandoned{outbox: db.outboxOn()}
	err := db.update(func(tx *bolt.Tx) (err error) {
		ended, err = a.master(tx, masterID, t)
		return err
	}, a.publish)
	if err != nil {
		return nil, fmt.Errorf("abandon builds of master %d: %w", masterID, err)
	}
	if len(ended) > 0 && a.outbox {
		db.notifyOutbox()
	}
	if len(ended) > 0 {
		db.log.Info("abandoned builds of a previous run", "master", masterID, "builds", ended)
	}
	return ended, nil
}

// abandoned gathers what abandoning builds changed, to publish once the
// transaction has committed.
type abandoned struct {
	outbox   bool // write the builds' Finished outbox entries
	steps    []Step
	logs     []Log
	finished []Build
	requests []BuildRequest
}

// build ends the incomplete build b with Retry at t: its incomplete steps
// with Retry, its logs finished.
func (a *abandoned) build(tx *bolt.Tx, b Build, t time.Time) error {
	for _, stepID := range prefixIDs(tx, bucketStepByBuild, itob(b.ID), true) {
		err := modify(tx, bucketStep, stepID, func(s *Step) error {
			if !s.Complete {
				s.Complete, s.CompleteAt, s.Results = true, t, Retry
				a.steps = append(a.steps, *s)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, logID := range prefixIDs(tx, bucketLogByStep, itob(stepID), false) {
			err := modify(tx, bucketLog, logID, func(l *Log) error {
				if !l.Complete {
					l.Complete = true
					a.logs = append(a.logs, *l)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	fb, err := finishBuild(tx, b.ID, Retry, t, a.outbox)
	if err != nil {
		return err
	}
	a.finished = append(a.finished, fb)
	return nil
}

// master ends every incomplete build of masterID with Retry at t and
// unclaims every incomplete request it claimed, returning the builds'
// ids: AbandonBuilds' work, in tx.
func (a *abandoned) master(tx *bolt.Tx, masterID int64, t time.Time) ([]int64, error) {
	var ended []int64
	builds, err := getAll[Build](tx, bucketBuild, prefixIDs(tx, bucketBuildIncomplete, nil, false))
	if err != nil {
		return nil, err
	}
	for _, b := range builds {
		if b.MasterID != masterID {
			continue
		}
		if err := a.build(tx, b, t); err != nil {
			return nil, err
		}
		ended = append(ended, b.ID)
	}
	for _, brid := range claimedBy(tx, masterID) {
		br, err := get[BuildRequest](tx, bucketRequest, brid)
		if err != nil {
			return nil, err
		}
		if br.Claimed && br.ClaimedByMasterID == masterID {
			if err := a.request(tx, br); err != nil {
				return nil, err
			}
		}
	}
	return ended, nil
}

// request unclaims br, so that it runs again.
func (a *abandoned) request(tx *bolt.Tx, br BuildRequest) error {
	unclaim(&br)
	if err := put(tx, bucketRequest, br.ID, &br); err != nil {
		return err
	}
	a.requests = append(a.requests, br)
	return nil
}

func (a *abandoned) publish(e emit) {
	for _, l := range a.logs {
		e.log("finished", l)
	}
	for _, s := range a.steps {
		e.step("finished", s)
	}
	for _, b := range a.finished {
		e.build("finished", b)
	}
	for _, br := range a.requests {
		e.buildRequest("unclaimed", br)
	}
}

// AddStep adds a step to a build, numbered after its last step (from 0),
// with Results -1. If the build already has a step called name, the new one
// is called name_2, name_3… as in buildbot.
func (db *DB) AddStep(buildID int64, name string) (Step, error) {
	var s Step
	err := db.batch(func(tx *bolt.Tx) (err error) {
		s, err = addStep(tx, buildID, name, time.Time{})
		return err
	}, func(e emit) { e.step("new", s) })
	if err != nil {
		return Step{}, fmt.Errorf("add step %q: %w", name, err)
	}
	return s, nil
}

// StartNewStep is AddStep then StartStep at t (zero means now) in one
// transaction: a build's steps start as they are added, and each
// transaction costs the disk two syncs. It publishes both events, "new"
// then "started", each with the step as committed (started).
func (db *DB) StartNewStep(buildID int64, name string, t time.Time) (Step, error) {
	t = at(t)
	var s Step
	err := db.batch(func(tx *bolt.Tx) (err error) {
		s, err = addStep(tx, buildID, name, t)
		return err
	}, func(e emit) {
		e.step("new", s)
		e.step("started", s)
	})
	if err != nil {
		return Step{}, fmt.Errorf("add step %q: %w", name, err)
	}
	return s, nil
}

// addStep adds a step to build buildID, started at started (zero: not
// yet), named name or, when the build has a step of that name, name_2,
// name_3...
func addStep(tx *bolt.Tx, buildID int64, name string, started time.Time) (Step, error) {
	if bucket(tx, bucketBuild).Get(itob(buildID)) == nil {
		return Step{}, fmt.Errorf("build %d: %w", buildID, ErrNotFound)
	}
	number := 0
	if k := lastUnder(tx, bucketStepByBuild, buildID); k != nil {
		number = int(btoi(k[8:])) + 1
	}
	unique := uniqueStepName(name, func(name string) bool {
		return bucket(tx, bucketStepByName).Get(keyName(buildID, name)) != nil
	})
	id, err := nextID(tx, bucketStep)
	if err != nil {
		return Step{}, err
	}
	s := Step{ID: id, BuildID: buildID, Number: number, Name: unique, Results: -1, StartedAt: started}
	if err := put(tx, bucketStep, id, &s); err != nil {
		return Step{}, err
	}
	if err := bucket(tx, bucketStepByBuild).Put(key2(buildID, int64(number)), itob(id)); err != nil {
		return Step{}, err
	}
	return s, bucket(tx, bucketStepByName).Put(keyName(buildID, unique), itob(id))
}

// uniqueStepName is name, or name_2, name_3… when a step of the build
// has it (taken says which names are); both stores.
func uniqueStepName(name string, taken func(name string) bool) string {
	unique := name
	for i := 2; taken(unique); i++ {
		unique = name + "_" + strconv.Itoa(i)
	}
	return unique
}

// modifyStep changes step id with fn and publishes its events evs, in
// order, each with the step as committed.
func (db *DB) modifyStep(op string, id int64, fn func(*Step), evs ...string) error {
	var out Step
	err := db.batch(func(tx *bolt.Tx) error {
		return modify(tx, bucketStep, id, func(s *Step) error {
			fn(s)
			out = *s
			return nil
		})
	}, func(e emit) {
		for _, ev := range evs {
			e.step(ev, out)
		}
	})
	if err != nil {
		return fmt.Errorf("%s %d: %w", op, id, err)
	}
	return nil
}

// StartStep marks a step started at t (zero means now).
func (db *DB) StartStep(id int64, t time.Time) error {
	t = at(t)
	return db.modifyStep("start step", id, func(s *Step) { s.StartedAt = t }, "started")
}

// SetStepStateString sets the line that describes what a step is doing.
func (db *DB) SetStepStateString(id int64, str string) error {
	return db.modifyStep("set state of step", id, func(s *Step) { s.StateString = str }, "updated")
}

// SetStepHidden hides or shows a step.
func (db *DB) SetStepHidden(id int64, hidden bool) error {
	return db.modifyStep("set hidden of step", id, func(s *Step) { s.Hidden = hidden }, "updated")
}

// AddStepURL adds a link to a step, unless it already has the same one.
func (db *DB) AddStepURL(id int64, name, url string) error {
	return db.modifyStep("add url to step", id, func(s *Step) { addStepURL(s, name, url) }, "updated")
}

// addStepURL adds a link to s unless it has the same one (both stores).
func addStepURL(s *Step, name, url string) {
	u := StepURL{Name: name, URL: url}
	if !slices.Contains(s.URLs, u) {
		s.URLs = append(s.URLs, u)
	}
}

// FinishStep marks a step complete with results at t (zero means now).
func (db *DB) FinishStep(id int64, results int, t time.Time) error {
	t = at(t)
	return db.modifyStep("finish step", id, func(s *Step) {
		s.Complete, s.CompleteAt, s.Results = true, t, results
	}, "finished")
}

// EndStep is SetStepStateString then FinishStep in one transaction; it
// publishes both events, "updated" then "finished", each with the step as
// committed (finished).
func (db *DB) EndStep(id int64, state string, results int, t time.Time) error {
	t = at(t)
	return db.modifyStep("end step", id, func(s *Step) {
		s.StateString = state
		s.Complete, s.CompleteAt, s.Results = true, t, results
	}, "updated", "finished")
}

// Step returns the step with the given id.
func (db *DB) Step(id int64) (Step, error) {
	var s Step
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		s, err = get[Step](tx, bucketStep, id)
		return err
	})
	if err != nil {
		return Step{}, fmt.Errorf("get step: %w", err)
	}
	return s, nil
}

// Steps lists the steps of a build by number.
func (db *DB) Steps(buildID int64) ([]Step, error) {
	var ss []Step
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		if bucket(tx, bucketBuild).Get(itob(buildID)) == nil {
			return fmt.Errorf("build %d: %w", buildID, ErrNotFound)
		}
		ss, err = getAll[Step](tx, bucketStep, prefixIDs(tx, bucketStepByBuild, itob(buildID), true))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list steps: %w", err)
	}
	return ss, nil
}

// StepByNumber returns the step of a build with the given number.
func (db *DB) StepByNumber(buildID int64, number int) (Step, error) {
	s, err := db.stepBy(bucketStepByBuild, key2(buildID, int64(number)))
	if err != nil {
		return Step{}, fmt.Errorf("get step %d of build %d: %w", number, buildID, err)
	}
	return s, nil
}

// StepByName returns the step of a build called name.
func (db *DB) StepByName(buildID int64, name string) (Step, error) {
	s, err := db.stepBy(bucketStepByName, keyName(buildID, name))
	if err != nil {
		return Step{}, fmt.Errorf("get step %q of build %d: %w", name, buildID, err)
	}
	return s, nil
}

func (db *DB) stepBy(index string, key []byte) (Step, error) {
	var s Step
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		v := bucket(tx, index).Get(key)
		if v == nil {
			return ErrNotFound
		}
		s, err = get[Step](tx, bucketStep, btoi(v))
		return err
	})
	return s, err
}
