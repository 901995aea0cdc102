package build

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// LockRequest asks for one lock: a master lock, or a worker lock on one
// worker, with exclusive or counting access, as buildbot's LockAccess.
type LockRequest struct {
	Name     string
	Worker   string // the worker of a worker lock; "" for a master lock
	Max      int    // how many counting holders the lock takes at most; less than 1 means 1
	Counting bool   // counting (shared) access; false means exclusive
}

func (r LockRequest) key() lockKey { return lockKey{r.Name, r.Worker} }

type lockKey struct{ name, worker string }

// Locks hands out master and worker locks, as buildbot's locks: any number
// of counting holders up to the lock's max count, or one exclusive holder.
// Waiters are served in arrival order on each lock, and a request's locks
// are taken all at once when all are available, so two requests cannot
// deadlock. The zero value is not usable; use NewLocks. It is safe for
// concurrent use.
type Locks struct {
	mu      sync.Mutex
	locks   map[lockKey]*lockState // guarded by mu; created on demand, dropped when unused
	changed chan struct{}          // guarded by mu; closed (and replaced) whenever a lock is released or a waiter leaves
}

type lockState struct {
	counting  int // counting holders
	exclusive int // exclusive holders: 0 or 1
	waiting   []*lockWaiter
}

type lockWaiter struct{ counting bool }

// NewLocks makes an empty lock table.
func NewLocks() *Locks {
	return &Locks{locks: map[lockKey]*lockState{}, changed: make(chan struct{})}
}

// Acquire waits until every lock of reqs is available to it, then takes
// them all and returns the func that releases them (call it once). Locks
// asked twice in reqs are taken with the stronger access. If ctx is done
// first, it takes none and returns ctx's cause.
func (l *Locks) Acquire(ctx context.Context, reqs []LockRequest) (release func(), err error) {
	reqs = normalize(reqs)
	if len(reqs) == 0 {
		return func() {}, nil
	}
	w := make([]*lockWaiter, len(reqs))
	l.mu.Lock()
	for i, r := range reqs {
		w[i] = &lockWaiter{counting: r.Counting}
		st := l.state(r.key())
		st.waiting = append(st.waiting, w[i])
	}
	for {
		if l.available(reqs, w) {
			for i, r := range reqs {
				st := l.locks[r.key()]
				st.waiting = slices.DeleteFunc(st.waiting, func(x *lockWaiter) bool { return x == w[i] })
				if r.Counting {
					st.counting++
				} else {
					st.exclusive++
				}
			}
			// Taking them may have let the next waiters in line (counting
			// ones behind this one) be available too.
			l.broadcast()
			l.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { l.release(reqs) }) }, nil
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
			l.mu.Lock()
		case <-ctx.Done():
			l.mu.Lock()
			for i, r := range reqs {
				st := l.locks[r.key()]
				st.waiting = slices.DeleteFunc(st.waiting, func(x *lockWaiter) bool { return x == w[i] })
				l.drop(r.key())
			}
			l.broadcast()
			l.mu.Unlock()
			return nil, context.Cause(ctx)
		}
	}
}

// normalize sorts reqs by name then worker, the one global order, and
// merges a lock asked twice into one request with the stronger access.
func normalize(reqs []LockRequest) []LockRequest {
	sorted := slices.Clone(reqs)
	slices.SortStableFunc(sorted, func(a, b LockRequest) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Worker, b.Worker))
	})
	var out []LockRequest
	for _, r := range sorted {
		r.Max = max(r.Max, 1)
		if n := len(out); n > 0 && out[n-1].key() == r.key() {
			out[n-1].Counting = out[n-1].Counting && r.Counting
			continue
		}
		out = append(out, r)
	}
	return out
}

// available says whether every lock of reqs can be taken by the waiters w,
// as buildbot's isAvailable: counting access needs no exclusive holder,
// room for it and the waiters ahead of it, and only counting waiters
// ahead; exclusive access needs no holder and no waiter ahead. l.mu must
// be held.
func (l *Locks) available(reqs []LockRequest, w []*lockWaiter) bool {
	for i, r := range reqs {
		st := l.locks[r.key()]
		ahead := st.waiting[:slices.Index(st.waiting, w[i])]
		if st.exclusive > 0 {
			return false
		}
		if !r.Counting {
			if st.counting > 0 || len(ahead) > 0 {
				return false
			}
			continue
		}
		if st.counting+len(ahead)+1 > r.Max {
			return false
		}
		for _, a := range ahead {
			if !a.counting {
				return false
			}
		}
	}
	return true
}

func (l *Locks) release(reqs []LockRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range reqs {
		st := l.locks[r.key()]
		if r.Counting {
			st.counting--
		} else {
			st.exclusive--
		}
		l.drop(r.key())
	}
	l.broadcast()
}

// state returns the state of a lock, creating it. l.mu must be held.
func (l *Locks) state(k lockKey) *lockState {
	st, ok := l.locks[k]
	if !ok {
		st = &lockState{}
		l.locks[k] = st
	}
	return st
}

// drop forgets a lock nobody holds or waits for. l.mu must be held.
func (l *Locks) drop(k lockKey) {
	if st := l.locks[k]; st != nil && st.counting == 0 && st.exclusive == 0 && len(st.waiting) == 0 {
		delete(l.locks, k)
	}
}

// broadcast wakes every waiter to look again. l.mu must be held.
func (l *Locks) broadcast() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// lockRequests turns the lock accesses of a builder or step into requests,
// with the max counts of their definitions, for a build on worker.
func lockRequests(defs map[string]config.Lock, accesses []config.LockAccess, worker string) []LockRequest {
	var reqs []LockRequest
	for _, a := range accesses {
		def, ok := defs[a.Name]
		if !ok {
			continue // the config checks names; a reconfig may drop one
		}
		r := LockRequest{Name: a.Name, Max: def.MaxCount, Counting: a.Access == config.AccessCounting}
		if def.Type == config.LockWorker {
			r.Worker = worker
			if n, ok := def.MaxCountForWorker[worker]; ok {
				r.Max = n
			}
		}
		reqs = append(reqs, r)
	}
	return reqs
}

// acquireLocks takes the locks of accesses for the build (or one of its
// steps), waiting as long as it takes; the worker stays reserved for the
// build meanwhile, as in buildbot. It returns the release func, or the
// result the build (or step) ends with when it cannot wait any longer:
// CANCELLED when stopped, RETRY when the worker is lost or the master
// shuts down.
func (b *build) acquireLocks(ctx context.Context, accesses []config.LockAccess) (release func(), results int, ok bool) {
	b.e.mu.Lock()
	defs := b.e.lockDefs
	b.e.mu.Unlock()
	reqs := lockRequests(defs, accesses, b.worker)
	if len(reqs) == 0 {
		return func() {}, store.Success, true
	}
	actx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil) // runs before wg.Wait
	wg.Go(func() {
		select {
		case <-b.ws.conn.Done():
			cancel(protocol.ErrConnectionLost)
		case <-actx.Done():
		}
	})
	release, err := b.e.locks.Acquire(actx, reqs)
	if err == nil {
		return release, store.Success, true
	}
	var sc *stopCause
	if errors.As(err, &sc) {
		return nil, store.Cancelled, false
	}
	return nil, store.Retry, false
}

// runLocked runs the build's steps holding the builder's locks.
func (b *build) runLocked(ctx context.Context) int {
	if len(b.cfg.Locks) == 0 {
		return b.runSteps(ctx)
	}
	sctx, done, ok := b.stepContext(false)
	if !ok {
		return store.Cancelled
	}
	b.check(b.e.st.SetBuildStateString(b.id, "waiting for locks"))
	release, results, ok := b.acquireLocks(sctx, b.cfg.Locks)
	done()
	if !ok {
		return results
	}
	return releaseUnlessDetached(release, b.runSteps(ctx))
}

// releaseUnlessDetached releases locks once what held them ended with
// results, and returns results. A step left to its worker while the master
// stops (finish_steps_on_restart) keeps its build's locks until the master
// exits, so that no other build takes them meanwhile; the restarted master
// takes them again at Recover.
func releaseUnlessDetached(release func(), results int) int {
	if results != resultDetached {
		release()
	}
	return results
}

// runStepLocked runs one step holding its locks.
func (b *build) runStepLocked(ctx context.Context, sc config.Step) int {
	if len(sc.Locks) == 0 {
		return b.runStep(ctx, sc)
	}
	b.check(b.e.st.SetBuildStateString(b.id, sc.Name+": waiting for locks"))
	release, results, ok := b.acquireLocks(ctx, sc.Locks)
	if !ok {
		return results
	}
	b.check(b.e.st.SetBuildStateString(b.id, sc.Name))
	return releaseUnlessDetached(release, b.runStep(ctx, sc))
}
