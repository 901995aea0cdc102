package build

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// tryAcquire takes reqs if they are available within a short wait.
func tryAcquire(t *testing.T, l *Locks, reqs ...LockRequest) (func(), bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	release, err := l.Acquire(ctx, reqs)
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("acquire: %v", err)
		}
		return nil, false
	}
	return release, true
}

func TestLocksAccess(t *testing.T) {
	t.Parallel()
	excl := func(name string) LockRequest { return LockRequest{Name: name, Max: 2} }
	count := func(name string) LockRequest { return LockRequest{Name: name, Max: 2, Counting: true} }
	onWorker := func(r LockRequest, w string, max int) LockRequest { r.Worker, r.Max = w, max; return r }
	tests := []struct {
		name string
		held []LockRequest
		want LockRequest
		ok   bool
	}{
		{"free", nil, excl("a"), true},
		{"exclusive held", []LockRequest{excl("a")}, excl("a"), false},
		{"exclusive blocks counting", []LockRequest{excl("a")}, count("a"), false},
		{"counting blocks exclusive", []LockRequest{count("a")}, excl("a"), false},
		{"counting below max", []LockRequest{count("a")}, count("a"), true},
		{"counting at max", []LockRequest{count("a"), count("a")}, count("a"), false},
		{"other lock", []LockRequest{excl("a")}, excl("b"), true},
		{"worker lock on another worker", []LockRequest{onWorker(excl("w"), "w1", 1)}, onWorker(excl("w"), "w2", 1), true},
		{"worker lock on the same worker", []LockRequest{onWorker(excl("w"), "w1", 1)}, onWorker(excl("w"), "w1", 1), false},
		{"per-worker max count", []LockRequest{onWorker(count("w"), "w1", 3), onWorker(count("w"), "w1", 3)}, onWorker(count("w"), "w1", 3), true},
		{"per-worker max count reached", []LockRequest{onWorker(count("w"), "w1", 1)}, onWorker(count("w"), "w1", 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := NewLocks()
			for _, h := range tt.held {
				if _, ok := tryAcquire(t, l, h); !ok {
					t.Fatalf("cannot take %+v", h)
				}
			}
			release, ok := tryAcquire(t, l, tt.want)
			if ok != tt.ok {
				t.Fatalf("acquire %+v with %+v held: %v, want %v", tt.want, tt.held, ok, tt.ok)
			}
			if ok {
				release()
			}
		})
	}
}

// TestLocksRelease: a release lets the waiter in; a cancelled waiter takes
// nothing and leaves no trace.
func TestLocksRelease(t *testing.T) {
	t.Parallel()
	l := NewLocks()
	a := LockRequest{Name: "a"}
	release, _ := tryAcquire(t, l, a)
	got := make(chan func())
	go func() {
		r, err := l.Acquire(t.Context(), []LockRequest{a})
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	// The cancelled waiter.
	ctx, cancel := context.WithCancelCause(t.Context())
	cerr := make(chan error)
	go func() {
		_, err := l.Acquire(ctx, []LockRequest{a, {Name: "b"}})
		cerr <- err
	}()
	stopped := errors.New("stopped")
	cancel(stopped)
	if err := <-cerr; !errors.Is(err, stopped) {
		t.Errorf("cancelled waiter: %v, want its cause", err)
	}
	release()
	release() // a second call does nothing
	r2 := <-got
	r2()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.locks) != 0 {
		t.Errorf("locks left: %v", l.locks)
	}
}

// TestLocksNoDeadlock: builds taking the same locks named in opposite
// orders, some exclusive and some counting, all finish, and exclusive
// holders never overlap anyone.
func TestLocksNoDeadlock(t *testing.T) {
	t.Parallel()
	l := NewLocks()
	var holders [2]atomic.Int32 // per lock: exclusive holders count -1000, counting ones +1
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			reqs := []LockRequest{{Name: "a", Max: 3, Counting: i%3 != 0}, {Name: "b", Max: 3, Counting: i%2 != 0}}
			if i%2 == 0 {
				reqs[0], reqs[1] = reqs[1], reqs[0]
			}
			release, err := l.Acquire(t.Context(), reqs)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range reqs {
				h := &holders[r.Name[0]-'a']
				if r.Counting {
					if n := h.Add(1); n < 0 || n > 3 {
						t.Errorf("lock %s: %d counting holders with an exclusive one or over max", r.Name, n)
					}
				} else if n := h.Add(-1000); n != -1000 {
					t.Errorf("lock %s: exclusive holder with others (%d)", r.Name, n)
				}
			}
			time.Sleep(time.Millisecond)
			for _, r := range reqs {
				h := &holders[r.Name[0]-'a']
				if r.Counting {
					h.Add(-1)
				} else {
					h.Add(1000)
				}
			}
			release()
		})
	}
	wg.Wait()
}

// TestLocksFIFO: an exclusive waiter is not starved by counting requests
// that arrive after it.
func TestLocksFIFO(t *testing.T) {
	t.Parallel()
	l := NewLocks()
	c := LockRequest{Name: "a", Max: 5, Counting: true}
	release, _ := tryAcquire(t, l, c)
	excl := make(chan func())
	go func() {
		r, err := l.Acquire(t.Context(), []LockRequest{{Name: "a", Max: 5}})
		if err != nil {
			t.Error(err)
		}
		excl <- r
	}()
	waitUntil(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.locks[lockKey{"a", ""}].waiting) == 1
	})
	if _, ok := tryAcquire(t, l, c); ok {
		t.Fatal("a counting request overtook a waiting exclusive one")
	}
	release()
	(<-excl)()
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	got := normalize([]LockRequest{{Name: "b", Counting: true}, {Name: "a", Counting: true, Max: 2}, {Name: "b"}, {Name: "a", Counting: true, Max: 2}})
	want := []LockRequest{{Name: "a", Counting: true, Max: 2}, {Name: "b", Max: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("normalize:\n%s", diff)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
