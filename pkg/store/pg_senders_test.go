package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gbb-ci/gbb/internal/testpg"
)

// TestPGNotificationsFromOutsiders: NOTIFY needs no privilege, so a role
// that may only connect to the database (PUBLIC's default) can send on
// the masters' channels. The masters ignore what such a session sends: a
// forged "master stopped" event (which would make the master believe it
// was presumed dead, and restart) and a forged control message (which
// would stop a build); what another master sends still arrives.
func TestPGNotificationsFromOutsiders(t *testing.T) {
	t.Parallel()
	onPostgres(t, func(t *testing.T, be backend) {
		url := be.newLoc(t)
		aLog := newEventLog()
		a := be.openAt(t, url, Options{Events: aLog})
		b := be.openAt(t, url, Options{Events: newEventLog()})
		ma := must[Master](t)(a.EnsureMaster("a"))
		must[Master](t)(b.EnsureMaster("b"))
		aIn := make(controlInbox, 10)
		a.SetControl(aIn.handle)

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		intruder := outsider(t, url)
		if _, err := intruder.Exec(ctx, "SELECT data FROM masters"); err == nil {
			t.Fatal("the intruder's role may read the masters table")
		}
		forged := []struct{ channel, payload string }{
			{pgControlChannel, fmt.Sprintf(`{"to":%d,"what":"build","id":5,"action":"stop","reason":"forged"}`, ma.ID)},
			{pgChannel, fmt.Sprintf(`{"o":"x","e":[{"k":"masters/%d/stopped","t":"master","r":{"ID":%d,"Name":"a"}}]}`, ma.ID, ma.ID)},
		}
		for _, f := range forged {
			if _, err := intruder.Exec(ctx, "SELECT pg_notify($1, $2)", f.channel, f.payload); err != nil {
				t.Fatal(err)
			}
		}
		// Notifications arrive in the order sent: once b's arrive, the
		// intruder's have been seen.
		bld := must[Builder](t)(b.EnsureBuilder("after"))
		ok(t, b.SendControl(Control{To: ma.ID, What: ControlBuild, ID: 7, Action: "stop", Reason: "real"}))
		if got := aIn.next(t, "b's stop"); got.ID != 7 || got.Reason != "real" {
			t.Errorf("a's first control message: %+v, want b's (the intruder's ignored)", got)
		}
		key := fmt.Sprintf("builders/%d/new", bld.ID)
		for deadline := time.Now().Add(30 * time.Second); ; {
			evs := aLog.snapshot()
			if strings.Contains(strings.Join(keysOf(evs), " "), key) {
				for _, e := range evs {
					if e.key == fmt.Sprintf("masters/%d/stopped", ma.ID) {
						t.Errorf("a published the intruder's event %s: %+v", e.key, e.record)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a did not receive b's event %s: %v", key, keysOf(evs))
			}
			select {
			case <-aLog.more:
			case <-time.After(time.Second):
			}
		}
	})
}

// outsider connects to the database at url as a new role that may only
// connect (PUBLIC's default); the role is dropped when t ends.
func outsider(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var rb [4]byte
	rand.Read(rb[:])
	role := "intruder_" + hex.EncodeToString(rb[:])
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		admin.Close(context.Background())
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, strings.Replace(url, "//"+testpg.Superuser+"@", "//"+role+"@", 1))
	t.Cleanup(func() {
		if c != nil {
			c.Close(context.Background())
		}
		if _, err := admin.Exec(context.Background(), "DROP ROLE "+role); err != nil {
			t.Errorf("drop role: %v", err)
		}
		admin.Close(context.Background())
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPGNotificationFloodFromOutsider: a session that may only connect
// floods the masters' channel; the masters' own notifications still get
// through, that of a master session which closed before the listener
// reached it included (a master stopping: a re-probe saw its last events
// dropped behind a flood, the listener checking each sender one query at
// a time, after the session had gone).
func TestPGNotificationFloodFromOutsider(t *testing.T) {
	t.Parallel()
	onPostgres(t, func(t *testing.T, be backend) {
		url := be.newLoc(t)
		aLog := newEventLog()
		a := be.openAt(t, url, Options{Events: aLog})
		b := be.openAt(t, url, Options{Events: newEventLog()})
		ma := must[Master](t)(a.EnsureMaster("a"))
		must[Master](t)(b.EnsureMaster("b"))
		aIn := make(controlInbox, 10)
		a.SetControl(aIn.handle)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// A master's session, open before the flood, sends one batch
		// of events and closes at once.
		leaving, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		intruder := outsider(t, url)
		if _, err := intruder.Exec(ctx, "SELECT count(pg_notify($1, g::text)) FROM generate_series(1, 100000) g", pgChannel); err != nil {
			t.Fatal(err)
		}
		if _, err := leaving.Exec(ctx, "SELECT pg_notify($1, $2)", pgChannel,
			`{"o":"leaving","e":[{"k":"builders/99/new","t":"builder","r":{"ID":99,"Name":"late"}}]}`); err != nil {
			t.Fatal(err)
		}
		leaving.Close(ctx)
		ok(t, b.SendControl(Control{To: ma.ID, What: ControlBuild, ID: 7, Action: "stop", Reason: "after the flood"}))
		if got := aIn.next(t, "b's stop after the flood"); got.ID != 7 {
			t.Errorf("a's control message: %+v, want b's", got)
		}
		if keys := strings.Join(keysOf(aLog.snapshot()), " "); !strings.Contains(keys, "builders/99/new") {
			t.Errorf("a did not publish the events of the master session that closed behind the flood: %s", keys)
		}
	})
}
