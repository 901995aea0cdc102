package master

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// lockHeld is a real store whose locks are refused while held is set, as
// when another master holds them.
type lockHeld struct {
	store.Store
	held *atomic.Bool
}

func (s lockHeld) Lock(name string) (store.Lock, bool, error) {
	if s.held.Load() {
		return nil, false, nil
	}
	return s.Store.Lock(name)
}

// TestLeaderRecordClearedOnLoss: when the leader loses its lock, the
// record of the leader (what /api/v2/masters and the masters page show)
// no longer names it; its next term records it afresh.
func TestLeaderRecordClearedOnLoss(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newClusterEnv(t)
		var held atomic.Bool
		e.c.st = lockHeld{e.c.st, &held}
		stop := e.run(t)
		defer stop()
		if got := <-e.terms; got != "start" {
			t.Fatalf("first term: %s", got)
		}
		l := <-e.locks
		first, ok, err := ReadLeader(e.st)
		if err != nil || !ok || first.MasterID != e.me.ID {
			t.Fatalf("ReadLeader in the first term = %+v, %v, %v; want master %d", first, ok, err, e.me.ID)
		}
		time.Sleep(time.Second)            // the next term starts later
		held.Store(true)                   // another master takes the lock at once
		if err := l.Unlock(); err != nil { // the session ends
			t.Fatal(err)
		}
		if got := <-e.terms; got != "stop" {
			t.Fatalf("after the lock was lost: %s", got)
		}
		synctest.Wait() // the master has stopped leading, and waits for its next heartbeat
		if ls, ok, err := ReadLeader(e.st); err != nil || ok {
			t.Errorf("ReadLeader once the lock was lost = %+v, %v, %v; want no leader", ls, ok, err)
		}
		held.Store(false)
		if got := <-e.terms; got != "start" {
			t.Fatalf("second term: %s", got)
		}
		<-e.locks
		if ls, ok, err := ReadLeader(e.st); err != nil || !ok || ls.MasterID != e.me.ID || !ls.Since.After(first.Since) {
			t.Errorf("ReadLeader in the second term = %+v, %v, %v; want master %d since after %s", ls, ok, err, e.me.ID, first.Since)
		}
	})
}

// TestLeaderRecordOfTheNextLeaderKept: a master that loses the lock after
// another master took over and recorded itself leaves that record alone;
// and a leader whose record was cleared meanwhile (by a master that lost
// the lock clearing it between its read and its write) records itself
// again at its next heartbeat.
func TestLeaderRecordOfTheNextLeaderKept(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newClusterEnv(t)
		other, err := e.st.EnsureMaster("other")
		if err != nil {
			t.Fatal(err)
		}
		var held atomic.Bool
		e.c.st = lockHeld{e.c.st, &held}
		stop := e.run(t)
		defer stop()
		<-e.terms
		l := <-e.locks
		held.Store(true)
		// The other master took over and recorded itself.
		next := LeaderState{MasterID: other.ID, Since: time.Now().UTC()}
		v, _ := json.Marshal(next)
		if err := e.st.SetState(leaderStateObject, leaderStateKey, v); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		if got := <-e.terms; got != "stop" {
			t.Fatalf("after the lock was lost: %s", got)
		}
		synctest.Wait()
		if ls, ok, err := ReadLeader(e.st); err != nil || !ok || ls != next {
			t.Errorf("ReadLeader once this master lost the lock = %+v, %v, %v; want the next leader's %+v", ls, ok, err, next)
		}

		// This master leads again; a stale clear wipes its record.
		held.Store(false)
		<-e.terms
		<-e.locks
		if err := e.st.SetState(leaderStateObject, leaderStateKey, json.RawMessage("null")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(e.c.beat)
		synctest.Wait()
		if ls, ok, err := ReadLeader(e.st); err != nil || !ok || ls.MasterID != e.me.ID {
			t.Errorf("ReadLeader a heartbeat after the record was cleared = %+v, %v, %v; want master %d", ls, ok, err, e.me.ID)
		}
	})
}
