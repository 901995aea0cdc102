package store

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ensure finds the record named name through index, or creates it with mk.
// update, when non-nil, changes an existing record before it is returned
// (and then stored).
func ensure[T any](tx *bolt.Tx, name, records, index string, mk func(id int64) T, update func(*T)) (T, error) {
	var zero T
	if name == "" {
		return zero, errors.New("empty name")
	}
	if id, ok := lookupName(tx, index, name); ok {
		v, err := get[T](tx, records, id)
		if err != nil || update == nil {
			return v, err
		}
		update(&v)
		return v, put(tx, records, id, &v)
	}
	id, err := nextID(tx, records)
	if err != nil {
		return zero, err
	}
	v := mk(id)
	if err := put(tx, records, id, &v); err != nil {
		return zero, err
	}
	return v, bucket(tx, index).Put([]byte(name), itob(id))
}

// EnsureMaster finds the master called name, or creates it, and marks it
// active and seen now.
func (db *DB) EnsureMaster(name string) (Master, error) {
	var m Master
	now := time.Now().UTC()
	err := db.update(func(tx *bolt.Tx) (err error) {
		m, err = ensure(tx, name, bucketMaster, bucketMasterByName,
			func(id int64) Master { return Master{ID: id, Name: name, Active: true, LastSeen: now} },
			func(m *Master) { m.Active, m.LastSeen = true, now })
		return err
	}, func(e emit) { e.master("started", m) })
	if err != nil {
		return Master{}, fmt.Errorf("ensure master %q: %w", name, err)
	}
	return m, nil
}

// SetMasterActive marks a master active or not, and seen at (zero means now).
func (db *DB) SetMasterActive(id int64, active bool, seen time.Time) error {
	ev := "stopped"
	if active {
		ev = "started"
	}
	var out Master
	err := db.update(func(tx *bolt.Tx) error {
		return modify(tx, bucketMaster, id, func(m *Master) error {
			m.Active, m.LastSeen = active, at(seen)
			out = *m
			return nil
		})
	}, func(e emit) { e.master(ev, out) })
	if err != nil {
		return fmt.Errorf("set master %d active: %w", id, err)
	}
	return nil
}

// SetMasterWorkerCert records when the certificate of a master's worker
// port ends (zero: plaintext), for the API and the workers page.
func (db *DB) SetMasterWorkerCert(id int64, notAfter time.Time) error {
	var out Master
	err := db.update(func(tx *bolt.Tx) error {
		return modify(tx, bucketMaster, id, func(m *Master) error {
			m.WorkerCertNotAfter = notAfter.UTC()
			out = *m
			return nil
		})
	}, func(e emit) { e.master("updated", out) })
	if err != nil {
		return fmt.Errorf("set master %d worker certificate: %w", id, err)
	}
	return nil
}

// Masters lists the masters by id.
func (db *DB) Masters() ([]Master, error) {
	var ms []Master
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		ms, err = list[Master](tx, bucketMaster)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list masters: %w", err)
	}
	return ms, nil
}

// EnsureBuilder finds the builder called name, or creates it. Ids count
// from 1 and never change.
func (db *DB) EnsureBuilder(name string) (Builder, error) {
	var b Builder
	created := false
	err := db.update(func(tx *bolt.Tx) (err error) {
		b, err = ensure(tx, name, bucketBuilder, bucketBuilderByName,
			func(id int64) Builder { created = true; return Builder{ID: id, Name: name} }, nil)
		return err
	}, func(e emit) {
		if created {
			e.builder("new", b)
		}
	})
	if err != nil {
		return Builder{}, fmt.Errorf("ensure builder %q: %w", name, err)
	}
	return b, nil
}

// UpdateBuilder replaces a builder's description, tags and masters.
func (db *DB) UpdateBuilder(id int64, description string, tags []string, masterIDs []int64) error {
	var out Builder
	err := db.update(func(tx *bolt.Tx) error {
		return modify(tx, bucketBuilder, id, func(b *Builder) error {
			b.Description, b.Tags, b.MasterIDs = description, slices.Clone(tags), slices.Clone(masterIDs)
			out = *b
			return nil
		})
	}, func(e emit) { e.builder("update", out) })
	if err != nil {
		return fmt.Errorf("update builder %d: %w", id, err)
	}
	return nil
}

// Builders lists the builders by id.
func (db *DB) Builders() ([]Builder, error) {
	var bs []Builder
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		bs, err = list[Builder](tx, bucketBuilder)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list builders: %w", err)
	}
	return bs, nil
}

// Builder returns the builder with the given id.
func (db *DB) Builder(id int64) (Builder, error) {
	var b Builder
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		b, err = get[Builder](tx, bucketBuilder, id)
		return err
	})
	if err != nil {
		return Builder{}, fmt.Errorf("get builder: %w", err)
	}
	return b, nil
}

// BuilderByName returns the builder called name.
func (db *DB) BuilderByName(name string) (Builder, error) {
	b, err := byName[Builder](db, bucketBuilder, bucketBuilderByName, name)
	if err != nil {
		return Builder{}, fmt.Errorf("get builder %q: %w", name, err)
	}
	return b, nil
}

func byName[T any](db *DB, records, index, name string) (T, error) {
	var v T
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		id, ok := lookupName(tx, index, name)
		if !ok {
			return ErrNotFound
		}
		v, err = get[T](tx, records, id)
		return err
	})
	return v, err
}

// EnsureWorker finds the worker called name, or creates it.
func (db *DB) EnsureWorker(name string) (Worker, error) {
	var w Worker
	created := false
	err := db.update(func(tx *bolt.Tx) (err error) {
		w, err = ensure(tx, name, bucketWorker, bucketWorkerByName,
			func(id int64) Worker { created = true; return Worker{ID: id, Name: name} }, nil)
		return err
	}, func(e emit) {
		if created {
			e.worker("new", w)
		}
	})
	if err != nil {
		return Worker{}, fmt.Errorf("ensure worker %q: %w", name, err)
	}
	return w, nil
}

// modifyWorker changes worker id with fn and publishes its event ev.
func (db *DB) modifyWorker(op, ev string, id int64, fn func(*Worker)) error {
	var out Worker
	err := db.update(func(tx *bolt.Tx) error {
		return modify(tx, bucketWorker, id, func(w *Worker) error {
			fn(w)
			out = *w
			return nil
		})
	}, func(e emit) { e.worker(ev, out) })
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// SetWorkerConfiguredOn replaces the builders, per master, that use a worker.
func (db *DB) SetWorkerConfiguredOn(id int64, on []BuilderMaster) error {
	return db.modifyWorker("set worker configured on", "update", id, func(w *Worker) {
		w.ConfiguredOn = slices.Clone(on)
	})
}

// WorkerConnected records that a worker is connected to masterID and what it
// reported about itself.
func (db *DB) WorkerConnected(id, masterID int64, info map[string]string) error {
	return db.modifyWorker("worker connected", "connected", id, func(w *Worker) {
		if !slices.Contains(w.ConnectedTo, masterID) {
			w.ConnectedTo = append(w.ConnectedTo, masterID)
		}
		w.Info = maps.Clone(info)
	})
}

// WorkerDisconnected records that a worker is no longer connected to masterID.
func (db *DB) WorkerDisconnected(id, masterID int64) error {
	return db.modifyWorker("worker disconnected", "disconnected", id, func(w *Worker) {
		w.ConnectedTo = slices.DeleteFunc(w.ConnectedTo, func(m int64) bool { return m == masterID })
		if len(w.ConnectedTo) == 0 {
			w.ConnectedTo = nil
		}
	})
}

// SetWorkerPaused sets a worker's Paused and Graceful flags.
func (db *DB) SetWorkerPaused(id int64, paused, graceful bool) error {
	return db.modifyWorker("set worker paused", "state_updated", id, func(w *Worker) {
		w.Paused, w.Graceful = paused, graceful
	})
}

// Workers lists the workers by id.
func (db *DB) Workers() ([]Worker, error) {
	var ws []Worker
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		ws, err = list[Worker](tx, bucketWorker)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return ws, nil
}

// Worker returns the worker with the given id.
func (db *DB) Worker(id int64) (Worker, error) {
	var w Worker
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		w, err = get[Worker](tx, bucketWorker, id)
		return err
	})
	if err != nil {
		return Worker{}, fmt.Errorf("get worker: %w", err)
	}
	return w, nil
}

// WorkerByName returns the worker called name.
func (db *DB) WorkerByName(name string) (Worker, error) {
	w, err := byName[Worker](db, bucketWorker, bucketWorkerByName, name)
	if err != nil {
		return Worker{}, fmt.Errorf("get worker %q: %w", name, err)
	}
	return w, nil
}

// Now is the store's clock, by which Heartbeat records when a master was
// last seen and the masters compare it with master_timeout: on bbolt,
// whose masters share one host, this host's.
func (db *DB) Now() (time.Time, error) { return time.Now().UTC(), nil }

// Heartbeat records that master id is alive, seen now by the store's
// clock (see Now). alive is false, and nothing is written, when the
// master is inactive: it stopped, or the others presumed it dead
// (ExpireMaster), and a heartbeat must not bring it back.
func (db *DB) Heartbeat(id int64) (alive bool, err error) {
	var out Master
	now := time.Now().UTC()
	err = db.update(func(tx *bolt.Tx) error {
		return modify(tx, bucketMaster, id, func(m *Master) error {
			if alive = m.Active; !alive {
				return errInactive
			}
			m.LastSeen = now
			out = *m
			return nil
		})
	}, func(e emit) { e.master("started", out) })
	if errors.Is(err, errInactive) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("heartbeat of master %d: %w", id, err)
	}
	return true, nil
}

// errInactive ends the transaction of a heartbeat of an inactive master,
// writing nothing.
var errInactive = errors.New("store: master inactive")

// ExpireMaster presumes master id dead, in one transaction, if it is still
// active and was last seen before seenBefore (by the store's clock, see
// Now): its incomplete builds end RETRY at now and its claimed requests
// are released (as AbandonBuilds), its workers are disconnected from it,
// it leaves its builders' and workers' masters, and it is marked inactive,
// its last seen kept (the event masters/N/stopped). expired is false, and
// nothing is written, when it beat meanwhile or another master expired it
// first. On PostgreSQL its database sessions are then ended, so that the
// locks it holds (the leader's) are freed even if it hangs.
func (db *DB) ExpireMaster(id int64, seenBefore, now time.Time) (expired bool, err error) {
	return db.expire(id, seenBefore, now, false)
}

// AbandonStoppedMaster ends the work an inactive master left, as
// ExpireMaster does for a silent one (in one transaction: its incomplete
// builds end RETRY at now, its claimed requests are released or, when
// their build had finished, completed, its workers are disconnected from
// it and it leaves its builders' and workers' masters), if it is still
// inactive and was last seen (stopped) before stoppedBefore. A master
// stopped cleanly with finish_steps_on_restart leaves its builds running
// for when it comes back; one that does not come back in time must not
// hold them forever. It first checks, reading only, whether the master
// left an incomplete build or a claimed request: most inactive masters
// left none, and then nothing is locked nor written. abandoned is false
// when nothing was done: the master left nothing, came back (is active),
// or stopped since stoppedBefore. The master's record is not changed.
func (db *DB) AbandonStoppedMaster(id int64, stoppedBefore, now time.Time) (abandoned bool, err error) {
	var left bool
	err = db.bolt.View(func(tx *bolt.Tx) error {
		m, err := get[Master](tx, bucketMaster, id)
		if err != nil || m.Active || !m.LastSeen.Before(stoppedBefore) {
			return err
		}
		if len(claimedBy(tx, id)) > 0 {
			left = true
			return nil
		}
		builds, err := getAll[Build](tx, bucketBuild, prefixIDs(tx, bucketBuildIncomplete, nil, false))
		left = slices.ContainsFunc(builds, func(b Build) bool { return b.MasterID == id })
		return err
	})
	if err != nil {
		return false, fmt.Errorf("abandon the work of stopped master %d: %w", id, err)
	}
	if !left {
		return false, nil
	}
	return db.expire(id, stoppedBefore, now, true)
}

// expire is ExpireMaster, or AbandonStoppedMaster's write when stopped:
// then the master must be inactive, and stays so unchanged.
func (db *DB) expire(id int64, seenBefore, now time.Time, stopped bool) (expired bool, err error) {
	now = at(now)
	var x expiry
	x.a.outbox = db.outboxOn()
	err = db.update(func(tx *bolt.Tx) error {
		m, err := get[Master](tx, bucketMaster, id)
		if err != nil {
			return err
		}
		if m.Active == stopped || !m.LastSeen.Before(seenBefore) {
			return errInactive
		}
		if x.ended, err = x.a.master(tx, id, now); err != nil {
			return err
		}
		ws, err := list[Worker](tx, bucketWorker)
		if err != nil {
			return err
		}
		for _, w := range ws {
			if nw, ok := x.worker(w, id); ok {
				if err := put(tx, bucketWorker, nw.ID, &nw); err != nil {
					return err
				}
			}
		}
		bs, err := list[Builder](tx, bucketBuilder)
		if err != nil {
			return err
		}
		for _, b := range bs {
			if nb, ok := x.builder(b, id); ok {
				if err := put(tx, bucketBuilder, nb.ID, &nb); err != nil {
					return err
				}
			}
		}
		if stopped {
			if !x.changed() {
				return errInactive // another master abandoned it first
			}
			return nil
		}
		m.Active = false
		x.master = &m
		return put(tx, bucketMaster, id, &m)
	}, x.publish)
	if errors.Is(err, errInactive) {
		return false, nil
	}
	if err != nil {
		if stopped {
			return false, fmt.Errorf("abandon the work of stopped master %d: %w", id, err)
		}
		return false, fmt.Errorf("expire master %d: %w", id, err)
	}
	if len(x.ended) > 0 && x.a.outbox {
		db.notifyOutbox()
	}
	return true, nil
}

// expiry gathers what ExpireMaster changed, to publish once committed.
type expiry struct {
	a        abandoned
	ended    []int64
	workers  []Worker // disconnected from the master
	wupdated []Worker // left by the master, still connected to it
	builders []Builder
	master   *Master // marked inactive; nil when it was already
}

// changed says whether the expiry ended a build, released or completed a
// request, or let go of a worker or builder.
func (x *expiry) changed() bool {
	return len(x.ended) > 0 || len(x.a.requests) > 0 || len(x.a.completed) > 0 ||
		len(x.workers) > 0 || len(x.wupdated) > 0 || len(x.builders) > 0
}

// worker returns w without master id, and whether it changed.
func (x *expiry) worker(w Worker, id int64) (Worker, bool) {
	connected := slices.Contains(w.ConnectedTo, id)
	configured := slices.ContainsFunc(w.ConfiguredOn, func(bm BuilderMaster) bool { return bm.MasterID == id })
	if !connected && !configured {
		return w, false
	}
	w.ConnectedTo = slices.DeleteFunc(slices.Clone(w.ConnectedTo), func(m int64) bool { return m == id })
	if len(w.ConnectedTo) == 0 {
		w.ConnectedTo = nil
	}
	w.ConfiguredOn = slices.DeleteFunc(slices.Clone(w.ConfiguredOn), func(bm BuilderMaster) bool { return bm.MasterID == id })
	if connected {
		x.workers = append(x.workers, w)
	} else {
		x.wupdated = append(x.wupdated, w)
	}
	return w, true
}

// builder returns b without master id, and whether it changed.
func (x *expiry) builder(b Builder, id int64) (Builder, bool) {
	if !slices.Contains(b.MasterIDs, id) {
		return b, false
	}
	b.MasterIDs = slices.DeleteFunc(slices.Clone(b.MasterIDs), func(m int64) bool { return m == id })
	x.builders = append(x.builders, b)
	return b, true
}

func (x *expiry) publish(e emit) {
	x.a.publish(e)
	for _, w := range x.workers {
		e.worker("disconnected", w)
	}
	for _, w := range x.wupdated {
		e.worker("update", w)
	}
	for _, b := range x.builders {
		e.builder("update", b)
	}
	if x.master != nil {
		e.master("stopped", *x.master)
	}
}

// SetBuilderOnMaster adds masterID to the builder's masters (on) or removes
// it, leaving the other masters' places: masters sharing the store each
// record their own at once.
func (db *DB) SetBuilderOnMaster(builderID, masterID int64, on bool) error {
	var out Builder
	err := db.update(func(tx *bolt.Tx) error {
		return modify(tx, bucketBuilder, builderID, func(b *Builder) error {
			*b = builderOnMaster(*b, masterID, on)
			out = *b
			return nil
		})
	}, func(e emit) { e.builder("update", out) })
	if err != nil {
		return fmt.Errorf("set builder %d on master %d: %w", builderID, masterID, err)
	}
	return nil
}

// builderOnMaster returns b with masterID among its masters (sorted) or not.
func builderOnMaster(b Builder, masterID int64, on bool) Builder {
	ids := slices.DeleteFunc(slices.Clone(b.MasterIDs), func(id int64) bool { return id == masterID })
	if on {
		ids = append(ids, masterID)
		slices.Sort(ids)
	}
	b.MasterIDs = ids
	return b
}

// SetBuilderInfo replaces a builder's description and tags.
func (db *DB) SetBuilderInfo(id int64, description string, tags []string) error {
	var out Builder
	err := db.update(func(tx *bolt.Tx) error {
		return modify(tx, bucketBuilder, id, func(b *Builder) error {
			b.Description, b.Tags = description, slices.Clone(tags)
			out = *b
			return nil
		})
	}, func(e emit) { e.builder("update", out) })
	if err != nil {
		return fmt.Errorf("update builder %d: %w", id, err)
	}
	return nil
}

// SetWorkerConfiguredOnMaster replaces the builders of master masterID that
// use a worker with on (each of masterID), leaving the other masters':
// masters sharing the store each record their own at once.
func (db *DB) SetWorkerConfiguredOnMaster(workerID, masterID int64, on []BuilderMaster) error {
	if err := checkOnMaster(masterID, on); err != nil {
		return err
	}
	return db.modifyWorker("set worker configured on master", "update", workerID, func(w *Worker) {
		w.ConfiguredOn = configuredOnMaster(w.ConfiguredOn, masterID, on)
	})
}

func checkOnMaster(masterID int64, on []BuilderMaster) error {
	for _, bm := range on {
		if bm.MasterID != masterID {
			return fmt.Errorf("set worker configured on master %d: builder %d is given for master %d", masterID, bm.BuilderID, bm.MasterID)
		}
	}
	return nil
}

// configuredOnMaster returns cur with masterID's entries replaced by on.
func configuredOnMaster(cur []BuilderMaster, masterID int64, on []BuilderMaster) []BuilderMaster {
	out := slices.DeleteFunc(slices.Clone(cur), func(bm BuilderMaster) bool { return bm.MasterID == masterID })
	return append(out, on...)
}
