package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testproxy"
)

// longBuildConfig is both masters' config but for their ports, database
// URL and master_timeout ({{.Timeout}}): a "long" builder on w1 (master
// a's worker) and w2 (master b's) whose step waits for the file {{.Go}}.
const longBuildConfig = loopback + `
[db]
url = "{{.DB}}"
heartbeat_interval = "1s"
master_timeout = "{{.Timeout}}"

[[workers]]
name = "w1"
password = "secret-secret-secret"
[[workers]]
name = "w2"
password = "secret-secret-secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["long"]

[[builders]]
name = "long"
worker_names = ["w1", "w2"]
  [[builders.steps]]
  type = "shell"
  command = "while [ ! -f {{.Go}} ]; do sleep 0.05; done"
`

// TestCutOffMasterStops: master a, the leader, reaches PostgreSQL through
// a proxy; while its build runs, every connection through the proxy
// freezes, old and new (a firewall dropping the host's packets).
// `gbb-master stop` of a then succeeds well within its minute, rather
// than each shutdown write waiting for the database in turn; master b
// presumes a dead, ends its build RETRY and runs the request again, once,
// to SUCCESS.
func TestCutOffMasterStops(t *testing.T) {
	t.Parallel()
	pg := startPG(t)
	db := pg.NewDatabase(t)
	// As docs/postgresql.md says: the server ends the sessions that a
	// master cut off in the middle of a transaction left holding their
	// rows' locks, so that the others can end its builds.
	setDatabase(t, db, "idle_in_transaction_session_timeout", "2s")
	proxy, viaProxy := testproxy.ForURL(t, db)

	a, b := newEnv(t), newEnv(t)
	goFile := filepath.Join(t.TempDir(), "go")
	a.writeConfigData(longBuildConfig, map[string]any{"WebPort": a.WebPort, "WorkerPort": a.WorkerPort, "DB": viaProxy, "Go": goFile, "Timeout": "10s"})
	b.writeConfigData(longBuildConfig, map[string]any{"WebPort": b.WebPort, "WorkerPort": b.WorkerPort, "DB": db, "Go": goFile, "Timeout": "10s"})
	logMastersOnFailure(t, a, b)
	aID, bID := startLeaderThenOther(t, a, b)
	startWorkerAt(t, a, "w1", fmt.Sprintf("127.0.0.1:%d", a.WorkerPort))
	brid := a.force("force", builderID(t, a, "long"), "cut off")
	waitFor(t, "the build running on master a", 2*time.Minute, func() bool {
		for _, bd := range allBuilds(a) {
			if bd.BuildRequestID == brid && !bd.Complete && bd.MasterID == aID {
				return true
			}
		}
		return false
	})
	startWorkerAt(t, b, "w2", fmt.Sprintf("127.0.0.1:%d", b.WorkerPort))

	proxy.FreezeAll()
	const within = 45 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, a.master, "stop", a.masterDir).CombinedOutput()
	took := time.Since(start)
	t.Logf("gbb-master stop of the cut-off master: %s: %v\n%s", took.Round(100*time.Millisecond), err, out)
	if err != nil {
		t.Fatalf("gbb-master stop of the cut-off master failed after %s: %v\n%s", took.Round(100*time.Millisecond), err, out)
	}
	if took > within {
		t.Errorf("gbb-master stop took %s, want at most %s", took.Round(100*time.Millisecond), within)
	}
	logA, _ := os.ReadFile(filepath.Join(a.masterDir, "master.log"))
	if !strings.Contains(string(logA), "master stopped") {
		t.Errorf("master a's log does not say it stopped")
	}
	if !strings.Contains(string(logA), "the database does not answer while this master stops") {
		t.Errorf("master a's log does not say why it gave up on the database")
	}

	// b presumes a dead, ends its build RETRY and runs the request on w2.
	waitFor(t, "master b to run the request again", 2*time.Minute, func() bool {
		for _, bd := range allBuilds(b) {
			if bd.BuildRequestID == brid && bd.MasterID == bID {
				return true
			}
		}
		return false
	})
	for _, m := range masters(b) {
		if m.MasterID == aID && m.Active {
			t.Errorf("master a shown active after it was presumed dead: %+v", m)
		}
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitRequestComplete(t, b, brid)
	var got []string
	for _, bd := range allBuilds(b) {
		if bd.BuildRequestID == brid {
			res := -1
			if bd.Results != nil {
				res = *bd.Results
			}
			who := "b"
			if bd.MasterID == aID {
				who = "a"
			}
			got = append(got, fmt.Sprintf("%s:%v:%d", who, bd.Complete, res))
		}
	}
	if want := "a:true:5 b:true:0"; strings.Join(got, " ") != want {
		t.Errorf("builds of the request (master:complete:results) = %v, want %s", got, want)
	}
}
