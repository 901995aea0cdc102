package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgXactLockSpace is the first key of the transaction advisory locks that
// serialize writes a row lock cannot: the creation of a named record
// (two masters starting with the same config both ensure its builders)
// and the adding of changes (see pgAddChanges).
const pgXactLockSpace = 0x67626203

// pgXactLock takes the transaction advisory lock called name, held until
// the transaction ends. Names whose hashes collide only wait for each
// other.
func pgXactLock(ctx context.Context, tx pgTx, name string) error {
	h := fnv.New32a()
	h.Write([]byte(name))
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", int32(pgXactLockSpace), int32(h.Sum32()))
	return err
}

// pgCtx bounds a statement run outside update and read, as opCtx does
// before the store is closing.
func pgCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), pgTimeout)
}

// pgModify reads the record id of table for update, lets fn change it and
// writes it back with put.
func pgModify[T any](ctx context.Context, tx pgTx, table string, id int64, put func(context.Context, pgTx, T) error, fn func(*T) error) error {
	v, err := pgGet[T](ctx, tx, table, id, true)
	if err != nil {
		return err
	}
	if err := fn(&v); err != nil {
		return err
	}
	return put(ctx, tx, v)
}

// pgEnsure is [ensure] on PostgreSQL: it finds the record of table called
// name, or creates it with mk. update, when non-nil, changes an existing
// record before it is returned (and then stored). A lock on the name makes
// concurrent ensures of one name (by several masters) create it once.
func pgEnsure[T any](ctx context.Context, tx pgx.Tx, table, name string, put func(context.Context, pgTx, T) error, mk func(id int64) T, update func(*T)) (T, error) {
	var zero T
	if name == "" {
		return zero, errors.New("empty name")
	}
	if err := pgXactLock(ctx, tx, table+"/"+name); err != nil {
		return zero, err
	}
	sql := "SELECT data FROM " + table + " WHERE name = $1"
	if update != nil {
		sql += " FOR UPDATE" // else a build starting on a builder (next_number) would hold this up
	}
	var data []byte
	err := tx.QueryRow(ctx, sql, name).Scan(&data)
	switch {
	case err == nil:
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return zero, err
		}
		if update == nil {
			return v, nil
		}
		update(&v)
		return v, put(ctx, tx, v)
	case !errors.Is(err, pgx.ErrNoRows):
		return zero, err
	}
	ids, err := nextIDs(ctx, tx, table, 1)
	if err != nil {
		return zero, err
	}
	v := mk(ids[0])
	return v, put(ctx, tx, v)
}

// pgByName returns the record of table called name; a missing one is
// ErrNotFound.
func pgByName[T any](p *PG, table, name string) (T, error) {
	var v T
	ctx, cancel := p.opCtx()
	defer cancel()
	var data []byte
	if err := p.pool.QueryRow(ctx, "SELECT data FROM "+table+" WHERE name = $1", name).Scan(&data); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return v, ErrNotFound
		}
		return v, err
	}
	return v, json.Unmarshal(data, &v)
}

// pgListOf lists the records of type T a query of the pool returns.
func pgListOf[T any](p *PG, sql string, args ...any) ([]T, error) {
	return pgRetryRead(p, func() ([]T, error) {
		ctx, cancel := p.opCtx()
		defer cancel()
		return pgList[T](ctx, p.pool, sql, args...)
	})
}

// pgOne reads the record id of table.
func pgOne[T any](p *PG, table string, id int64) (T, error) {
	return pgRetryRead(p, func() (T, error) {
		ctx, cancel := p.opCtx()
		defer cancel()
		return pgGet[T](ctx, p.pool, table, id, false)
	})
}

// EnsureMaster is [DB.EnsureMaster].
// Its last seen is the database's clock, as Heartbeat's. The first master
// a store ensures is the one it serves: its sessions are named after it
// from then on (see ExpireMaster).
func (p *PG) EnsureMaster(name string) (Master, error) {
	var m Master
	err := p.update(func(ctx context.Context, tx pgx.Tx) (err error) {
		now, err := pgNow(ctx, tx)
		if err != nil {
			return err
		}
		m, err = pgEnsure(ctx, tx, "masters", name, pgPutMaster,
			func(id int64) Master { return Master{ID: id, Name: name, Active: true, LastSeen: now} },
			func(m *Master) { m.Active, m.LastSeen = true, now })
		if err != nil {
			return err
		}
		// This process's sessions are named after its origin (pgAppName),
		// which an expiry reads here.
		_, err = tx.Exec(ctx, "UPDATE masters SET session = $2 WHERE id = $1", m.ID, p.origin)
		return err
	}, func(e emit) { e.master("started", m) })
	if err != nil {
		return Master{}, fmt.Errorf("ensure master %q: %w", name, err)
	}
	if p.selfID.CompareAndSwap(0, m.ID) {
		app := pgAppName(m.ID, p.origin)
		p.app.Store(&app)
	}
	return m, nil
}

// pgAppName is the application_name of the database sessions of master
// id's store whose origin is session: "gbb-master N SESSION". EnsureMaster
// records the origin in the masters table's session column; a master
// restarted under its name has another, so that the expiry of its
// predecessor, committed just before it registered, does not end its
// sessions (ExpireMaster reads the column under the row's lock).
func pgAppName(id int64, session string) string {
	name := "gbb-master " + strconv.FormatInt(id, 10)
	if session != "" {
		name += " " + session
	}
	return name
}

// pgSetApp names c's session app, unless it is so named already (or app
// is nil: the store's master is not known yet).
func pgSetApp(ctx context.Context, c *pgx.Conn, app *string) error {
	if app == nil || c.PgConn().ParameterStatus("application_name") == *app {
		return nil
	}
	_, err := c.Exec(ctx, "SELECT set_config('application_name', $1, false)", *app)
	return err
}

// pgNow reads the database's clock: the masters' last seen are the
// database's times, so that their hosts' clocks may differ.
func pgNow(ctx context.Context, q pgTx) (time.Time, error) {
	var t time.Time
	err := q.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t)
	return t.UTC(), err
}

// Now is [DB.Now]: on PostgreSQL, the database server's clock.
func (p *PG) Now() (time.Time, error) {
	ctx, cancel := p.opCtx()
	defer cancel()
	t, err := pgNow(ctx, p.pool)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the database's clock: %w", err)
	}
	return t, nil
}

// Heartbeat is [DB.Heartbeat], seen at the database's clock. The master's
// row lock orders it with ExpireMaster: a master expired meanwhile stays
// inactive and learns it here.
func (p *PG) Heartbeat(id int64) (alive bool, err error) {
	var out Master
	err = p.update(func(ctx context.Context, tx pgx.Tx) error {
		now, err := pgNow(ctx, tx)
		if err != nil {
			return err
		}
		return pgModify(ctx, tx, "masters", id, pgPutMaster, func(m *Master) error {
			if !m.Active {
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

// ExpireMaster is [DB.ExpireMaster]. The master's row is locked first, so
// that its heartbeat waits and then finds it inactive. Once committed, the
// expired process's sessions (named "gbb-master N SESSION", see pgAppName) are
// ended with pg_terminate_backend, so that the locks it holds (the
// leader's) are freed even while it hangs; its listening session, unnamed,
// stays, to tell it that it was expired. Ending another role's sessions
// needs that role, or pg_signal_backend; the masters sharing a database
// share its role, which is enough. A failure to end them is logged: the
// master is expired all the same.
func (p *PG) ExpireMaster(id int64, seenBefore, now time.Time) (expired bool, err error) {
	return p.expire(id, seenBefore, now, false)
}

// AbandonStoppedMaster is [DB.AbandonStoppedMaster]. Its first check is
// one read on the partial indexes of the incomplete builds and of the
// claimed requests (builds_incomplete, buildrequests_claimed), so that
// the masters may make it at each heartbeat for every inactive master;
// the transaction, which locks every worker and builder row as
// ExpireMaster's, runs only when the master left work. The stopped
// master's database sessions are not ended: it stopped.
func (p *PG) AbandonStoppedMaster(id int64, stoppedBefore, now time.Time) (abandoned bool, err error) {
	left, err := pgRetryRead(p, func() (bool, error) {
		ctx, cancel := p.opCtx()
		defer cancel()
		var left bool
		err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM builds WHERE master_id = $1 AND NOT complete)
			OR EXISTS (SELECT 1 FROM buildrequests WHERE claimed_by = $1 AND NOT complete)`, id).Scan(&left)
		return left, err
	})
	if err != nil {
		return false, fmt.Errorf("abandon the work of stopped master %d: %w", id, err)
	}
	if !left {
		return false, nil
	}
	return p.expire(id, stoppedBefore, now, true)
}

// expire is ExpireMaster, or AbandonStoppedMaster's write when stopped:
// then the master must be inactive, and stays so unchanged.
func (p *PG) expire(id int64, seenBefore, now time.Time, stopped bool) (expired bool, err error) {
	now = at(now)
	outbox := p.outboxOn()
	var (
		x       expiry
		session string // the expired process's, whose sessions end below
	)
	err = p.update(func(ctx context.Context, tx pgx.Tx) error {
		x = expiry{a: abandoned{outbox: outbox}}
		m, err := pgGet[Master](ctx, tx, "masters", id, true)
		if err != nil {
			return err
		}
		if m.Active == stopped || !m.LastSeen.Before(seenBefore) {
			return errInactive
		}
		if x.ended, err = x.a.pgMaster(ctx, tx, id, now); err != nil {
			return err
		}
		ws, err := pgList[Worker](ctx, tx, "SELECT data FROM workers ORDER BY id FOR UPDATE")
		if err != nil {
			return err
		}
		for _, w := range ws {
			if nw, ok := x.worker(w, id); ok {
				if err := pgPutWorker(ctx, tx, nw); err != nil {
					return err
				}
			}
		}
		bs, err := pgList[Builder](ctx, tx, "SELECT data FROM builders ORDER BY id FOR UPDATE")
		if err != nil {
			return err
		}
		for _, b := range bs {
			if nb, ok := x.builder(b, id); ok {
				if err := pgPutBuilder(ctx, tx, nb); err != nil {
					return err
				}
			}
		}
		if stopped {
			if !x.changed() {
				return errInactive // another master abandoned it first
			}
			return x.a.pgOutbox(ctx, tx)
		}
		if err := tx.QueryRow(ctx, "SELECT session FROM masters WHERE id = $1", id).Scan(&session); err != nil {
			return err
		}
		m.Active = false
		x.master = &m
		if err := pgPutMaster(ctx, tx, m); err != nil {
			return err
		}
		return x.a.pgOutbox(ctx, tx)
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
		p.notifyOutbox()
	}
	if !stopped && id != p.selfID.Load() {
		if n, err := p.terminate(id, session); err != nil {
			p.log.Error("end the database sessions of an expired master: it may keep its locks (the leader's) while it hangs", "master", id, "err", err)
		} else {
			p.log.Info("ended the database sessions of an expired master", "master", id, "sessions", n)
		}
	}
	return true, nil
}

// terminate ends the database sessions of master id's store whose session
// is session, in this database.
func (p *PG) terminate(id int64, session string) (int, error) {
	ctx, cancel := p.opCtx()
	defer cancel()
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()`, pgAppName(id, session)).Scan(&n)
	return n, err
}

// SetBuilderOnMaster is [DB.SetBuilderOnMaster]: the builder's row lock
// orders masters recording their places at once.
func (p *PG) SetBuilderOnMaster(builderID, masterID int64, on bool) error {
	var out Builder
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgModify(ctx, tx, "builders", builderID, pgPutBuilder, func(b *Builder) error {
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

// SetBuilderInfo is [DB.SetBuilderInfo].
func (p *PG) SetBuilderInfo(id int64, description string, tags []string) error {
	var out Builder
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgModify(ctx, tx, "builders", id, pgPutBuilder, func(b *Builder) error {
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

// SetWorkerConfiguredOnMaster is [DB.SetWorkerConfiguredOnMaster]: the
// worker's row lock orders masters recording theirs at once.
func (p *PG) SetWorkerConfiguredOnMaster(workerID, masterID int64, on []BuilderMaster) error {
	if err := checkOnMaster(masterID, on); err != nil {
		return err
	}
	return p.modifyWorker("set worker configured on master", "update", workerID, func(w *Worker) {
		w.ConfiguredOn = configuredOnMaster(w.ConfiguredOn, masterID, on)
	})
}

// SetMasterActive is [DB.SetMasterActive].
func (p *PG) SetMasterActive(id int64, active bool, seen time.Time) error {
	ev := "stopped"
	if active {
		ev = "started"
	}
	var out Master
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgModify(ctx, tx, "masters", id, pgPutMaster, func(m *Master) error {
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

// SetMasterWorkerCert is [DB.SetMasterWorkerCert].
func (p *PG) SetMasterWorkerCert(id int64, notAfter time.Time) error {
	var out Master
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgModify(ctx, tx, "masters", id, pgPutMaster, func(m *Master) error {
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

// Masters is [DB.Masters].
func (p *PG) Masters() ([]Master, error) {
	ms, err := pgListOf[Master](p, "SELECT data FROM masters ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list masters: %w", err)
	}
	return ms, nil
}

// EnsureBuilder is [DB.EnsureBuilder].
func (p *PG) EnsureBuilder(name string) (Builder, error) {
	var b Builder
	created := false
	err := p.update(func(ctx context.Context, tx pgx.Tx) (err error) {
		created = false
		b, err = pgEnsure(ctx, tx, "builders", name, pgPutBuilder,
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

// UpdateBuilder is [DB.UpdateBuilder].
func (p *PG) UpdateBuilder(id int64, description string, tags []string, masterIDs []int64) error {
	var out Builder
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgModify(ctx, tx, "builders", id, pgPutBuilder, func(b *Builder) error {
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

// Builders is [DB.Builders].
func (p *PG) Builders() ([]Builder, error) {
	bs, err := pgListOf[Builder](p, "SELECT data FROM builders ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list builders: %w", err)
	}
	return bs, nil
}

// Builder is [DB.Builder].
func (p *PG) Builder(id int64) (Builder, error) {
	b, err := pgOne[Builder](p, "builders", id)
	if err != nil {
		return Builder{}, fmt.Errorf("get builder: %w", err)
	}
	return b, nil
}

// BuilderByName is [DB.BuilderByName].
func (p *PG) BuilderByName(name string) (Builder, error) {
	b, err := pgByName[Builder](p, "builders", name)
	if err != nil {
		return Builder{}, fmt.Errorf("get builder %q: %w", name, err)
	}
	return b, nil
}

// EnsureWorker is [DB.EnsureWorker].
func (p *PG) EnsureWorker(name string) (Worker, error) {
	var w Worker
	created := false
	err := p.update(func(ctx context.Context, tx pgx.Tx) (err error) {
		created = false
		w, err = pgEnsure(ctx, tx, "workers", name, pgPutWorker,
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

// modifyWorker changes worker id with fn and publishes its event ev. fn
// may run more than once (see update), each time on the stored worker.
func (p *PG) modifyWorker(op, ev string, id int64, fn func(*Worker)) error {
	var out Worker
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgModify(ctx, tx, "workers", id, pgPutWorker, func(w *Worker) error {
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

// SetWorkerConfiguredOn is [DB.SetWorkerConfiguredOn].
func (p *PG) SetWorkerConfiguredOn(id int64, on []BuilderMaster) error {
	return p.modifyWorker("set worker configured on", "update", id, func(w *Worker) {
		w.ConfiguredOn = slices.Clone(on)
	})
}

// WorkerConnected is [DB.WorkerConnected]. Several masters may record
// their connections of one worker at once: the row lock orders them, and
// each adds itself to what the other stored.
func (p *PG) WorkerConnected(id, masterID int64, info map[string]string) error {
	return p.modifyWorker("worker connected", "connected", id, func(w *Worker) {
		if !slices.Contains(w.ConnectedTo, masterID) {
			w.ConnectedTo = append(w.ConnectedTo, masterID)
		}
		w.Info = maps.Clone(info)
	})
}

// WorkerDisconnected is [DB.WorkerDisconnected].
func (p *PG) WorkerDisconnected(id, masterID int64) error {
	return p.modifyWorker("worker disconnected", "disconnected", id, func(w *Worker) {
		w.ConnectedTo = slices.DeleteFunc(w.ConnectedTo, func(m int64) bool { return m == masterID })
		if len(w.ConnectedTo) == 0 {
			w.ConnectedTo = nil
		}
	})
}

// SetWorkerPaused is [DB.SetWorkerPaused].
func (p *PG) SetWorkerPaused(id int64, paused, graceful bool) error {
	return p.modifyWorker("set worker paused", "state_updated", id, func(w *Worker) {
		w.Paused, w.Graceful = paused, graceful
	})
}

// Workers is [DB.Workers].
func (p *PG) Workers() ([]Worker, error) {
	ws, err := pgListOf[Worker](p, "SELECT data FROM workers ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return ws, nil
}

// Worker is [DB.Worker].
func (p *PG) Worker(id int64) (Worker, error) {
	w, err := pgOne[Worker](p, "workers", id)
	if err != nil {
		return Worker{}, fmt.Errorf("get worker: %w", err)
	}
	return w, nil
}

// WorkerByName is [DB.WorkerByName].
func (p *PG) WorkerByName(name string) (Worker, error) {
	w, err := pgByName[Worker](p, "workers", name)
	if err != nil {
		return Worker{}, fmt.Errorf("get worker %q: %w", name, err)
	}
	return w, nil
}

// pgCheckNamed verifies that the id and name columns of the masters,
// builders and workers are their records'.
func pgCheckNamed(ctx context.Context, tx pgx.Tx) []error {
	var errs []error
	for _, table := range []string{"masters", "builders", "workers"} {
		rows, err := tx.Query(ctx, "SELECT id, name, data FROM "+table+" ORDER BY id")
		if err != nil {
			return append(errs, fmt.Errorf("check %s: %w", table, err))
		}
		for rows.Next() {
			var id int64
			var name string
			var data []byte
			if err := rows.Scan(&id, &name, &data); err != nil {
				errs = append(errs, err)
				break
			}
			var rec struct {
				ID   int64
				Name string
			}
			if err := json.Unmarshal(data, &rec); err != nil {
				errs = append(errs, fmt.Errorf("%s %d: %w", table, id, err))
			} else if rec.ID != id || rec.Name != name {
				errs = append(errs, fmt.Errorf("%s %d: row of %q holds record %d %q", table, id, name, rec.ID, rec.Name))
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
