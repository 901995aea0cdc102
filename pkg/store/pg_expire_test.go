package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPGExpireHungLeader: a master that hangs (here: holds the leader lock
// and does nothing more, as one stopped by SIGSTOP) keeps its database
// session, and with it the lock; once another master expires it, its
// sessions end, the lock is free, and the other master takes it within
// seconds. The hung master's store, when it wakes, learns that it was
// expired at its next heartbeat.
func TestPGExpireHungLeader(t *testing.T) {
	t.Parallel()
	ps := openMasters(t, 2)
	a, b := ps[0], ps[1]
	ma := must[Master](t)(a.EnsureMaster("a"))
	mb := must[Master](t)(b.EnsureMaster("b"))
	la, got, err := a.Lock("leader")
	if err != nil || !got {
		t.Fatalf("a takes the lock: %v, %v", got, err)
	}
	defer la.Unlock()
	if _, got, err := b.Lock("leader"); err != nil || got {
		t.Fatalf("b takes a's lock: %v, %v; want false", got, err)
	}
	now := must[time.Time](t)(b.Now())
	ok(t, a.SetMasterActive(ma.ID, true, now.Add(-time.Hour)))
	if x, err := b.ExpireMaster(ma.ID, now.Add(-time.Minute), now); err != nil || !x {
		t.Fatalf("b expires a: %v, %v", x, err)
	}
	start := time.Now()
	for {
		lb, got, err := b.Lock("leader")
		if err != nil {
			t.Fatal(err)
		}
		if got {
			t.Logf("b took the lock %s after expiring a", time.Since(start))
			ok(t, lb.Unlock())
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("b did not get the lock of the expired master within %s", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-la.Lost():
	case <-time.After(10 * time.Second):
		t.Errorf("a's lock not lost after its session ended")
	}
	if alive, err := a.Heartbeat(ma.ID); err != nil || alive {
		t.Errorf("a's heartbeat after its expiry: %v, %v; want false", alive, err)
	}
	if alive, err := b.Heartbeat(mb.ID); err != nil || !alive {
		t.Errorf("b's heartbeat: %v, %v; want true", alive, err)
	}
}

// TestPGHeartbeatRacesExpire: a late heartbeat of a master and another
// master's expiry of it race: exactly one wins. Either the heartbeat
// lands first (the master stays active, its build runs) or the expiry
// does (the master is inactive, its build ended RETRY, and its heartbeat
// says it is dead rather than bringing it back).
func TestPGHeartbeatRacesExpire(t *testing.T) {
	t.Parallel()
	ps := openMasters(t, 2)
	a, b := ps[0], ps[1]
	must[Master](t)(a.EnsureMaster("a's store")) // a's sessions are its, not the raced masters'
	must[Master](t)(b.EnsureMaster("b"))
	bl := must[Builder](t)(a.EnsureBuilder("b"))
	w := must[Worker](t)(a.EnsureWorker("w"))
	wins := map[string]int{}
	for i := range 30 {
		m := must[Master](t)(a.EnsureMaster("raced" + itoa(int64(i))))
		_, brids, err := a.AddBuildset(NewBuildset{Reason: "r", BuilderIDs: []int64{bl.ID}})
		ok(t, err)
		ok(t, a.ClaimBuildRequest(brids[bl.ID], m.ID, time.Time{}))
		bld := must[Build](t)(a.AddBuild(NewBuild{BuilderID: bl.ID, BuildRequestID: brids[bl.ID], WorkerID: w.ID, MasterID: m.ID}))
		now := must[time.Time](t)(b.Now())
		ok(t, a.SetMasterActive(m.ID, true, now.Add(-time.Minute)))
		var alive, expired bool
		var errA, errB error
		race(2, func(i int) {
			if i == 0 {
				alive, errA = a.Heartbeat(m.ID)
			} else {
				expired, errB = b.ExpireMaster(m.ID, now.Add(-time.Second), now)
			}
		})
		ok(t, errA)
		ok(t, errB)
		if alive == expired {
			t.Fatalf("round %d: heartbeat alive %v, expired %v: want exactly one", i, alive, expired)
		}
		active := masterOf(t, a, m.ID).Active
		done := must[Build](t)(a.Build(bld.ID)).Complete
		if active != alive || done != expired {
			t.Fatalf("round %d: heartbeat alive %v, expired %v, but master active %v and its build complete %v", i, alive, expired, active, done)
		}
		if alive {
			wins["heartbeat"]++
			ok(t, a.SetMasterActive(m.ID, false, time.Time{}))
			ok(t, a.EndBuild(bld.ID, "", Success, time.Time{}))
			ok(t, a.CompleteBuildRequestOf(brids[bl.ID], m.ID, Success, time.Time{}))
		} else {
			wins["expiry"]++
		}
	}
	t.Logf("wins: %v", wins)
}

// TestPGExpireSparesSuccessor: a master restarted under its name registers
// after another master committed the expiry of its predecessor and before
// that master ended the predecessor's sessions. Only the predecessor's
// sessions end: the successor's stay. (The two-master soak saw a restarted
// master fail at start with "terminating connection due to administrator
// command" when its sessions bore the same name as its predecessor's.)
func TestPGExpireSparesSuccessor(t *testing.T) {
	t.Parallel()
	url := pg.NewDatabase(t)
	admin := openPGTest(t, url, Options{})
	sessions := func(s *PG, id int64) []int32 {
		t.Helper()
		rows, err := admin.pool.Query(context.Background(),
			"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
			pgAppName(id, s.origin))
		if err != nil {
			t.Fatal(err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			t.Fatal(err)
		}
		return pids
	}
	old := openPGTest(t, url, Options{})
	mb := must[Master](t)(old.EnsureMaster("b"))
	must[time.Time](t)(old.Now()) // a session named after old's master
	if len(sessions(old, mb.ID)) == 0 {
		t.Fatal("the old master has no named session")
	}
	succ := openPGTest(t, url, Options{})
	var succPids []int32
	a := openPGTest(t, url, Options{Events: publisherFunc(func(key string, rec any) {
		m, isMaster := rec.(Master)
		if !isMaster || m.ID != mb.ID || m.Active || succPids != nil {
			return
		}
		// The expiry is committed and being published; its master has
		// not ended the expired sessions yet.
		if _, err := succ.EnsureMaster("b"); err != nil {
			t.Errorf("the successor registers: %v", err)
			return
		}
		if _, err := succ.Now(); err != nil {
			t.Errorf("the successor reads the clock: %v", err)
		}
		succPids = sessions(succ, mb.ID)
	})})
	must[Master](t)(a.EnsureMaster("a"))
	now := must[time.Time](t)(a.Now())
	if x, err := a.ExpireMaster(mb.ID, now.Add(time.Minute), now); err != nil || !x {
		t.Fatalf("a expires b: %v, %v", x, err)
	}
	if len(succPids) == 0 {
		t.Fatal("the successor registered no named session during the expiry")
	}
	// The predecessor's sessions end (pg_terminate_backend is
	// asynchronous: wait for them to go) ...
	deadline := time.Now().Add(10 * time.Second)
	for len(sessions(old, mb.ID)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired master's sessions did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ... the successor's, ended at the same moment if they were, stay.
	left := sessions(succ, mb.ID)
	for _, pid := range succPids {
		if !slices.Contains(left, pid) {
			t.Errorf("the successor's session %d was ended with its predecessor's", pid)
		}
	}
	if alive, err := succ.Heartbeat(mb.ID); err != nil || !alive {
		t.Errorf("the successor's heartbeat: %v, %v; want alive", alive, err)
	}
}
