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
