package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Several masters may share one store (PostgreSQL). Each takes workers and
// runs builds; the requests are claimed in the store, so each runs once.
// What must happen once among them runs on the leader only: the master
// holding the store's "leader" lock. That is the schedulers that act on
// their own (change, periodic, nightly, dependent: force and triggerable
// ones answer on every master), the change sources, the reporters, the
// janitor and the missing-worker watcher. Every master tries to take the
// lock at start and every heartbeat_interval; when the leader loses it
// (its database session ended), it stops them at once, and another master
// takes over at its next try. On bbolt the lock is always granted: the
// one master is the leader from its start.
//
// Each master also records that it is alive every heartbeat_interval
// (Heartbeat). Every master (the leader, and the others, for a
// leader that hangs with its session and lock) presumes a master silent
// for master_timeout dead, in one store transaction (ExpireMaster): its
// builds end RETRY and its requests run again elsewhere, its workers are
// marked disconnected from it, it leaves its builders, and it is marked
// inactive; on PostgreSQL its database sessions are then ended, so that a
// hung leader loses the lock and another leads. A master that was
// only slow finds itself marked inactive (the masters/N/stopped event, or
// its row when it next beats): it fences its engine (its builds stop at
// once and record nothing more, their requests being another master's
// now) and Run returns ErrDeclaredDead; gbb-master start then runs it
// again, which registers it afresh.

// LeaderLock is the name of the store lock the leader holds.
const LeaderLock = "leader"

// ErrDeclaredDead is returned by Run when the other masters presumed this
// one dead (it was silent for master_timeout): its builds ran again
// elsewhere, so it stopped them without recording more. Running the
// master again registers it afresh.
var ErrDeclaredDead = errors.New("master: the other masters presumed this master dead (silent longer than [db] master_timeout)")

// leaderStateObject and leaderStateKey name where the store keeps which
// master leads, for the API and the pages.
const leaderStateObject, leaderStateKey = "gbb-master", "leader"

// LeaderState is what the store keeps of the leader.
type LeaderState struct {
	MasterID int64     `json:"masterid"`
	Since    time.Time `json:"since"`
}

// ReadLeader returns which master leads, as the leader last recorded it
// (false when none does: none ever did, or the last one stopped leading).
func ReadLeader(st interface {
	GetState(objectName, key string) (json.RawMessage, bool, error)
}) (LeaderState, bool, error) {
	v, ok, err := st.GetState(leaderStateObject, leaderStateKey)
	if err != nil || !ok || string(v) == "null" {
		return LeaderState{}, false, err
	}
	var l LeaderState
	if err := json.Unmarshal(v, &l); err != nil {
		return LeaderState{}, false, fmt.Errorf("read the leader: %w", err)
	}
	return l, true, nil
}

// leaderTypes are the scheduler types that run on the leader only; force
// and triggerable schedulers answer on every master.
func onEveryMaster(typ string) bool { return typ == "force" || typ == "triggerable" }

// splitSchedulers returns the schedulers every master runs and those the
// leader runs.
func splitSchedulers(all []config.Scheduler) (every, leader []config.Scheduler) {
	for _, sc := range all {
		if onEveryMaster(sc.Type) {
			every = append(every, sc)
		} else {
			leader = append(leader, sc)
		}
	}
	return every, leader
}

// cluster is this master's part among the masters sharing its store: its
// heartbeat, the leader lock, and what the leader runs.
type cluster struct {
	m       *Master
	st      store.Store
	bus     *events.Bus
	id      int64
	log     *slog.Logger
	beat    time.Duration
	timeout time.Duration
	// resumeWait is the finish_steps_wait of the current config (nil:
	// config.DefaultFinishStepsWait): see reapStopped.
	resumeWait func() time.Duration
	fence      func() // stops the engine's builds recording nothing more
	// lead runs the leader's components until ctx is done, closing
	// started once they run.
	lead     func(ctx context.Context, started chan<- struct{}) error
	now      func() time.Time
	onBeat   func()    // called after each heartbeat; nil means nothing
	leading  chan bool // told of each change of leadership, when not nil (tests)
	lock     store.Lock
	since    time.Time // when this master's term began, while it leads
	leadStop context.CancelFunc
	leadDone chan struct{}

	// The store's clock at this master's last heartbeat that went
	// through (lastGood), at the one before its first that failed since
	// (lostAt: zero when none failed since the outage was forgotten), and
	// at its first after them that went through (backAt). See mayExpire.
	lastGood, lostAt, backAt time.Time
	beatFailed               bool // this round's heartbeat failed
}

// run beats, takes the lead when it can and watches the other masters
// until ctx is done, or this master is presumed dead (ErrDeclaredDead).
// The first try for the lock is made before run returns control to its
// caller's ready: first must be closed after it.
func (c *cluster) run(ctx context.Context, first chan<- struct{}) error {
	defer c.stopLeading("master stopping")
	dead := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	wg.Go(func() { c.watchSelf(wctx, dead) })
	tick := time.NewTicker(c.beat)
	defer tick.Stop()
	for {
		if err := c.heartbeat(); err != nil {
			if errors.Is(err, ErrDeclaredDead) {
				return c.declaredDead()
			}
			c.log.Error("heartbeat", "err", err)
			c.beatFailed = true
		} else {
			c.beatFailed = false
		}
		c.tryLead(ctx)
		if c.onBeat != nil {
			c.onBeat()
		}
		if first != nil {
			close(first)
			first = nil
		}
		// Every master reaps, not only the leader: a leader that hangs
		// (stopped, or stuck) keeps its database session and so the
		// lock, and its builds must still run again elsewhere.
		c.reap()
		var lost <-chan struct{}
		if c.lock != nil {
			lost = c.lock.Lost()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-dead:
			return c.declaredDead()
		case <-lost:
			c.log.Warn("leader lock lost: schedulers, change sources, reporters and the janitor stop here; another master takes over")
			c.stopLeading("")
		case <-tick.C:
		}
	}
}

// declaredDead fences the engine and stops leading.
func (c *cluster) declaredDead() error {
	c.log.Error("this master was presumed dead by the others (silent longer than master_timeout): its builds ran again elsewhere; stopping them and starting afresh")
	c.fence()
	c.stopLeading("presumed dead")
	return ErrDeclaredDead
}

// heartbeat records that this master is alive, unless the others have
// marked it inactive meanwhile (then it returns ErrDeclaredDead): the
// store writes it only while the master is active, so that a beat racing
// the reaper cannot bring an expired master back.
func (c *cluster) heartbeat() error {
	alive, err := c.st.Heartbeat(c.id)
	if err != nil {
		return err
	}
	if !alive {
		return ErrDeclaredDead
	}
	return nil
}

// watchSelf closes dead when the store says this master stopped while it
// runs: another master presumed it dead. (A forged event from outside the
// masters cannot reach the bus: the store takes notifications only from
// sessions that may write it.)
func (c *cluster) watchSelf(ctx context.Context, dead chan<- struct{}) {
	key := "masters/" + strconv.FormatInt(c.id, 10) + "/stopped"
	for ctx.Err() == nil {
		sub, err := c.bus.Subscribe(ctx, []string{key}, c.bus.Last())
		if err != nil {
			return
		}
		for ev := range sub.C {
			if m, ok := ev.Record.(store.Master); ok && !m.Active && ctx.Err() == nil {
				sub.Close()
				// Its builds stop at once, not once run's loop,
				// maybe waiting for the database (a heartbeat, a
				// reap), gets to it (declaredDead fences again).
				c.log.Error("this master was presumed dead by the others: stopping its builds")
				c.fence()
				close(dead)
				return
			}
		}
	}
}

// tryLead takes the leader lock when no master holds it, and then starts
// the leader's components.
func (c *cluster) tryLead(ctx context.Context) {
	if c.lock != nil {
		c.recordLeader()
		return
	}
	l, ok, err := c.st.Lock(LeaderLock)
	if err != nil {
		c.log.Error("take the leader lock", "err", err)
		return
	}
	if !ok {
		return
	}
	c.lock = l
	c.since = c.now().UTC()
	c.recordLeader()
	c.log.Info("this master leads: it runs the schedulers, change sources, reporters and the janitor", "master", c.id)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	started := make(chan struct{})
	c.leadStop, c.leadDone = cancel, done
	go func() {
		defer close(done)
		if err := c.lead(lctx, started); err != nil {
			c.log.Error("leader components", "err", err)
		}
	}()
	select {
	case <-started:
	case <-done:
	}
	c.tell(true)
}

// stopLeading stops the leader's components, waits for them and releases
// the lock; why, when not empty, is logged.
func (c *cluster) stopLeading(why string) {
	if c.lock == nil {
		return
	}
	c.leadStop()
	<-c.leadDone
	if err := c.lock.Unlock(); err != nil {
		c.log.Error("release the leader lock", "err", err)
	}
	c.lock, c.leadStop, c.leadDone = nil, nil, nil
	c.clearLeader()
	if why != "" {
		c.log.Info("this master no longer leads", "why", why)
	}
	c.tell(false)
}

// recordLeader records this master as the leader, for the API and the
// pages, unless the record names it already: at the start of its term,
// and at each heartbeat of it, which restores the record should a master
// that lost the lead have cleared it meanwhile (see clearLeader).
func (c *cluster) recordLeader() {
	if l, ok, err := ReadLeader(c.st); err == nil && ok && l.MasterID == c.id && l.Since.Equal(c.since) {
		return
	}
	v, _ := json.Marshal(LeaderState{MasterID: c.id, Since: c.since})
	if err := c.st.SetState(leaderStateObject, leaderStateKey, v); err != nil {
		c.log.Error("record the leader", "err", err)
	}
}

// clearLeader records that no master leads, when the record still names
// this master, which no longer does: the API and the pages must not name
// it until another master takes the lead and records itself.
func (c *cluster) clearLeader() {
	l, ok, err := ReadLeader(c.st)
	if err != nil {
		c.log.Error("clear the leader", "err", err)
		return
	}
	if !ok || l.MasterID != c.id {
		return // another master leads already
	}
	if err := c.st.SetState(leaderStateObject, leaderStateKey, json.RawMessage("null")); err != nil {
		c.log.Error("clear the leader", "err", err)
	}
}

func (c *cluster) tell(leading bool) {
	if c.leading != nil {
		c.leading <- leading
	}
}

// reap presumes dead every other active master silent for the timeout,
// by the store's clock (the database's on PostgreSQL, so that the masters'
// hosts' clocks may differ): ExpireMaster, in one transaction, ends its
// builds RETRY and releases its claimed requests, disconnects its workers
// from it, takes it off its builders and workers and marks it inactive,
// and only if it has not beaten meanwhile (several masters may reap at
// once: one expires it). On PostgreSQL it also ends the dead master's
// database sessions, so that a hung leader loses the lock.
func (c *cluster) reap() {
	ms, err := c.st.Masters()
	if err != nil {
		c.log.Error("list masters", "err", err)
		return
	}
	now, err := c.st.Now()
	if err != nil {
		c.log.Error("read the store's clock", "err", err)
		return
	}
	c.noteContact(now)
	for _, m := range ms {
		if m.ID == c.id {
			continue
		}
		if !m.Active {
			c.reapStopped(m, now)
			continue
		}
		if now.Sub(m.LastSeen) < c.timeout || !c.mayExpire(m, now) {
			continue
		}
		log := c.log.With("dead_master", m.ID, "name", m.Name, "last_seen", m.LastSeen.UTC().Format(time.RFC3339))
		expired, err := c.st.ExpireMaster(m.ID, now.Add(-c.timeout), now)
		if err != nil {
			log.Error("presume a silent master dead", "err", err)
			continue
		}
		if expired {
			log.Warn("a master silent longer than master_timeout is presumed dead: its builds end RETRY and its requests run again", "master_timeout", c.timeout)
		}
	}
}

// noteContact records, at the store's time now, whether this master is in
// touch with the store. An outage begins at its last round that went
// through (lastGood) and ends at the first that does again (backAt): a
// round whose heartbeat failed, or that comes more than two beats after
// the last (a write waits out a short outage rather than failing; this
// master may also have been stopped itself), is inside one.
func (c *cluster) noteContact(now time.Time) {
	if c.beatFailed {
		if c.lostAt.IsZero() {
			c.lostAt = c.lastGood
		}
		c.backAt = time.Time{}
		return
	}
	switch gap := !c.lastGood.IsZero() && now.Sub(c.lastGood) > 2*c.beat; {
	case gap:
		if c.lostAt.IsZero() {
			c.lostAt = c.lastGood
		}
		c.backAt = now
	case !c.lostAt.IsZero() && c.backAt.IsZero():
		c.backAt = now
	}
	if !c.backAt.IsZero() && now.Sub(c.backAt) >= c.timeout {
		c.lostAt, c.backAt = time.Time{}, time.Time{} // forgotten
	}
	c.lastGood = now
}

// mayExpire says whether this master may presume m, silent for
// master_timeout, dead: whether m was silent that long outside the
// outage this master sat out, if any (from the last heartbeat of this
// master's that went through to the first that did again). The database
// away for all (a restart, a failover longer than master_timeout), m's
// heartbeats resume as this master's did; m silent before it, or after
// it, for master_timeout in all, is presumed dead. (An outside probe saw
// a master presume the other dead 0.3 s after an 11 s outage that both
// had sat out.)
func (c *cluster) mayExpire(m store.Master, now time.Time) bool {
	if c.lostAt.IsZero() {
		return true
	}
	var silent time.Duration
	if m.LastSeen.Before(c.lostAt) {
		silent = c.lostAt.Sub(m.LastSeen)
	}
	if !c.backAt.IsZero() {
		since := c.backAt
		if m.LastSeen.After(since) {
			since = m.LastSeen
		}
		silent += now.Sub(since)
	}
	return silent >= c.timeout
}

// stoppedGrace is how long a master stopped cleanly may stay away and
// still find its builds running when it comes back: master_timeout plus
// finish_steps_wait (the masters share their config). With
// finish_steps_on_restart, a master that stops leaves its running builds
// (and their claimed requests) to itself; a restart takes seconds, and
// the restarted master waits up to finish_steps_wait for their workers.
func (c *cluster) stoppedGrace() time.Duration {
	w := config.DefaultFinishStepsWait
	if c.resumeWait != nil {
		if cw := c.resumeWait(); cw > 0 {
			w = cw
		}
	}
	return c.timeout + w
}

// reapStopped ends the builds an inactive master left running, and
// releases its requests, once it stopped longer than stoppedGrace ago
// (by its last seen, which its stop records, against the store's clock):
// without it, a master stopped with finish_steps_on_restart and not
// started again would hold them forever. It is the abandonment of
// ExpireMaster (AbandonStoppedMaster), which first checks cheaply, reading
// only, whether the master left anything: most inactive masters (retired
// or renamed ones stay listed) left nothing. A master that comes back
// later finds its builds ended RETRY, as a master presumed dead does: it
// does not resume them (their workers are told to kill the commands they
// kept).
func (c *cluster) reapStopped(m store.Master, now time.Time) {
	grace := c.stoppedGrace()
	if now.Sub(m.LastSeen) < grace {
		return
	}
	log := c.log.With("stopped_master", m.ID, "name", m.Name, "last_seen", m.LastSeen.UTC().Format(time.RFC3339))
	done, err := c.st.AbandonStoppedMaster(m.ID, now.Add(-grace), now)
	if err != nil {
		log.Error("end the builds of a stopped master", "err", err)
		return
	}
	if done {
		log.Warn("a master stopped with builds left running (finish_steps_on_restart) has not come back within master_timeout + finish_steps_wait: its builds end RETRY and its requests run again", "grace", grace)
	}
}
