package store

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestLock: a lock is granted, held until Unlock (which closes Lost), and
// can be taken again. On PostgreSQL, where masters share the store, a
// second master is refused the lock while the first holds it, gets it
// once it is unlocked, and takes it over when the holder's session dies
// (its Lost closes).
func TestLock(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openAt(t, loc, Options{})
		l, granted, err := db.Lock("leader")
		if err != nil || !granted {
			t.Fatalf("Lock(leader) = %v, %v", granted, err)
		}
		select {
		case <-l.Lost():
			t.Fatal("Lost is closed while the lock is held")
		default:
		}
		other, granted, err := db.Lock("janitor")
		if err != nil || !granted {
			t.Fatalf("Lock(janitor) beside leader = %v, %v", granted, err)
		}
		ok(t, other.Unlock())
		ok(t, l.Unlock())
		select {
		case <-l.Lost():
		case <-time.After(10 * time.Second):
			t.Fatal("Lost is still open after Unlock")
		}
		l, granted, err = db.Lock("leader")
		if err != nil || !granted {
			t.Fatalf("Lock(leader) after Unlock = %v, %v", granted, err)
		}
		defer l.Unlock()
		if be.name != "postgres" {
			return // one master holds a bbolt file: there is no second
		}

		second := be.openAt(t, loc, Options{})
		if l2, granted, err := second.Lock("leader"); err != nil || granted {
			if granted {
				l2.Unlock()
			}
			t.Fatalf("a second master's Lock(leader) while the first holds it = %v, %v; want refused", granted, err)
		}
		ok(t, l.Unlock())
		l2, granted, err := second.Lock("leader")
		if err != nil || !granted {
			t.Fatalf("a second master's Lock(leader) after Unlock = %v, %v", granted, err)
		}
		// The holder's session dies (as when its master is killed or cut
		// off): it hears so, and the first master can take the lock.
		admin, err := pgx.Connect(context.Background(), loc)
		ok(t, err)
		defer admin.Close(context.Background())
		var killed int
		ok(t, admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
			WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2 AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, int64(pgLockSpace)).Scan(&killed))
		if killed != 1 {
			t.Fatalf("terminated %d sessions holding an advisory lock, want 1", killed)
		}
		select {
		case <-l2.Lost():
		case <-time.After(30 * time.Second):
			t.Fatal("Lost is still open 30s after the lock's session died")
		}
		l2.Unlock()
		l, granted, err = db.Lock("leader")
		if err != nil || !granted {
			t.Fatalf("Lock(leader) after its holder's session died = %v, %v", granted, err)
		}
		ok(t, l.Unlock())
	})
}
