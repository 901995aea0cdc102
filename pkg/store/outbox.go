package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The outbox holds the events reporters tell forges and people about. An
// entry is written in the transaction of the build event that causes it,
// when the outbox is on (SetOutbox): so a crash between the event and its
// report loses nothing. An entry names its event only (ids, a worker's
// name): what a reporter sends is read from the store when it delivers,
// and no rendered URL, token or password is ever stored.
//
// Each reporter reads the outbox in order from its cursor; what it did
// with an entry it wanted is a Delivery.
const (
	bucketOutbox         = "outbox"          // seq → OutboxEntry
	bucketOutboxFinished = "outbox_finished" // buildid → seq of its Finished entry
	bucketOutboxCursor   = "outbox_cursor"   // reporter → seq of the last entry it is done with
	bucketDelivery       = "delivery"        // buildid|seq|reporter → Delivery
	bucketDeliveryFailed = "delivery_failed" // buildid|seq|reporter → "": given up
)

func outboxBuckets() []string {
	return []string{bucketOutbox, bucketOutboxFinished, bucketOutboxCursor, bucketDelivery, bucketDeliveryFailed}
}

// Outbox events.
const (
	OutboxStarted       = "started"        // a build started
	OutboxFinished      = "finished"       // a build finished
	OutboxWorkerMissing = "worker_missing" // a worker stayed away past its missing_timeout
)

// OutboxEntry is one event waiting for the reporters.
type OutboxEntry struct {
	Seq     int64     // from 1, in commit order
	Event   string    // OutboxStarted, OutboxFinished or OutboxWorkerMissing
	BuildID int64     // for OutboxStarted and OutboxFinished
	Worker  string    // for OutboxWorkerMissing: the worker's name
	At      time.Time // when the event happened
	// LastSeen is, for OutboxWorkerMissing, when the worker was last
	// connected.
	LastSeen time.Time `json:",omitzero"`
}

// Delivery states.
const (
	DeliveryPending    = "pending"    // being tried; LastError says why the last try failed
	DeliveryDelivered  = "delivered"  // the endpoint took it
	DeliveryFailed     = "failed"     // given up: a permanent error, or retry_for ran out
	DeliverySuperseded = "superseded" // a Started not sent because its build's Finished came first
)

// Delivery is what one reporter did with one outbox entry it wanted.
type Delivery struct {
	Reporter    string
	Seq         int64 // the outbox entry's
	BuildID     int64 // 0 for a worker's event
	Event       string
	Worker      string `json:",omitempty"`
	State       string
	Attempts    int
	LastError   string    `json:",omitempty"` // never holds a secret: the senders' errors name no token or rendered URL
	CreatedAt   time.Time // first try
	UpdatedAt   time.Time
	NextAt      time.Time `json:",omitzero"` // the next try, while pending
	DeliveredAt time.Time `json:",omitzero"`
}

// SetOutbox turns the outbox on (notify not nil) or off. While it is on,
// every build start and finish, and AddWorkerMissing, writes an entry,
// then calls notify once the entry has committed; notify must not block.
// Off, nothing is written (no reporter is configured).
func (db *DB) SetOutbox(notify func()) {
	if notify == nil {
		db.outbox.Store(nil)
		return
	}
	db.outbox.Store(&notify)
}

// outboxOn reports whether entries are written now.
func (db *DB) outboxOn() bool { return db.outbox.Load() != nil }

// notifyOutbox tells the reporters that entries have committed.
func (db *DB) notifyOutbox() {
	if f := db.outbox.Load(); f != nil {
		(*f)()
	}
}

// addOutbox writes e as the next outbox entry, in tx.
func addOutbox(tx *bolt.Tx, e OutboxEntry) error {
	seq, err := nextID(tx, bucketOutbox)
	if err != nil {
		return err
	}
	e.Seq = seq
	if e.Event == OutboxFinished {
		if err := bucket(tx, bucketOutboxFinished).Put(itob(e.BuildID), itob(seq)); err != nil {
			return err
		}
	}
	return put(tx, bucketOutbox, seq, &e)
}

// AddWorkerMissing writes a WorkerMissing outbox entry for the worker
// name, last connected at lastSeen, when the outbox is on.
func (db *DB) AddWorkerMissing(name string, lastSeen time.Time) error {
	if !db.outboxOn() {
		return nil
	}
	err := db.update(func(tx *bolt.Tx) error {
		return addOutbox(tx, OutboxEntry{Event: OutboxWorkerMissing, Worker: name, At: at(time.Time{}), LastSeen: lastSeen.UTC()})
	}, nil)
	if err != nil {
		return fmt.Errorf("add worker missing %s: %w", name, err)
	}
	db.notifyOutbox()
	return nil
}

// OutboxAfter lists at most limit outbox entries after seq, in order.
func (db *DB) OutboxAfter(seq int64, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := db.bolt.View(func(tx *bolt.Tx) error {
		out = nil
		c := bucket(tx, bucketOutbox).Cursor()
		for k, v := c.Seek(itob(seq + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode outbox %d: %w", btoi(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// OutboxFinishedSeq returns the seq of the Finished entry of build id, if
// the outbox has one.
func (db *DB) OutboxFinishedSeq(buildID int64) (int64, bool, error) {
	var seq int64
	var ok bool
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if v := bucket(tx, bucketOutboxFinished).Get(itob(buildID)); v != nil {
			seq, ok = btoi(v), true
		}
		return nil
	})
	return seq, ok, err
}

// OutboxCursor returns the cursor of reporter: the seq of the last entry
// it is done with. A reporter without one gets one at the outbox's end
// (a new reporter reports what happens from now on).
func (db *DB) OutboxCursor(reporter string) (int64, error) {
	var seq int64
	err := db.update(func(tx *bolt.Tx) error {
		cb := bucket(tx, bucketOutboxCursor)
		if v := cb.Get([]byte(reporter)); v != nil {
			seq = btoi(v)
			return nil
		}
		seq = int64(bucket(tx, bucketOutbox).Sequence())
		return cb.Put([]byte(reporter), itob(seq))
	}, nil)
	if err != nil {
		return 0, fmt.Errorf("outbox cursor of %s: %w", reporter, err)
	}
	return seq, nil
}

// SkipOutbox moves reporter's cursor to seq: an entry it does not want.
func (db *DB) SkipOutbox(reporter string, seq int64) error {
	err := db.batch(func(tx *bolt.Tx) error {
		return bucket(tx, bucketOutboxCursor).Put([]byte(reporter), itob(seq))
	}, nil)
	if err != nil {
		return fmt.Errorf("skip outbox entry %d of %s: %w", seq, reporter, err)
	}
	return nil
}

func deliveryKey(d Delivery) []byte {
	return append(key2(d.BuildID, d.Seq), d.Reporter...)
}

// SaveDelivery records d; when done (delivered, failed or superseded),
// it also moves the reporter's cursor to d.Seq, in the same transaction.
func (db *DB) SaveDelivery(d Delivery, done bool) error {
	err := db.batch(func(tx *bolt.Tx) error {
		k := deliveryKey(d)
		if err := put2(tx, bucketDelivery, k, &d); err != nil {
			return err
		}
		fb := bucket(tx, bucketDeliveryFailed)
		if d.State == DeliveryFailed {
			if err := fb.Put(k, nil); err != nil {
				return err
			}
		} else if err := fb.Delete(k); err != nil {
			return err
		}
		if done {
			return bucket(tx, bucketOutboxCursor).Put([]byte(d.Reporter), itob(d.Seq))
		}
		return nil
	}, nil)
	if err != nil {
		return fmt.Errorf("save delivery %d of %s: %w", d.Seq, d.Reporter, err)
	}
	return nil
}

// put2 encodes v under key k of bucket name.
func put2(tx *bolt.Tx, name string, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return bucket(tx, name).Put(k, data)
}

// Delivery returns reporter's delivery of the outbox entry seq about
// build buildID (0 for a worker's event), if any.
func (db *DB) Delivery(reporter string, buildID, seq int64) (Delivery, bool, error) {
	var d Delivery
	var ok bool
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := bucket(tx, bucketDelivery).Get(append(key2(buildID, seq), reporter...))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &d)
	})
	if err != nil {
		return Delivery{}, false, fmt.Errorf("get delivery: %w", err)
	}
	return d, ok, nil
}

// Deliveries lists the deliveries of build id's reports, in outbox order.
func (db *DB) Deliveries(buildID int64) ([]Delivery, error) {
	var out []Delivery
	err := db.bolt.View(func(tx *bolt.Tx) error {
		out = nil
		prefix := itob(buildID)
		c := bucket(tx, bucketDelivery).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var d Delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode delivery %x: %w", k, err)
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list deliveries of build %d: %w", buildID, err)
	}
	return out, nil
}

// FailedDeliveries counts the deliveries given up.
func (db *DB) FailedDeliveries() (int, error) {
	n := 0
	err := db.bolt.View(func(tx *bolt.Tx) error {
		n = bucket(tx, bucketDeliveryFailed).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count failed deliveries: %w", err)
	}
	return n, nil
}

// deleteDeliveries deletes the deliveries of build id (the janitor
// deleting it).
func deleteDeliveries(tx *bolt.Tx, buildID int64) error {
	for _, name := range []string{bucketDelivery, bucketDeliveryFailed} {
		if err := deleteAll(tx, name, itob(buildID)); err != nil {
			return err
		}
	}
	return nil
}

// PruneOutbox forgets the cursors of reporters not in keep, giving up
// their pending deliveries, and deletes the entries every kept reporter
// is done with (all of them when keep is empty). Deliveries stay.
func (db *DB) PruneOutbox(keep []string) error {
	err := db.update(func(tx *bolt.Tx) error {
		cb := bucket(tx, bucketOutboxCursor)
		kept := map[string]bool{}
		for _, r := range keep {
			kept[r] = true
		}
		var drop [][]byte
		low := int64(bucket(tx, bucketOutbox).Sequence())
		cb.ForEach(func(k, v []byte) error {
			if !kept[string(k)] {
				drop = append(drop, bytes.Clone(k))
			} else {
				low = min(low, btoi(v))
			}
			return nil
		})
		for _, k := range drop {
			if err := cb.Delete(k); err != nil {
				return err
			}
		}
		if len(drop) > 0 {
			if err := dropPending(tx, drop, at(time.Time{})); err != nil {
				return err
			}
		}
		for _, r := range keep {
			if cb.Get([]byte(r)) == nil {
				low = 0 // a reporter not started yet
			}
		}
		ob := bucket(tx, bucketOutbox)
		fb := bucket(tx, bucketOutboxFinished)
		c := ob.Cursor()
		for k, v := c.First(); k != nil && btoi(k) <= low; k, v = c.First() {
			var e OutboxEntry
			if json.Unmarshal(v, &e) == nil && e.Event == OutboxFinished {
				if err := fb.Delete(itob(e.BuildID)); err != nil {
					return err
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		return fmt.Errorf("prune outbox: %w", err)
	}
	return nil
}

// dropPending gives up the pending deliveries of the reporters named in
// gone (removed from the config) at now.
func dropPending(tx *bolt.Tx, gone [][]byte, now time.Time) error {
	names := map[string]bool{}
	for _, g := range gone {
		names[string(g)] = true
	}
	db, fb := bucket(tx, bucketDelivery), bucket(tx, bucketDeliveryFailed)
	type update struct {
		k []byte
		d Delivery
	}
	var ups []update
	err := db.ForEach(func(k, v []byte) error {
		if len(k) < 16 || !names[string(k[16:])] {
			return nil
		}
		var d Delivery
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("decode delivery %x: %w", k, err)
		}
		if d.State == DeliveryPending {
			d.State, d.UpdatedAt, d.NextAt = DeliveryFailed, now, time.Time{}
			d.LastError = strings.TrimSpace("reporter removed from the config; " + d.LastError)
			ups = append(ups, update{bytes.Clone(k), d})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range ups {
		if err := put2(tx, bucketDelivery, u.k, &u.d); err != nil {
			return err
		}
		if err := fb.Put(u.k, nil); err != nil {
			return err
		}
	}
	return nil
}
