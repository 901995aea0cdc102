package events

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// Event is one published change: Key is the routing key, path elements
// joined with "/" ("builds/12/finished", "logs/7/append"), and Record the
// record after the write that published it (a store.Build, store.Log…).
// Records are values and must not be changed once published.
type Event struct {
	ID     uint64
	Key    string
	Record any
}

// ErrGone is returned by Subscribe when the events after the given ID are no
// longer all in the ring (or the ID was never given out by this bus): the
// subscriber must reload its state instead of resuming.
var ErrGone = errors.New("events: event id no longer in the ring")

// ErrOverflow is what Subscription.Err returns after the bus dropped a
// subscriber that fell more than Config.Buffer events behind.
var ErrOverflow = errors.New("events: subscriber fell behind and was dropped")

// errClosed is what Subscription.Err returns after Close.
var errClosed = errors.New("events: subscription closed")

// Config configures a Bus.
type Config struct {
	// Size is how many recent events the bus keeps for resuming; zero
	// means 10,000.
	Size int
	// Buffer is how many events a subscriber may lag behind before it is
	// dropped; zero means 1,024.
	Buffer int
	// FirstID is the ID of the first event. Zero means the current Unix
	// time in microseconds, so that the IDs of a restarted master never
	// repeat those of an earlier run and a client resuming with an old ID
	// is told to reload.
	FirstID uint64
}

// Bus is an in-process publish/subscribe bus. It is safe for concurrent use.
type Bus struct {
	buffer int

	mu   sync.Mutex
	ring []Event                    // guarded by mu; circular, len(ring) is the capacity
	head int                        // guarded by mu; index of the oldest event in ring
	n    int                        // guarded by mu; events in ring
	last uint64                     // guarded by mu; ID of the last event published
	subs map[*Subscription]struct{} // guarded by mu
}

// New makes a Bus; it starts no goroutine.
func New(cfg Config) *Bus {
	size := cfg.Size
	if size <= 0 {
		size = 10000
	}
	buffer := cfg.Buffer
	if buffer <= 0 {
		buffer = 1024
	}
	first := cfg.FirstID
	if first == 0 {
		first = uint64(time.Now().UnixMicro())
	}
	return &Bus{
		buffer: buffer,
		ring:   make([]Event, size),
		last:   first - 1,
		subs:   map[*Subscription]struct{}{},
	}
}

// Publish sends an event with the next ID to every subscriber whose
// patterns match key, and keeps it in the ring. It never blocks: a
// subscriber whose buffer is full is dropped (its channel closed, its Err
// ErrOverflow).
func (b *Bus) Publish(key string, record any) {
	elems := strings.Split(key, "/")
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last++
	ev := Event{ID: b.last, Key: key, Record: record}
	if b.n < len(b.ring) {
		b.ring[(b.head+b.n)%len(b.ring)] = ev
		b.n++
	} else {
		b.ring[b.head] = ev
		b.head = (b.head + 1) % len(b.ring)
	}
	for s := range b.subs {
		if !s.matches(elems) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			b.dropLocked(s, ErrOverflow)
		}
	}
}

// Last returns the ID of the last event published: subscribing after it
// delivers only events published from then on.
func (b *Bus) Last() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// Since reports whether a subscriber that has seen every event up to id can
// resume after it: every later event is still in the ring.
func (b *Bus) Since(id uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sinceLocked(id)
}

func (b *Bus) sinceLocked(id uint64) bool {
	oldest := b.last + 1 - uint64(b.n) // ID of the oldest event kept, or last+1
	return id <= b.last && id+1 >= oldest
}

// Subscribe returns a subscription to the events whose keys match one of
// patterns (see Match). after is the ID of the last event the subscriber
// has seen: the matching events after it that are in the ring are
// delivered first, then live ones, in ID order; pass Last() to start now.
// If events after it have left the ring, or it is not an ID of this bus,
// Subscribe returns ErrGone. The subscription ends, its channel closed,
// when ctx is done, on Close, or when it falls Config.Buffer events behind.
func (b *Bus) Subscribe(ctx context.Context, patterns []string, after uint64) (*Subscription, error) {
	s := &Subscription{bus: b}
	for _, p := range patterns {
		s.addLocked(p)
	}
	b.mu.Lock()
	if !b.sinceLocked(after) {
		b.mu.Unlock()
		return nil, ErrGone
	}
	var replay []Event
	for i := range b.n {
		ev := b.ring[(b.head+i)%len(b.ring)]
		if ev.ID > after && s.matches(strings.Split(ev.Key, "/")) {
			replay = append(replay, ev)
		}
	}
	ch := make(chan Event, b.buffer+len(replay))
	for _, ev := range replay {
		ch <- ev
	}
	s.ch, s.C = ch, ch
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	s.stopCtx = context.AfterFunc(ctx, func() { b.drop(s, ctx.Err()) })
	return s, nil
}

func (b *Bus) drop(s *Subscription, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropLocked(s, err)
}

func (b *Bus) dropLocked(s *Subscription, err error) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	s.err = err
	close(s.ch)
}

// Subscription is one subscriber's view of a Bus. Its methods are safe for
// concurrent use.
type Subscription struct {
	// C delivers the events, in ID order. It is closed when the
	// subscription ends; Err then says why.
	C <-chan Event

	bus     *Bus
	stopCtx func() bool
	// Guarded by bus.mu:
	ch       chan Event
	err      error
	patterns [][]string
}

// Add adds a pattern; events published from now on that match it are
// delivered. Adding a pattern twice changes nothing.
func (s *Subscription) Add(pattern string) {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.addLocked(pattern)
}

func (s *Subscription) addLocked(pattern string) {
	p := strings.Split(pattern, "/")
	if !slices.ContainsFunc(s.patterns, func(q []string) bool { return slices.Equal(p, q) }) {
		s.patterns = append(s.patterns, p)
	}
}

// Remove removes a pattern and reports whether the subscription had it.
func (s *Subscription) Remove(pattern string) bool {
	p := strings.Split(pattern, "/")
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	n := len(s.patterns)
	s.patterns = slices.DeleteFunc(s.patterns, func(q []string) bool { return slices.Equal(p, q) })
	return len(s.patterns) < n
}

// Patterns returns the subscription's patterns, in the order they were added.
func (s *Subscription) Patterns() []string {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	out := make([]string, len(s.patterns))
	for i, p := range s.patterns {
		out[i] = strings.Join(p, "/")
	}
	return out
}

// Close ends the subscription and closes C. Closing twice is harmless.
func (s *Subscription) Close() {
	s.stopCtx()
	s.bus.drop(s, errClosed)
}

// Err says why C was closed: ErrOverflow when the subscriber fell behind,
// the context's error when it was done, another error after Close; nil
// while the subscription runs.
func (s *Subscription) Err() error {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.err
}

// matches reports whether the key split into elems matches one of the
// patterns; the caller holds bus.mu.
func (s *Subscription) matches(elems []string) bool {
	for _, p := range s.patterns {
		if matchElems(p, elems) {
			return true
		}
	}
	return false
}

// Match reports whether key matches pattern as buildbot's message queue
// matches routing keys: both have the same number of "/"-separated
// elements, and each element of pattern is "*" or equal to the key's.
func Match(pattern, key string) bool {
	return matchElems(strings.Split(pattern, "/"), strings.Split(key, "/"))
}

func matchElems(pattern, key []string) bool {
	if len(pattern) != len(key) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && p != key[i] {
			return false
		}
	}
	return true
}
