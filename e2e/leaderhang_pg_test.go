package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gbb-ci/gbb/internal/testproxy"
)

// leaderHangConfig: master_timeout is long, so that the master whose lock
// connection hangs (its other connections work: it beats) is not presumed
// dead meanwhile; only the lock's own handling may let the other lead.
const leaderHangConfig = loopback + `
[db]
url = "{{.DB}}"
heartbeat_interval = "1s"
master_timeout = "5m"

[[workers]]
name = "w1"
password = "secret-secret-secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["b"]

[[builders]]
name = "b"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "true"
`

// TestLeaderLockConnectionHangs: master a leads, reaching PostgreSQL
// through a proxy that then freezes a's lock connection without closing
// it (the server still sees the session, holding the lock). Within
// seconds that session is ended, a master leads again through a session
// that works, and both masters' /api/v2/masters name that master.
func TestLeaderLockConnectionHangs(t *testing.T) {
	t.Parallel()
	pg := startPG(t)
	db := pg.NewDatabase(t)
	proxy, viaProxy := testproxy.ForURL(t, db)

	a, b := newEnv(t), newEnv(t)
	a.writeConfigData(leaderHangConfig, map[string]any{"WebPort": a.WebPort, "WorkerPort": a.WorkerPort, "DB": viaProxy})
	b.writeConfigData(leaderHangConfig, map[string]any{"WebPort": b.WebPort, "WorkerPort": b.WorkerPort, "DB": db})
	logMastersOnFailure(t, a, b)
	aID, bID := startLeaderThenOther(t, a, b)

	// Freeze the connection of the session holding a's leader lock.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var port int
	if err := admin.QueryRow(ctx, `SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()`).Scan(&port); err != nil {
		t.Fatalf("the leader lock's session: %v", err)
	}
	frozeAt := time.Now()
	proxy.Freeze(t, port)

	// The frozen session ends, a new session holds the lock, and both
	// masters' APIs name the master it belongs to (a itself may take the
	// lead again, through a new connection: it reaches the database).
	var holder int64
	waitFor(t, "the frozen session to end and a master to lead", time.Minute, func() bool {
		var frozen bool
		var by []int
		rows, err := admin.Query(ctx, `SELECT a.client_port, a.client_port = $1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()`, port)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var p int
			var f bool
			if err := rows.Scan(&p, &f); err != nil {
				t.Fatal(err)
			}
			frozen = frozen || f
			by = append(by, p)
		}
		if rows.Err() != nil || frozen || len(by) != 1 {
			return false
		}
		holder = bID
		if proxy.Proxied(by[0]) {
			holder = aID
		}
		return leader(a) == holder && leader(b) == holder
	})
	t.Logf("master %d leads %s after a's lock connection froze (a is %d, b %d)", holder, time.Since(frozeAt).Round(100*time.Millisecond), aID, bID)
}
