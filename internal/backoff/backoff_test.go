package backoff

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fail makes n failed attempts by key and returns how many Begin let
// through.
func fail(l *Limiter, key string, n int) int {
	through := 0
	for range n {
		if a, _, ok := l.Begin(key); ok {
			through++
			a.Failed()
		}
	}
	return through
}

func TestBurstThenWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Burst: 5, Every: 2 * time.Second})
		if got := fail(l, "10.0.0.1", 20); got != 5 {
			t.Fatalf("attempts let through of 20 failing at once: %d, want the burst of 5", got)
		}
		_, wait, ok := l.Begin("10.0.0.1")
		if ok || wait <= 0 || wait > 2*time.Second {
			t.Fatalf("attempt after the burst: ok %v wait %v, want refused for at most 2s", ok, wait)
		}
		// Another address is not slowed down by the first one's failures.
		if got := fail(l, "10.0.0.2", 5); got != 5 {
			t.Errorf("another address: %d of 5 let through", got)
		}
		// After the wait, one more attempt, and only one.
		time.Sleep(wait)
		if got := fail(l, "10.0.0.1", 3); got != 1 {
			t.Errorf("after waiting %v: %d attempts let through, want 1", wait, got)
		}
		// A long pause forgives everything.
		time.Sleep(10 * time.Second)
		if got := fail(l, "10.0.0.1", 10); got != 5 {
			t.Errorf("after 10s: %d attempts let through, want 5", got)
		}
	})
}

// Attempts that succeed cost nothing, and a key whose attempts all
// succeeded leaves no trace in the table.
func TestSucceeded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Burst: 3, Every: time.Minute})
		for i := range 100 {
			a, _, ok := l.Begin("10.0.0.1")
			if !ok {
				t.Fatalf("successful attempt %d refused", i)
			}
			a.Succeeded()
		}
		if n := l.Len(); n != 0 {
			t.Errorf("table after successes only: %d keys, want 0", n)
		}
		// Two failures, then a success: the failures still count.
		fail(l, "10.0.0.1", 2)
		a, _, ok := l.Begin("10.0.0.1")
		if !ok {
			t.Fatal("third attempt refused")
		}
		a.Succeeded()
		if got := fail(l, "10.0.0.1", 5); got != 1 {
			t.Errorf("after 2 failures and a success: %d attempts let through, want 1", got)
		}
	})
}

// The same, on the real clock, with time passing between the start of an
// attempt and its end.
func TestSucceededRealClock(t *testing.T) {
	t.Parallel()
	l := New(Config{Burst: 3, Every: time.Hour})
	for i := range 20 {
		a, _, ok := l.Begin("10.0.0.1")
		if !ok {
			t.Fatalf("successful attempt %d refused", i)
		}
		time.Sleep(time.Millisecond) // a password being checked
		a.Succeeded()
	}
	if n := l.Len(); n != 0 {
		t.Errorf("table after successes only: %d keys, want 0", n)
	}
}

// Attempts begun at once, from many goroutines, are counted before they
// are checked: no more than the burst get through.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	l := New(Config{Burst: 4, Every: time.Hour})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		through int
	)
	for range 50 {
		wg.Go(func() {
			if _, _, ok := l.Begin("::1"); ok {
				mu.Lock()
				through++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if through != 4 {
		t.Errorf("%d of 50 concurrent attempts let through, want 4", through)
	}
}

// The table never holds more than MaxKeys keys, however many addresses
// fail; the ones forgotten are those unused longest, so an address failing
// now stays braked.
func TestMaxKeys(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Burst: 2, Every: time.Hour, MaxKeys: 100})
		fail(l, "attacker", 2)
		// An attempt running while its key is pushed out of the table
		// still counts when it fails.
		running, _, _ := l.Begin("slow")
		for i := range 10_000 {
			fail(l, fmt.Sprintf("10.0.%d.%d", i/256, i%256), 1)
			if i%50 == 0 {
				if _, _, ok := l.Begin("attacker"); ok {
					t.Fatalf("the attacker got an attempt after %d other addresses", i)
				}
			}
		}
		if n := l.Len(); n != 100 {
			t.Errorf("table holds %d keys, want 100", n)
		}
		running.Failed()
		if got := fail(l, "slow", 3); got != 1 {
			t.Errorf("after a failure counted late: %d attempts let through, want 1", got)
		}
		// An address pushed out of the table gets a fresh burst.
		if got := fail(l, "10.0.0.0", 2); got != 2 {
			t.Errorf("a forgotten address: %d of 2 let through", got)
		}
	})
}

// With ShareOverflow, a full table forgets no failing key: the keys it
// has no room for share one bucket, so that an attacker's many addresses
// are braked as one; keys with nothing left to forgive make room again.
func TestShareOverflow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Burst: 2, Every: time.Hour, MaxKeys: 100, ShareOverflow: true})
		key := func(i int) string { return fmt.Sprintf("10.0.%d.%d", i/256, i%256) }
		shared := 0
		for i := range 150 {
			for range 2 {
				if a, _, ok := l.Begin(key(i)); ok && a.Failed() {
					shared++
				}
			}
		}
		if n := l.Len(); n != 100 {
			t.Errorf("table holds %d keys, want 100", n)
		}
		if shared != 2 {
			t.Errorf("%d failures counted on the shared bucket, want its burst of 2", shared)
		}
		for _, i := range []int{0, 99, 100, 149, 1000} {
			if _, _, ok := l.Begin(key(i)); ok {
				t.Errorf("key %d got an attempt after 150 keys failed their burst", i)
			}
		}
		// Once the failures are forgiven, a new key gets a bucket of its
		// own, and the table forgets the keys that need none.
		time.Sleep(2 * time.Hour)
		if got := fail(l, key(1000), 3); got != 2 {
			t.Errorf("a new key after the table was forgiven: %d of 3 let through, want 2", got)
		}
		if n := l.Len(); n != 1 {
			t.Errorf("table holds %d keys after all but one were forgiven, want 1", n)
		}
	})
}

func TestAddrKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:53412", "127.0.0.1"},
		{"127.0.0.1", "127.0.0.1"},
		{"[::1]:8010", "::/64"},
		{"[2001:db8:1:2:3:4:5:6]:1", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::9]:2", "2001:db8:1:2::/64"},
		{"[::ffff:10.1.2.3]:4", "10.1.2.3"},
		{"[fe80::1%eth0]:4", "fe80::/64"},
		{"@", "@"},
		{"", ""},
	} {
		if got := AddrKey(tt.addr); got != tt.want {
			t.Errorf("AddrKey(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// With ShareOverflow, a key that succeeded lately is not made to wait
// with the attacker when the table is full: it gets a bucket of its own
// (a worker that logged in before gets in again during a flood of wrong
// logins from more addresses than the table holds). A key that never
// succeeded still shares the overflow bucket.
func TestShareOverflowSparesSucceeded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Burst: 2, Every: time.Hour, MaxKeys: 100, ShareOverflow: true})
		a, _, ok := l.Begin("10.9.9.9")
		if !ok {
			t.Fatal("a first attempt was refused")
		}
		a.Succeeded()
		key := func(i int) string { return fmt.Sprintf("10.0.%d.%d", i/256, i%256) }
		for i := range 150 {
			fail(l, key(i), 2)
		}
		if _, _, ok := l.Begin("10.8.8.8"); ok {
			t.Error("a key that never succeeded got an attempt through the exhausted overflow bucket")
		}
		a, _, ok = l.Begin("10.9.9.9")
		if !ok {
			t.Fatal("a key that succeeded before waits with the attacker")
		}
		a.Succeeded()
		if n := l.Len(); n > 100 {
			t.Errorf("table holds %d keys, want at most 100", n)
		}
		// Its own bucket: its failures brake it as any key's do.
		if got := fail(l, "10.9.9.9", 3); got != 2 {
			t.Errorf("the key that succeeded failing: %d of 3 let through, want its burst of 2", got)
		}
	})
}
