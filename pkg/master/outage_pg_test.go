package master

import (
	"context"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gbb-ci/gbb/internal/testpg"
	"github.com/gbb-ci/gbb/internal/teststore"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestOutageExpiresNoOne: the database is away longer than master_timeout
// for every master. Once it is back, a master does not presume another
// dead for the silence they both sat out, even before that one's next
// heartbeat (an outside probe saw it 0.3 s after the database came back);
// a master silent since before the outage is presumed dead at once, and
// one that stays silent after it, master_timeout after the database's
// return.
func TestOutageExpiresNoOne(t *testing.T) {
	t.Parallel()
	srv, err := testpg.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	url := srv.NewDatabase(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	bus := events.New(events.Config{})
	st := teststore.OpenURL(t, url, store.Options{Events: bus})
	other := teststore.OpenURL(t, url, store.Options{})
	me := must(st.EnsureMaster("me"))(t)
	silent := must(other.EnsureMaster("silent"))(t) // heartbeats never
	peer := must(other.EnsureMaster("peer"))(t)     // heartbeats when the test says

	const beat, timeout = 100 * time.Millisecond, time.Second
	var beats atomic.Int64
	c := &cluster{
		st: st, bus: bus, id: me.ID, log: slog.New(slog.DiscardHandler),
		beat: beat, timeout: timeout, now: time.Now,
		fence: func() {},
		lead: func(ctx context.Context, started chan<- struct{}) error {
			close(started)
			<-ctx.Done()
			return nil
		},
		onBeat: func() { beats.Add(1) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	first := make(chan struct{})
	go func() { done <- c.run(ctx, first) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cluster run: %v", err)
		}
	}()
	<-first
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after 30s: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	active := func(id int64) bool {
		ms, err := other.Masters()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.ID == id {
				return m.Active
			}
		}
		t.Fatalf("master %d not listed", id)
		return false
	}
	// silent is presumed dead before the outage.
	waitFor("the silent master presumed dead", func() bool {
		_, err := other.Heartbeat(peer.ID)
		return err == nil && !active(silent.ID)
	})

	admin, allow := refuseConnections(t, srv, dbname)
	defer allow()
	// The outage lasts longer than master_timeout (by the database's
	// clock, which the last seen times are of).
	var outageStart time.Time
	if err := admin.QueryRow(t.Context(), "SELECT clock_timestamp()").Scan(&outageStart); err != nil {
		t.Fatal(err)
	}
	waitFor("an outage longer than master_timeout", func() bool {
		var now time.Time
		if err := admin.QueryRow(t.Context(), "SELECT clock_timestamp()").Scan(&now); err != nil {
			t.Fatal(err)
		}
		return now.Sub(outageStart) > 2*timeout
	})
	allow()
	// me beats and reaps a few times with the database back, before
	// peer's first heartbeat since.
	n := beats.Load()
	waitFor("me back at the database", func() bool {
		ms, err := st.Masters()
		return err == nil && beats.Load() >= n+3 && len(ms) > 0
	})
	n = beats.Load()
	waitFor("two more rounds", func() bool { return beats.Load() >= n+2 })
	if alive, err := other.Heartbeat(peer.ID); err != nil || !alive {
		t.Fatalf("peer's first heartbeat after the outage: alive %v, %v; want alive (not presumed dead for the outage)", alive, err)
	}
	// peer now stays silent: presumed dead master_timeout later.
	waitFor("the peer, silent after the outage, presumed dead", func() bool { return !active(peer.ID) })
}

// refuseConnections makes srv's database dbname refuse connections and
// ends those it has, as a database gone away does for its clients (the
// server itself still answers the test); allow lets them in again. The
// test's admin connection (to database postgres) is returned, and closed
// when t ends.
func refuseConnections(t *testing.T, srv *testpg.Server, dbname string) (admin *pgx.Conn, allow func()) {
	t.Helper()
	admin, err := pgx.Connect(t.Context(), srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	set := func(on bool) {
		t.Helper()
		sql := fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pgx.Identifier{dbname}.Sanitize(), on)
		if _, err := admin.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	set(false)
	if _, err := admin.Exec(t.Context(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbname); err != nil {
		t.Fatal(err)
	}
	return admin, sync.OnceFunc(func() { set(true) })
}
