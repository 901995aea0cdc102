package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// enabledKey is the state key under which a scheduler keeps whether it is
// enabled (absent: enabled), as buildbot keeps it in its schedulers table:
// it survives restarts and reconfigs.
const enabledKey = "enabled"

// ErrUnknownScheduler is returned by SetEnabled when no configured
// scheduler has the name.
var ErrUnknownScheduler = errors.New("scheduler: no such scheduler")

// ErrDisabled is returned by Force when the force scheduler is disabled.
var ErrDisabled = errors.New("scheduler: disabled")

// Enabled reports whether the scheduler called name is enabled. A disabled
// scheduler adds no buildset: a change scheduler ignores the changes that
// come meanwhile (as buildbot's stops consuming them) and holds the ones it
// had gathered until enabled again, a periodic or nightly one skips its
// times, a force scheduler refuses to force. A triggerable one still runs
// for its trigger steps, as in buildbot 3.7.
func (s *Set) Enabled(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.disabled[name]
}

// SetEnabled enables or disables the scheduler called name, keeping the
// choice in the store, and returns an error wrapping ErrUnknownScheduler
// when it is not configured.
func (s *Set) SetEnabled(name string, enabled bool) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	_, isForce := s.force[name]
	_, isTrigger := s.trigger[name]
	t, isTimer := s.timers[name]
	s.mu.Unlock()
	if !isForce && !isTrigger && !isTimer {
		return fmt.Errorf("%w: %q", ErrUnknownScheduler, name)
	}
	v, _ := json.Marshal(enabled)
	if err := s.store.SetState(stateObject(name), enabledKey, v); err != nil {
		return fmt.Errorf("keep scheduler %s enabled=%v: %w", name, enabled, err)
	}
	s.mu.Lock()
	if enabled {
		delete(s.disabled, name)
	} else {
		s.disabled[name] = true
	}
	s.mu.Unlock()
	s.log.Info("scheduler enabled changed", "scheduler", name, "enabled", enabled)
	if cs, ok := t.(*changeScheduler); ok && enabled {
		// Its gathered changes' timers run again.
		select {
		case cs.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// readEnabled reads from the store which of names are disabled. s.opMu
// must be held.
func (s *Set) readEnabled(names map[string]bool) {
	disabled := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		v, ok, err := s.store.GetState(stateObject(name), enabledKey)
		if err != nil {
			s.log.Error("read whether the scheduler is enabled; it is", "scheduler", name, "err", err)
			continue
		}
		var enabled bool
		if ok && json.Unmarshal(v, &enabled) == nil && !enabled {
			disabled[name] = true
		}
	}
	s.mu.Lock()
	s.disabled = disabled
	s.mu.Unlock()
}

// KeepEnabled records in st whether the scheduler called name is enabled,
// as SetEnabled does, for a master whose Set does not run that scheduler
// (it runs on the master leading the others, which reads it with
// ReloadEnabled).
func KeepEnabled(st interface {
	SetState(objectName, key string, value json.RawMessage) error
}, name string, enabled bool) error {
	v, _ := json.Marshal(enabled)
	if err := st.SetState(stateObject(name), enabledKey, v); err != nil {
		return fmt.Errorf("keep scheduler %s enabled=%v: %w", name, enabled, err)
	}
	return nil
}

// StoredEnabled reports whether st records the scheduler called name as
// enabled (absent: enabled).
func StoredEnabled(st interface {
	GetState(objectName, key string) (json.RawMessage, bool, error)
}, name string) (bool, error) {
	v, ok, err := st.GetState(stateObject(name), enabledKey)
	if err != nil || !ok {
		return true, err
	}
	var enabled bool
	if json.Unmarshal(v, &enabled) == nil && !enabled {
		return false, nil
	}
	return true, nil
}

// ReloadEnabled reads again from the store which schedulers are enabled:
// another master may have changed it (KeepEnabled). A change scheduler
// enabled again starts its gathered changes' timers.
func (s *Set) ReloadEnabled() {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	names := map[string]bool{}
	for name := range s.force {
		names[name] = true
	}
	for name := range s.trigger {
		names[name] = true
	}
	for name := range s.timers {
		names[name] = true
	}
	was := maps.Clone(s.disabled)
	s.mu.Unlock()
	s.readEnabled(names)
	s.mu.Lock()
	var kick []*changeScheduler
	for name := range was {
		if cs, ok := s.timers[name].(*changeScheduler); ok && !s.disabled[name] {
			kick = append(kick, cs)
		}
	}
	s.mu.Unlock()
	for _, cs := range kick {
		select {
		case cs.kick <- struct{}{}:
		default:
		}
	}
}
