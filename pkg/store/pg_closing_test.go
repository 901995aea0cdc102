package store

import (
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testproxy"
)

// TestClosingGivesUpOnAFrozenDatabase: a store reaches PostgreSQL
// through a proxy that then freezes every connection, old and new, as a
// firewall dropping the host's packets. A write keeps waiting for the
// database as before; once the store is closing (its master stopping) that
// write fails within seconds, as does a new write, a read, the leader
// lock's Unlock and Close.
func TestClosingGivesUpOnAFrozenDatabase(t *testing.T) {
	t.Parallel()
	dbURL := pg.NewDatabase(t)
	proxy, viaProxy := testproxy.ForURL(t, dbURL)
	st, err := OpenPG(viaProxy, Options{Events: newEventLog()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.EnsureBuilder("b")
	if err != nil {
		t.Fatal(err)
	}
	l, ok, err := st.Lock("leader")
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}

	proxy.FreezeAll()
	done := make(chan error, 1)
	go func() {
		_, _, err := st.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}})
		done <- err
	}()
	// Not closing: the write waits for the database (pgTimeout, pgOutage).
	select {
	case err := <-done:
		t.Fatalf("a write ended while the database was frozen, the store not closing: %v", err)
	case <-time.After(2 * pgClosingTimeout):
	}

	// Closing: the waiting write gives up pgClosingTimeout later.
	closingAt := time.Now()
	st.SetClosing()
	limit := pgClosingTimeout + 5*time.Second // slack for a loaded machine
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the write succeeded through a frozen proxy")
		}
		t.Logf("the waiting write failed %s after SetClosing: %v", time.Since(closingAt).Round(time.Millisecond), err)
	case <-time.After(limit):
		t.Fatalf("the waiting write still waits %s after SetClosing", limit)
	}
	within := func(what string, f func() error) {
		t.Helper()
		start := time.Now()
		err := f()
		took := time.Since(start)
		t.Logf("%s: %s, %v", what, took.Round(time.Millisecond), err)
		if took > limit {
			t.Errorf("%s took %s once closing, want at most %s", what, took.Round(time.Millisecond), limit)
		}
	}
	within("a new write", func() error {
		_, err := st.EnsureBuilder("c")
		if err == nil {
			t.Error("a new write succeeded through a frozen proxy")
		}
		return err
	})
	within("a read", func() error {
		_, err := st.Builders()
		if err == nil {
			t.Error("a read succeeded through a frozen proxy")
		}
		return err
	})
	within("SetMasterActive", func() error {
		err := st.SetMasterActive(1, false, time.Now())
		if err == nil {
			t.Error("SetMasterActive succeeded through a frozen proxy")
		}
		return err
	})
	within("the lock's Unlock", l.Unlock)
	within("Close", st.Close)
}

// TestClosingStillWrites: a closing store whose database answers still
// writes and reads, as a master stopping cleanly records its builds' end
// and that it stopped.
func TestClosingStillWrites(t *testing.T) {
	t.Parallel()
	st, err := OpenPG(pg.NewDatabase(t), Options{Events: newEventLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, ok, err := st.Lock("leader")
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}
	st.SetClosing()
	b, err := st.EnsureBuilder("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.CountBuildsets(BuildsetFilter{}); err != nil || n != 1 {
		t.Errorf("%d buildsets (%v), want 1", n, err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("Unlock while closing: %v", err)
	}
	l2, ok, err := st.Lock("leader")
	if err != nil || !ok {
		t.Fatalf("Lock again after Unlock = %v, %v; want granted", ok, err)
	}
	l2.Unlock()
}
