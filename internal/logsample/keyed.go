package logsample

import (
	"container/list"
	"log/slog"
	"sync"
	"time"
)

// Keyed samples log lines per key (a source address, say): each key has
// a Sampler of its own, so that lines caused from one key do not use up
// another's budget. It holds at most max keys; past that, the key used
// least recently is forgotten (its next line starts a fresh budget: a
// flood from many keys makes more lines, never hides a key's first ones).
type Keyed struct {
	every time.Duration
	burst int
	max   int

	mu    sync.Mutex
	keys  map[string]*list.Element // guarded by mu; values *keyed
	order *list.List               // guarded by mu; most recently used first
}

type keyed struct {
	key string
	s   *Sampler
}

// NewKeyed returns a Keyed whose keys each get New(every, burst), and
// that holds at most max keys (1,024 when max <= 0).
func NewKeyed(every time.Duration, burst, max int) *Keyed {
	if max <= 0 {
		max = 1024
	}
	return &Keyed{every: every, burst: burst, max: max, keys: make(map[string]*list.Element), order: list.New()}
}

// Sampler returns key's Sampler, made when key has none.
func (k *Keyed) Sampler(key string) *Sampler {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.keys[key]; ok {
		k.order.MoveToFront(e)
		return e.Value.(*keyed).s
	}
	for len(k.keys) >= k.max {
		last := k.order.Back()
		k.order.Remove(last)
		delete(k.keys, last.Value.(*keyed).key)
	}
	s := New(k.every, k.burst)
	k.keys[key] = k.order.PushFront(&keyed{key: key, s: s})
	return s
}

// Len returns how many keys k holds.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// Log logs msg as Sampler.Log does, within key's budget.
func (k *Keyed) Log(key string, log *slog.Logger, level slog.Level, msg string, args ...any) bool {
	return k.Sampler(key).Log(log, level, msg, args...)
}
