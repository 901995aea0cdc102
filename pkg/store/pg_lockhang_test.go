package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gbb-ci/gbb/internal/testproxy"
)

// TestLockLeaderHangs: master A holds the lock through a proxy that then
// freezes the lock's connection without closing it, so the server still
// sees A's session, idle, holding the lock. A learns that it lost the
// lock, and its store ends that session on the server, so that master B
// takes the lock within seconds rather than never.
func TestLockLeaderHangs(t *testing.T) {
	t.Parallel()
	dbURL := pg.NewDatabase(t)
	proxy, viaProxy := testproxy.ForURL(t, dbURL)

	a, err := OpenPG(viaProxy, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPG(dbURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	la, ok, err := a.Lock("leader")
	if err != nil || !ok {
		t.Fatalf("A's Lock = %v, %v", ok, err)
	}
	if _, ok, err := b.Lock("leader"); err != nil || ok {
		t.Fatalf("B's Lock while A holds it = %v, %v; want not granted", ok, err)
	}

	// Freeze the connection of A's lock's session.
	admin, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	pid := la.(*pgLock).pid
	var port int
	if err := admin.QueryRow(context.Background(), "SELECT client_port FROM pg_stat_activity WHERE pid = $1", pid).Scan(&port); err != nil {
		t.Fatalf("A's lock session (backend %d): %v", pid, err)
	}
	frozeAt := time.Now()
	proxy.Freeze(t, port)

	select {
	case <-la.Lost():
		t.Logf("A lost the lock %s after the freeze", time.Since(frozeAt).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("A's lock not lost 30s after its connection froze")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		lb, ok, err := b.Lock("leader")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Logf("B took the lock %s after the freeze", time.Since(frozeAt).Round(time.Millisecond))
			defer lb.Unlock()
			break
		}
		if time.Now().After(deadline) {
			var n int
			admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
			t.Fatalf("B has not taken the lock %s after A's connection froze (A's session alive on the server: %v)", time.Since(frozeAt), n == 1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A's master stops leading: Unlock after the loss returns, without error.
	if err := la.Unlock(); err != nil {
		t.Errorf("A's Unlock after the loss: %v", err)
	}
}

// TestLockSessionNoticesVanishedClient: the lock's session asks the
// server to notice a vanished client within seconds (keepalives and a
// user timeout), where the system's defaults take hours.
func TestLockSessionNoticesVanishedClient(t *testing.T) {
	t.Parallel()
	st, err := OpenPG(pg.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, ok, err := st.Lock("leader")
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}
	defer l.Unlock()
	conn := l.(*pgLock).conn
	got := map[string]string{}
	for _, k := range []string{"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"} {
		var v string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", k).Scan(&v); err != nil {
			t.Fatal(err)
		}
		got[k] = v
	}
	want := map[string]string{"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
		"tcp_keepalives_count": "3", "tcp_user_timeout": "15000"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lock session's settings = %v, want %v", got, want)
	}
}
