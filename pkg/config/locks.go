package config

import "slices"

// Lock types and accesses, as buildbot's MasterLock, WorkerLock and
// LockAccess modes.
const (
	LockMaster       = "master"
	LockWorker       = "worker"
	AccessExclusive  = "exclusive"
	AccessCounting   = "counting"
	defaultLockCount = 1
)

// Lock is one [[locks]] table, as buildbot's MasterLock and WorkerLock.
type Lock struct {
	Name string // name; required, unique
	// Type is type: "master" (one lock for the master) or "worker" (one
	// lock per worker); required.
	Type string
	// MaxCount is max_count: how many counting holders the lock takes at
	// once; default 1. An exclusive holder takes the whole lock.
	MaxCount int
	// MaxCountForWorker is max_count_for_worker, worker locks only: the
	// max count on the workers it names, overriding MaxCount.
	MaxCountForWorker map[string]int
	Line              int // line of the [[locks]] table
}

// LockAccess is one element of a builder's or a step's locks: which lock,
// and how, as buildbot's lock.access("exclusive").
type LockAccess struct {
	Name string // name: a [[locks]] name; required
	// Access is access: AccessExclusive (the default) or AccessCounting
	// ("shared" is taken as "counting").
	Access string
}

func (d *decoder) lock(t *table, seen, workers map[string]int) Lock {
	l := Lock{Line: t.line(), Name: t.unique(seen, "lock"), MaxCount: defaultLockCount}
	l.Type, _ = t.oneOf("type", "lock type", LockMaster, LockWorker)
	if n, ok := t.integer("max_count"); ok {
		if n < 1 {
			t.errorf("max_count", "must be at least 1")
		} else {
			l.MaxCount = int(n)
		}
	}
	if m, ok := t.sub("max_count_for_worker"); ok {
		if l.Type == LockMaster {
			t.errorf("max_count_for_worker", "only for a worker lock")
		}
		l.MaxCountForWorker = map[string]int{}
		for name := range m.m {
			n, ok := m.integer(name)
			if !ok {
				continue
			}
			if _, known := workers[name]; !known {
				m.errorf(name, "unknown worker %q", name)
			}
			if n < 1 {
				m.errorf(name, "must be at least 1")
				continue
			}
			l.MaxCountForWorker[name] = int(n)
		}
		m.done()
	}
	t.done()
	return l
}

// lockAccesses reads the array of lock accesses name of a builder or step,
// each naming a lock of d.lockNames.
func (d *decoder) lockAccesses(t *table, name string) []LockAccess {
	var out []LockAccess
	for _, a := range t.tables(name) {
		la := LockAccess{Access: AccessExclusive}
		if n, ok := a.required("name"); ok {
			if _, known := d.lockNames[n]; !known {
				a.errorf("name", "unknown lock %q", n)
			}
			la.Name = n
		}
		if s, ok := a.str("access"); ok {
			switch s {
			case "exclusive":
			case "counting", "shared":
				la.Access = AccessCounting
			default:
				a.errorf("access", `unknown lock access %q (want "exclusive" or "counting")`, s)
			}
		}
		a.done()
		if slices.ContainsFunc(out, func(o LockAccess) bool { return o.Name == la.Name }) {
			t.errorf(name, "lock %q is named twice", la.Name)
		}
		out = append(out, la)
	}
	return out
}
