package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxGroup is the most writes committed in one transaction.
const maxGroup = 128

// writeQueue holds the writes waiting to commit. The first writer that
// finds no committer becomes it: it commits every write waiting at that
// moment in one transaction (one pair of fsyncs for all; group commit),
// then hands the queue to the next waiting writer, if any. A lone write
// commits at once, so grouping adds no wait; it only shares the disk's
// sync among concurrent writers (ten builds running write ~15 records
// each: without it every one waits for the others' syncs in turn).
type writeQueue struct {
	mu      sync.Mutex
	waiting []*write     // guarded by mu
	leading bool         // guarded by mu; a writer is committing
	commits atomic.Int64 // transactions run by commit, for tests
}

// write is one call of update or batch.
type write struct {
	fn      func(*bolt.Tx) error
	publish func(emit) // nil: nothing to publish
	// rerun says fn may run again after its transaction was rolled back
	// (it sets, rather than accumulates, what it captures), so it can
	// share a transaction with others.
	rerun bool
	err   error
	done  bool          // err is known: committed, or failed on its own
	lead  bool          // set before wake: this writer commits next
	wake  chan struct{} // receives once: committed (err set) or lead
}

// update runs fn in a write transaction of its own and, once it has
// committed, calls publish (when events are published), before any other
// write commits; so events leave in commit order, never from inside a
// transaction, and never for a write that failed. fn runs once.
func (db *DB) update(fn func(tx *bolt.Tx) error, publish func(emit)) error {
	return db.write(&write{fn: fn, publish: publish})
}

// batch is update for a fn that may run more than once: it may share its
// transaction with other batch writes waiting at the same time; if one of
// them fails, the transaction is rolled back and each runs again alone, so
// each gets its own result. fn must set, not accumulate, what it captures.
func (db *DB) batch(fn func(tx *bolt.Tx) error, publish func(emit)) error {
	return db.write(&write{fn: fn, publish: publish, rerun: true})
}

func (db *DB) write(w *write) error {
	w.wake = make(chan struct{}, 1)
	q := &db.writes
	q.mu.Lock()
	q.waiting = append(q.waiting, w)
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	if !lead {
		<-w.wake
		if !w.lead {
			return w.err
		}
	}
	// Commit what waits now: w is first in the queue.
	q.mu.Lock()
	n := 1
	if w.rerun {
		for n < len(q.waiting) && n < maxGroup && q.waiting[n].rerun {
			n++
		}
	}
	group := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	q.mu.Unlock()

	// Even if a write panics (an HTTP handler's panic is recovered by
	// net/http), the queue goes on.
	defer db.handOff()
	db.commit(group)
	return w.err
}

// handOff makes the first waiting writer the next committer, or ends the
// committing when none waits.
func (db *DB) handOff() {
	q := &db.writes
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) > 0 {
		next := q.waiting[0]
		next.lead = true
		next.wake <- struct{}{}
		return
	}
	q.leading = false
	q.waiting = nil
}

// commit runs group's writes in one transaction and publishes their events
// in order; after a failure with more than one write, it runs each alone.
// It wakes every writer of the group but the first (the caller).
func (db *DB) commit(group []*write) {
	done := false
	defer func() {
		if done {
			return
		}
		// A write or a publication panicked: what was not committed
		// fails, and the writers waiting on this commit are told.
		r := recover()
		for _, w := range group[1:] {
			if !w.done {
				w.err = fmt.Errorf("store: a write committed with this one panicked: %v", r)
			}
			w.wake <- struct{}{}
		}
		panic(r)
	}()
	if db.events != nil {
		db.pubMu.Lock()
		defer db.pubMu.Unlock()
	}
	db.writes.commits.Add(1)
	start := time.Now()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, w := range group {
			if err := w.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if db.onCommit != nil {
		db.onCommit(time.Since(start))
	}
	if err != nil && len(group) > 1 {
		for _, w := range group {
			w.err, w.done = db.bolt.Update(w.fn), true
			db.published(w)
		}
	} else {
		for _, w := range group {
			w.err, w.done = err, true
		}
		for _, w := range group {
			db.published(w)
		}
	}
	done = true
	for _, w := range group[1:] {
		w.wake <- struct{}{}
	}
}

// published publishes w's events if it committed.
func (db *DB) published(w *write) {
	if w.err == nil && db.events != nil && w.publish != nil {
		w.publish(emit{db.events})
	}
}
