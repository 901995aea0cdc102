package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, key string
		want         bool
	}{
		{"builds/*/*", "builds/12/finished", true},
		{"builds/12/*", "builds/12/new", true},
		{"builds/12/*", "builds/13/new", false},
		{"builds/*/finished", "builds/12/new", false},
		{"builds/*", "builds/12/new", false},
		{"builds/*/*/*", "builds/12/new", false},
		{"builders/3/builds/*/*", "builders/3/builds/7/new", true},
		{"builders/3/builds/*/*", "builders/4/builds/7/new", false},
		{"*/*/*", "logs/5/append", true},
		{"logs/5/append", "logs/5/append", true},
	} {
		if got := Match(tc.pattern, tc.key); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.key, got, tc.want)
		}
	}
}

// keys drains n events from s and returns their keys and ids.
func recv(t *testing.T, s *Subscription, n int) []Event {
	t.Helper()
	var out []Event
	for range n {
		ev, ok := <-s.C
		if !ok {
			t.Fatalf("channel closed after %d events: %v", len(out), s.Err())
		}
		out = append(out, ev)
	}
	return out
}

func keysOf(evs []Event) []string {
	var ks []string
	for _, ev := range evs {
		ks = append(ks, ev.Key)
	}
	return ks
}

// pending returns the events already buffered in s.
func pending(s *Subscription) []Event {
	var out []Event
	for {
		select {
		case ev, ok := <-s.C:
			if !ok {
				return out
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}

func TestPublishSubscribe(t *testing.T) {
	t.Parallel()
	b := New(Config{FirstID: 1})
	s, err := b.Subscribe(t.Context(), []string{"builds/*/*", "logs/5/append"}, b.Last())
	if err != nil {
		t.Fatal(err)
	}
	b.Publish("builds/1/new", 1)
	b.Publish("steps/1/new", 2)
	b.Publish("logs/5/append", 3)
	b.Publish("logs/6/append", 4)
	b.Publish("builds/1/finished", 5)
	got := recv(t, s, 3)
	want := []Event{{1, "builds/1/new", 1}, {3, "logs/5/append", 3}, {5, "builds/1/finished", 5}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if b.Last() != 5 {
		t.Errorf("Last() = %d, want 5", b.Last())
	}

	s.Add("steps/*/*")
	s.Add("steps/*/*")
	if !s.Remove("builds/*/*") || s.Remove("builds/*/*") {
		t.Error("Remove reports wrongly")
	}
	if d := cmp.Diff([]string{"logs/5/append", "steps/*/*"}, s.Patterns()); d != "" {
		t.Errorf("patterns (-want +got):\n%s", d)
	}
	b.Publish("builds/2/new", nil)
	b.Publish("steps/2/new", nil)
	if d := cmp.Diff([]string{"steps/2/new"}, keysOf(recv(t, s, 1))); d != "" {
		t.Errorf("after add/remove (-want +got):\n%s", d)
	}
	if p := pending(s); len(p) != 0 {
		t.Errorf("unexpected events %v", p)
	}
}

// A subscriber resuming after an ID gets exactly the matching events after
// it, then live ones, in order.
func TestResume(t *testing.T) {
	t.Parallel()
	b := New(Config{Size: 5, FirstID: 100})
	for i := range 4 {
		b.Publish(fmt.Sprintf("builds/%d/new", i), i) // ids 100..103
	}
	for _, tc := range []struct {
		after uint64
		want  []uint64
		err   error
	}{
		{after: 99, want: []uint64{100, 101, 102, 103}},
		{after: 101, want: []uint64{102, 103}},
		{after: 103},
		{after: 104, err: ErrGone},
		{after: 7, err: ErrGone},
	} {
		s, err := b.Subscribe(t.Context(), []string{"builds/*/*"}, tc.after)
		if !errors.Is(err, tc.err) {
			t.Fatalf("after %d: err %v, want %v", tc.after, err, tc.err)
		}
		if err != nil {
			continue
		}
		var ids []uint64
		for _, ev := range pending(s) {
			ids = append(ids, ev.ID)
		}
		if d := cmp.Diff(tc.want, ids); d != "" {
			t.Errorf("after %d (-want +got):\n%s", tc.after, d)
		}
		s.Close()
	}
	// Two more: the ring holds 102..106 now, so 100 is gone and 101 is
	// the oldest resumable.
	b.Publish("builds/4/new", 4)
	b.Publish("builds/5/new", 5)
	b.Publish("builds/6/new", 6)
	if b.Since(100) || !b.Since(101) || !b.Since(106) || b.Since(107) {
		t.Errorf("Since wrong around the ring's ends (last %d)", b.Last())
	}
	if _, err := b.Subscribe(t.Context(), nil, 100); !errors.Is(err, ErrGone) {
		t.Errorf("resume from 100: %v, want ErrGone", err)
	}
	s, err := b.Subscribe(t.Context(), []string{"builds/*/new"}, 101)
	if err != nil {
		t.Fatal(err)
	}
	b.Publish("builds/7/new", 7)
	var ids []uint64
	for _, ev := range recv(t, s, 6) {
		ids = append(ids, ev.ID)
	}
	if d := cmp.Diff([]uint64{102, 103, 104, 105, 106, 107}, ids); d != "" {
		t.Errorf("resume then live (-want +got):\n%s", d)
	}
}

func TestFirstIDFromClock(t *testing.T) {
	t.Parallel()
	a := New(Config{})
	a.Publish("x/1/new", nil)
	b := New(Config{})
	if b.Last() < a.Last() {
		t.Errorf("a later bus starts at %d, before the earlier bus's %d", b.Last(), a.Last())
	}
	if b.Since(a.Last()) {
		t.Error("a later bus resumes an ID of an earlier one")
	}
}

// A subscriber that does not read is dropped; Publish does not block and
// the others go on.
func TestOverflow(t *testing.T) {
	t.Parallel()
	b := New(Config{Buffer: 3, FirstID: 1})
	slow, err := b.Subscribe(t.Context(), []string{"a/*"}, b.Last())
	if err != nil {
		t.Fatal(err)
	}
	fast, err := b.Subscribe(t.Context(), []string{"a/*"}, b.Last())
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for i := range 10 {
		b.Publish(fmt.Sprintf("a/%d", i), nil)
		for _, ev := range pending(fast) {
			got = append(got, ev.ID)
		}
	}
	if len(got) != 10 {
		t.Errorf("fast subscriber got %v", got)
	}
	if n := len(pending(slow)); n != 3 {
		t.Errorf("slow subscriber had %d events buffered, want 3", n)
	}
	if _, ok := <-slow.C; ok {
		t.Error("slow subscriber's channel still open")
	}
	if !errors.Is(slow.Err(), ErrOverflow) {
		t.Errorf("slow.Err() = %v, want ErrOverflow", slow.Err())
	}
	if fast.Err() != nil {
		t.Errorf("fast.Err() = %v", fast.Err())
	}
	// It resumes from the ring after the last event it read.
	again, err := b.Subscribe(t.Context(), []string{"a/*"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pending(again)); n != 7 {
		t.Errorf("resumed subscriber got %d events, want 7", n)
	}
}

func TestEndByContextAndClose(t *testing.T) {
	t.Parallel()
	b := New(Config{FirstID: 1})
	ctx, cancel := context.WithCancel(t.Context())
	s, err := b.Subscribe(ctx, []string{"*/*"}, b.Last())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range s.C {
	}
	if !errors.Is(s.Err(), context.Canceled) {
		t.Errorf("Err() = %v, want context.Canceled", s.Err())
	}
	s2, err := b.Subscribe(t.Context(), []string{"*/*"}, b.Last())
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	s2.Close()
	if _, ok := <-s2.C; ok {
		t.Error("channel open after Close")
	}
	b.Publish("a/b", nil) // no panic on a closed subscriber
	b.mu.Lock()
	n := len(b.subs)
	b.mu.Unlock()
	if n != 0 {
		t.Errorf("%d subscribers left", n)
	}
}

// Many publishers and subscribers at once: every subscriber sees every
// event once, in increasing ID order.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	b := New(Config{Buffer: 100000, FirstID: 1})
	const pubs, each, subs = 8, 500, 8
	var ss []*Subscription
	for range subs {
		s, err := b.Subscribe(t.Context(), []string{"k/*/*"}, b.Last())
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			for i := range each {
				b.Publish(fmt.Sprintf("k/%d/%d", p, i), i)
			}
		})
	}
	results := make([]int, subs)
	for i, s := range ss {
		wg.Go(func() {
			var last uint64
			for range pubs * each {
				ev := <-s.C
				if ev.ID <= last {
					t.Errorf("subscriber %d: id %d after %d", i, ev.ID, last)
				}
				last = ev.ID
				results[i]++
			}
		})
	}
	wg.Wait()
	for i, n := range results {
		if n != pubs*each {
			t.Errorf("subscriber %d got %d events", i, n)
		}
	}
}
