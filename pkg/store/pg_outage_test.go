package store

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// outage cuts the database named in dbURL off: no new connection is
// accepted and every open one is ended, as a restart of PostgreSQL does.
// The returned func lets connections in again.
func outage(t *testing.T, dbURL string) (end func()) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := pgx.Connect(context.Background(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := admin.Exec(context.Background(), sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`ALTER DATABASE "` + name + `" ALLOW_CONNECTIONS false`)
	exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
	return func() { exec(`ALTER DATABASE "` + name + `" ALLOW_CONNECTIONS true`) }
}

// TestWritesOutliveARestart: while the database is away (connections
// ended and refused), a write waits and goes through once it is back,
// rather than failing the build that made it; a read too. Ping reports
// the outage, for the master's /readyz.
func TestWritesOutliveARestart(t *testing.T) {
	dbURL := pg.NewDatabase(t)
	st, err := OpenPG(dbURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := st.EnsureBuilder("b")
	if err != nil {
		t.Fatal(err)
	}
	end := outage(t, dbURL)
	if err := st.Ping(context.Background()); err == nil {
		t.Error("Ping answered during the outage")
	}
	done := make(chan error, 2)
	go func() {
		_, _, err := st.AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}})
		done <- err
	}()
	go func() {
		_, err := st.Builders()
		done <- err
	}()
	// Both are waiting for the database: neither has failed yet.
	select {
	case err := <-done:
		t.Fatalf("a call ended during the outage: %v", err)
	case <-time.After(time.Second): // the outage lasts a second
	}
	end()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("after the outage: %v", err)
		}
	}
	if n, err := st.CountBuildsets(BuildsetFilter{}); err != nil || n != 1 {
		t.Errorf("%d buildsets (%v), want 1: stored exactly once", n, err)
	}
	if err := st.Ping(context.Background()); err != nil {
		t.Errorf("Ping after the outage: %v", err)
	}
	if err := st.Check(); err != nil {
		t.Error(err)
	}
}
