package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/internal/testpg"
)

// pgServer is the PostgreSQL server the e2e tests that need one share,
// started by the first (testpg installs Debian's package when missing) and
// stopped when the test binary's tests are done (pgServerStop, TestMain).
var (
	pgOnce   sync.Once
	pgServer *testpg.Server
	pgErr    error
)

// startPG returns the shared server, starting it on first use; a server
// that cannot start fails the test.
func startPG(t *testing.T) *testpg.Server {
	t.Helper()
	pgOnce.Do(func() { pgServer, pgErr = testpg.Start() })
	if pgErr != nil {
		t.Fatalf("PostgreSQL: %v", pgErr)
	}
	return pgServer
}

// pgServerStop stops the shared server, if a test started one.
func pgServerStop() {
	if pgServer != nil {
		if err := pgServer.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testpg:", err)
		}
	}
}

// twoMastersConfig is both masters' config but for their ports: one
// PostgreSQL store; four workers; "slow" builds (forced) that run long
// enough to be caught by a SIGKILL, "onchange" builds of each change of
// {{.Dir}}/repo, found by a poller or posted to a webhook.
const twoMastersConfig = loopback + `
[www.change_hook.base]

[db]
url = "{{.DB}}"
heartbeat_interval = "1s"
master_timeout = "6s"

[[workers]]
name = "w1"
password = "secret-secret-secret"
[[workers]]
name = "w2"
password = "secret-secret-secret"
[[workers]]
name = "w3"
password = "secret-secret-secret"
[[workers]]
name = "w4"
password = "secret-secret-secret"

[[change_source]]
type = "git_poller"
repourl = "file://{{.Repo}}"
branches = ["master"]
poll_interval = "1s"

[[schedulers]]
type = "single_branch"
name = "on-master"
branch = "master"
builder_names = ["onchange"]

[[schedulers]]
type = "force"
name = "force"
builder_names = ["slow"]

[[builders]]
name = "slow"
worker_names = ["w1", "w2", "w3", "w4"]
  [[builders.steps]]
  type = "shell"
  command = "sleep 4"

[[builders]]
name = "onchange"
worker_names = ["w1", "w2", "w3", "w4"]
  [[builders.steps]]
  type = "shell"
  command = "true"
`

// apiMaster is a master as /api/v2/masters gives it.
type apiMaster struct {
	MasterID int64  `json:"masterid"`
	Name     string `json:"name"`
	Active   bool   `json:"active"`
	Leader   bool   `json:"leader"`
}

// fullBuild is a build with the master that ran it.
type fullBuild struct {
	apiBuild
	MasterID int64 `json:"masterid"`
}

// TestTwoMastersPostgres: two masters (the same config, their own ports)
// and four workers on one PostgreSQL, builds forced on both, the leader
// SIGKILLed while builds run on both: every request ends exactly once,
// no commit builds twice (a poller change, a webhook change posted to the
// master that does not lead), the survivor's API and pages show the dead
// master's builds, and the survivor takes the lead.
func TestTwoMastersPostgres(t *testing.T) {
	t.Parallel()
	pg := startPG(t)
	db := pg.NewDatabase(t)
	a, b := newEnv(t), newEnv(t)
	rp := newRepo(t, filepath.Join(a.Dir, "repo"))
	for _, e := range []*env{a, b} {
		e.writeConfigData(twoMastersConfig, map[string]any{
			"WebPort": e.WebPort, "WorkerPort": e.WorkerPort, "DB": db, "Repo": rp.dir,
		})
	}
	logMastersOnFailure(t, a, b)
	a.startMaster()
	waitFor(t, "master a to lead", time.Minute, func() bool { return leader(a) != 0 })
	b.startMaster()
	aID, bID := leader(a), int64(0)
	for _, m := range masters(b) {
		if m.MasterID != aID {
			bID = m.MasterID
		}
	}
	if bID == 0 {
		t.Fatalf("master b is not in /api/v2/masters: %+v", masters(b))
	}
	// w1, w2 prefer a; w3, w4 prefer b; each moves to the other when its
	// master goes away.
	both := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", a.WorkerPort, b.WorkerPort)
	other := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", b.WorkerPort, a.WorkerPort)
	for i, order := range []string{both, both, other, other} {
		startWorkerAt(t, a, fmt.Sprintf("w%d", i+1), order)
	}
	waitFor(t, "four workers connected", 2*time.Minute, func() bool {
		var r struct {
			Workers []struct {
				ConnectedTo []map[string]int64 `json:"connected_to"`
			}
		}
		b.get("/api/v2/workers", &r)
		n := 0
		for _, w := range r.Workers {
			n += len(w.ConnectedTo)
		}
		return n == 4
	})
	var slow struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
		} `json:"builders"`
	}
	b.get("/api/v2/builders/slow", &slow)
	if len(slow.Builders) != 1 {
		t.Fatalf("builder slow: %+v", slow)
	}
	slowID := slow.Builders[0].BuilderID

	// Builds forced on both masters; they run on both.
	var brids []int64
	for i := range 4 {
		brids = append(brids, a.force("force", slowID, fmt.Sprintf("on a %d", i)))
		brids = append(brids, b.force("force", slowID, fmt.Sprintf("on b %d", i)))
	}
	waitFor(t, "builds running on both masters", 2*time.Minute, func() bool {
		on := map[int64]bool{}
		for _, bd := range allBuilds(b) {
			if !bd.Complete {
				on[bd.MasterID] = true
			}
		}
		return on[aID] && on[bID]
	})
	// A change posted to the master that does not lead: the leader's
	// schedulers hear of it through the database. A commit the leader's
	// poller finds (once its first poll recorded the branch's tip).
	hookRev := "f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed"
	postChange(t, b, hookRev)
	waitFor(t, "the leader to schedule the change posted to the other master", time.Minute, func() bool {
		n, _ := changeBuilds(b, hookRev)
		return n == 1
	})
	waitFor(t, "the leader's poller's first poll", time.Minute, func() bool {
		data, _ := os.ReadFile(filepath.Join(a.masterDir, "master.log"))
		return strings.Contains(string(data), "first poll: recording the tips")
	})
	rev1 := rp.commit("one")
	waitFor(t, "the leader to schedule the commit", time.Minute, func() bool {
		n, _ := changeBuilds(b, rev1)
		return n == 1
	})

	// The leader dies mid-build.
	pid := masterPid(t, a)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, "master b to lead", 2*time.Minute, func() bool { return leader(b) == bID })
	t.Logf("master b leads %s after master a was killed", time.Since(killed).Round(time.Millisecond))
	waitFor(t, "master a shown stopped", 2*time.Minute, func() bool {
		for _, m := range masters(b) {
			if m.MasterID == aID {
				return !m.Active
			}
		}
		return false
	})
	rev2 := rp.commit("two") // polled by b now

	// Every request ends once: one build that did not RETRY, and its
	// request complete.
	waitFor(t, "every forced request complete", 3*time.Minute, func() bool {
		for _, id := range brids {
			var r struct {
				Buildrequests []struct {
					Complete bool `json:"complete"`
				}
			}
			b.get(fmt.Sprintf("/api/v2/buildrequests/%d", id), &r)
			if len(r.Buildrequests) != 1 || !r.Buildrequests[0].Complete {
				return false
			}
		}
		return true
	})
	all := allBuilds(b)
	retried := 0
	for _, id := range brids {
		var ended []fullBuild
		for _, bd := range all {
			if bd.BuildRequestID != id {
				continue
			}
			if !bd.Complete {
				t.Errorf("request %d complete with build %d still running", id, bd.BuildID)
			}
			if bd.Results != nil && *bd.Results == 5 { // RETRY
				retried++
				continue
			}
			ended = append(ended, bd)
		}
		if len(ended) != 1 || ended[0].Results == nil || *ended[0].Results != 0 {
			t.Errorf("request %d ended by %+v, want one build, SUCCESS", id, ended)
		}
	}
	if retried == 0 {
		t.Errorf("no build of the killed master ended RETRY: %+v", all)
	}

	// Each change once, each built once.
	for _, rev := range []string{rev1, hookRev, rev2} {
		waitFor(t, "the change "+rev+" built", 2*time.Minute, func() bool {
			n, done := changeBuilds(b, rev)
			return n == 1 && done
		})
	}
	// Give a second announcement time to show (a second poll, a second
	// leader), then count again.
	time.Sleep(3 * time.Second)
	for _, rev := range []string{rev1, hookRev, rev2} {
		var r struct {
			Changes []map[string]any `json:"changes"`
		}
		b.get("/api/v2/changes?revision="+rev, &r)
		if len(r.Changes) != 1 {
			t.Errorf("revision %s: %d changes, want 1", rev, len(r.Changes))
		}
		if n, _ := changeBuilds(b, rev); n != 1 {
			t.Errorf("revision %s built %d times, want once", rev, n)
		}
	}

	// The survivor shows the dead master's builds, in the API and on its
	// pages.
	var fromA []fullBuild
	for _, bd := range allBuilds(b) {
		if bd.MasterID == aID {
			fromA = append(fromA, bd)
		}
	}
	if len(fromA) == 0 {
		t.Fatal("the survivor's API shows no build of the dead master")
	}
	page := fmt.Sprintf("/builders/%d/builds/%d", fromA[0].BuilderID, fromA[0].Number)
	if body := b.getText(page); !strings.Contains(body, "RETRY") && !strings.Contains(body, "retry") && !strings.Contains(body, "success") {
		t.Errorf("the survivor's page %s does not show the dead master's build's result:\n%s", page, body)
	}
	if body := b.getText("/masters"); !strings.Contains(body, `id="master-`+strconv.FormatInt(aID, 10)+`" class="master-row inactive"`) {
		t.Errorf("the survivor's masters page does not show master a stopped:\n%s", body)
	}
}

// startWorkerAt runs gbb-worker w, naming masters (HOST:PORT,...), until
// the test ends.
func startWorkerAt(t *testing.T, e *env, name, masters string) {
	t.Helper()
	cmd := exec.Command(e.worker, "-master", masters, "-name", name, "-password", "secret-secret-secret",
		"-basedir", filepath.Join(e.Dir, "worker-"+name))
	logf, err := os.Create(filepath.Join(e.Dir, "worker-"+name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() { stopWorkerProcess(cmd.Process, done) })
}

// logMastersOnFailure logs the end of master a's and b's logs when t
// fails.
func logMastersOnFailure(t *testing.T, a, b *env) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for name, e := range map[string]*env{"a": a, "b": b} {
			data, _ := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
			if len(data) > 20000 {
				data = data[len(data)-20000:]
			}
			t.Logf("master %s's log (its end):\n%s", name, data)
		}
	})
}

// startLeaderThenOther starts master a and waits for it to lead, then
// starts b and waits for a to see it active; it returns their ids.
func startLeaderThenOther(t *testing.T, a, b *env) (aID, bID int64) {
	t.Helper()
	a.startMaster()
	waitFor(t, "master a to lead", time.Minute, func() bool { return leader(a) != 0 })
	aID = leader(a)
	b.startMaster()
	waitFor(t, "master b registered", time.Minute, func() bool {
		for _, m := range masters(a) {
			if m.MasterID != aID && m.Active {
				bID = m.MasterID
			}
		}
		return bID != 0
	})
	return aID, bID
}

// masters lists /api/v2/masters of e.
func masters(e *env) []apiMaster {
	var r struct{ Masters []apiMaster }
	e.get("/api/v2/masters", &r)
	return r.Masters
}

// leader returns the id of the master e's API says leads, or 0.
func leader(e *env) int64 {
	for _, m := range masters(e) {
		if m.Leader {
			return m.MasterID
		}
	}
	return 0
}

func allBuilds(e *env) []fullBuild {
	var r struct{ Builds []fullBuild }
	e.get("/api/v2/builds?order=buildid", &r)
	return r.Builds
}

// masterPid reads the pid file of e's master.
func masterPid(t *testing.T, e *env) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.masterDir, "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// postChange posts a change of revision rev on branch master to e's base
// webhook.
func postChange(t *testing.T, e *env, rev string) {
	t.Helper()
	body := fmt.Sprintf(`{"comments":"hook","author":"A <a@example.org>","revision":%q,"branch":"master","repository":"r"}`, rev)
	resp, err := http.Post(e.url("/change_hook/base"), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook: %s", resp.Status)
	}
}

// changeBuilds returns how many buildsets build the change of revision
// rev, and whether they are all complete.
func changeBuilds(e *env, rev string) (int, bool) {
	var cs struct {
		Changes []struct {
			ChangeID int64 `json:"changeid"`
		} `json:"changes"`
	}
	e.get("/api/v2/changes?revision="+rev, &cs)
	if len(cs.Changes) == 0 {
		return 0, false
	}
	var bss struct {
		Buildsets []struct {
			Complete     bool `json:"complete"`
			SourceStamps []struct {
				Revision string `json:"revision"`
			} `json:"sourcestamps"`
		} `json:"buildsets"`
	}
	e.get("/api/v2/buildsets", &bss)
	n, done := 0, true
	for _, bs := range bss.Buildsets {
		if len(bs.SourceStamps) == 1 && bs.SourceStamps[0].Revision == rev {
			n++
			done = done && bs.Complete
		}
	}
	return n, done
}

// comeBackConfig is both masters' config but for their ports: one
// PostgreSQL store, a "slow" builder on w1 (which serves master a) and w2
// (which serves master b).
const comeBackConfig = loopback + `
[db]
url = "{{.DB}}"
heartbeat_interval = "1s"
master_timeout = "5s"

[[workers]]
name = "w1"
password = "secret-secret-secret"
[[workers]]
name = "w2"
password = "secret-secret-secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["slow"]

[[builders]]
name = "slow"
worker_names = ["w1", "w2"]
  [[builders.steps]]
  type = "shell"
  command = "sleep 3"
`

// TestMasterPresumedDeadComesBack: the leader hangs (SIGSTOP) mid-build
// longer than master_timeout: the other master, which does not lead,
// presumes it dead, ends its build RETRY and runs the request again, and
// takes the lead (the hung master's database sessions were ended). When
// the hung master resumes, it finds itself presumed dead, records nothing
// more of its build, and starts afresh: it is active again, one master
// leads, and the request ended once, SUCCESS, with the hung master's build
// left RETRY.
func TestMasterPresumedDeadComesBack(t *testing.T) {
	t.Parallel()
	pg := startPG(t)
	db := pg.NewDatabase(t)
	// As docs/postgresql.md says: a master that hangs inside a transaction
	// holds its rows' locks; the server ends such a session, so that the
	// others can end its builds.
	setDatabase(t, db, "idle_in_transaction_session_timeout", "2s")
	a, b := newEnv(t), newEnv(t)
	for _, e := range []*env{a, b} {
		e.writeConfigData(comeBackConfig, map[string]any{"WebPort": e.WebPort, "WorkerPort": e.WorkerPort, "DB": db})
	}
	logMastersOnFailure(t, a, b)
	aID, bID := startLeaderThenOther(t, a, b)
	startWorkerAt(t, a, "w1", fmt.Sprintf("127.0.0.1:%d", a.WorkerPort))
	brid := a.force("force", builderID(t, a, "slow"), "hang")
	waitFor(t, "the build running on master a", 2*time.Minute, func() bool {
		for _, bd := range allBuilds(a) {
			if bd.BuildRequestID == brid && !bd.Complete && bd.MasterID == aID {
				return true
			}
		}
		return false
	})
	startWorkerAt(t, b, "w2", fmt.Sprintf("127.0.0.1:%d", b.WorkerPort))
	pid := masterPid(t, a)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	// Master b presumes a dead and runs the request on w2, long after
	// a's build would have ended.
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
			t.Errorf("master a still shown active after it was presumed dead: %+v", m)
		}
	}
	// The hung leader's database sessions were ended when it was
	// presumed dead: its lock is free, and b leads while a still hangs.
	waitFor(t, "master b to lead while master a hangs", time.Minute, func() bool { return leader(b) == bID })
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	waitFor(t, "master a to start afresh", 2*time.Minute, func() bool {
		data, _ := os.ReadFile(filepath.Join(a.masterDir, "master.log"))
		return strings.Contains(string(data), "starting again: the other masters sharing the store presumed this one dead")
	})
	waitFor(t, "master a active again, and one master leading", 2*time.Minute, func() bool {
		ms := masters(b)
		leaders := 0
		aActive := false
		for _, m := range ms {
			if m.Leader {
				leaders++
			}
			if m.MasterID == aID {
				aActive = m.Active
			}
		}
		return aActive && leaders == 1
	})
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
	if want := []string{"a:true:5", "b:true:0"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("builds of the request (master:complete:results) = %v, want %v", got, want)
	}
	var r struct {
		Buildrequests []struct {
			Results *int `json:"results"`
		}
	}
	b.get(fmt.Sprintf("/api/v2/buildrequests/%d", brid), &r)
	if r.Buildrequests[0].Results == nil || *r.Buildrequests[0].Results != 0 {
		t.Errorf("request results %v, want SUCCESS", r.Buildrequests[0].Results)
	}
}

// setDatabase sets a PostgreSQL setting for every new session of the
// database url names.
func setDatabase(t *testing.T, url, name, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET "+pgx.Identifier{name}.Sanitize()+" = '"+value+"'"); err != nil {
		t.Fatal(err)
	}
}

// reportOnceConfig is both masters' config but for their ports: one
// PostgreSQL store, a quick builder on w1 (which serves master a) and w2
// (master b), and an http_status_push reporter.
const reportOnceConfig = loopback + `
[db]
url = "{{.DB}}"
heartbeat_interval = "1s"
master_timeout = "5s"

[[workers]]
name = "w1"
password = "secret-secret-secret"
[[workers]]
name = "w2"
password = "secret-secret-secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["quick"]

[[builders]]
name = "quick"
worker_names = ["w1", "w2"]
  [[builders.steps]]
  type = "shell"
  command = "echo hello"

[[reporters]]
type = "http_status_push"
url = "{{.Hook}}/status"
`

// TestTwoMastersReportOnce: with two masters on one PostgreSQL, builds run
// on both, and the reporters run on the leader only: each build's end is
// reported once, whichever master ran it.
func TestTwoMastersReportOnce(t *testing.T) {
	t.Parallel()
	pg := startPG(t)
	db := pg.NewDatabase(t)
	hook := newHookServer(t)
	hook.mu.Lock()
	hook.up = true
	hook.mu.Unlock()
	a, b := newEnv(t), newEnv(t)
	for _, e := range []*env{a, b} {
		e.writeConfigData(reportOnceConfig, map[string]any{"WebPort": e.WebPort, "WorkerPort": e.WorkerPort, "DB": db, "Hook": hook.URL})
	}
	a.startMaster()
	waitFor(t, "master a to lead", time.Minute, func() bool { return leader(a) != 0 })
	b.startMaster()
	startWorkerAt(t, a, "w1", fmt.Sprintf("127.0.0.1:%d", a.WorkerPort))
	startWorkerAt(t, b, "w2", fmt.Sprintf("127.0.0.1:%d", b.WorkerPort))
	// Both attached before the forces, so that both masters build (with
	// only w1 yet, master a may build them all).
	waitFor(t, "w1 on master a and w2 on master b", time.Minute, func() bool {
		ma, mb := connectedTo(a, "w1"), connectedTo(b, "w2")
		return ma != 0 && mb != 0 && ma != mb
	})
	var quick struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
		} `json:"builders"`
	}
	a.get("/api/v2/builders/quick", &quick)
	if len(quick.Builders) != 1 {
		t.Fatalf("builder quick: %+v", quick)
	}
	id := quick.Builders[0].BuilderID
	var brids []int64
	for i := range 3 {
		brids = append(brids, a.force("force", id, fmt.Sprintf("a%d", i)), b.force("force", id, fmt.Sprintf("b%d", i)))
	}
	var builds []fullBuild
	waitFor(t, "every build complete", 2*time.Minute, func() bool {
		builds = nil
		for _, bd := range allBuilds(b) {
			if slices.Contains(brids, bd.BuildRequestID) {
				if !bd.Complete {
					return false
				}
				builds = append(builds, bd)
			}
		}
		return len(builds) == len(brids)
	})
	on := map[int64]int{}
	for _, bd := range builds {
		on[bd.MasterID]++
	}
	if len(on) != 2 {
		t.Errorf("builds by master: %v, want builds on both", on)
	}
	waitFor(t, "every build's end reported", 2*time.Minute, func() bool {
		_, got, _ := hook.state()
		for _, bd := range builds {
			if !slices.Contains(got, fmt.Sprintf("finished:%d", bd.BuildID)) {
				return false
			}
		}
		return true
	})
	// The deliveries are recorded by the master that made them: each
	// once, at its first attempt.
	waitFor(t, "the deliveries recorded", time.Minute, func() bool {
		for _, bd := range builds {
			var r struct {
				Reports []apiReport `json:"reports"`
			}
			b.get(fmt.Sprintf("/api/v2/builds/%d/reports", bd.BuildID), &r)
			if len(r.Reports) == 0 || r.Reports[len(r.Reports)-1].State != "delivered" {
				return false
			}
		}
		return true
	})
	_, got, _ := hook.state()
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	for g, n := range seen {
		if n != 1 {
			t.Errorf("%s reported %d times, want once: %v", g, n, got)
		}
	}
}

// TestTwoMastersBehindNginx: docs/postgresql.md's nginx sample, in front of
// two masters on one PostgreSQL, passes the pages and /sse/ through: a
// browser's event stream, served by whichever master nginx picked, carries
// the requests forced on both masters as they come (not held in nginx's
// buffers: the sample turns them off, and the master says X-Accel-Buffering: no).
func TestTwoMastersBehindNginx(t *testing.T) {
	t.Parallel()
	nginx := testdeb.Need(t, "nginx", "nginx")
	pg := startPG(t)
	db := pg.NewDatabase(t)
	a, b := newEnv(t), newEnv(t)
	for _, e := range []*env{a, b} {
		e.writeConfigData(reportOnceConfig, map[string]any{"WebPort": e.WebPort, "WorkerPort": e.WorkerPort, "DB": db, "Hook": "http://127.0.0.1:1"})
	}
	a.startMaster()
	b.startMaster()

	page, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "postgresql.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sample, ok := strings.Cut(string(page), "```nginx\n")
	if !ok {
		t.Fatal("docs/postgresql.md has no nginx sample")
	}
	sample, _, _ = strings.Cut(sample, "```")
	for _, r := range []struct{ old, new string }{
		{"server 10.1.1.2:8010", fmt.Sprintf("server 127.0.0.1:%d", a.WebPort)},
		{"server 10.1.1.3:8010", fmt.Sprintf("server 127.0.0.1:%d", b.WebPort)},
		{"listen 443 ssl http2;", "listen 80;"},
	} {
		if !strings.Contains(sample, r.old) {
			t.Fatalf("docs/postgresql.md's nginx sample has no %q", r.old)
		}
		sample = strings.Replace(sample, r.old, r.new, 1)
	}
	port := freePort(t)
	startNginxConf(t, nginx, a.Dir, "nginx", port, "events {}\nhttp {\n"+sample+"}\n")
	base := fmt.Sprintf("http://127.0.0.1:%d/buildbot", port)
	waitFor(t, "nginx to answer", time.Minute, func() bool {
		resp, err := http.Get(base + "/masters")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	events, _ := listenSSE(ctx, t, base+"/sse/listen/buildrequests/*/new")
	var quick struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
		} `json:"builders"`
	}
	a.get("/api/v2/builders/quick", &quick)
	if len(quick.Builders) != 1 {
		t.Fatalf("builder quick: %+v", quick)
	}
	want := map[string]bool{}
	for _, e := range []*env{a, b} {
		brid := e.force("force", quick.Builders[0].BuilderID, "through nginx")
		want[fmt.Sprintf("buildrequests/%d/new", brid)] = true
	}
	for len(want) > 0 {
		select {
		case ev, open := <-events:
			if !open {
				t.Fatalf("the event stream ended; still waiting for %v", want)
			}
			delete(want, ev.Key)
		case <-ctx.Done():
			t.Fatalf("through nginx, no event for %v", want)
		}
	}
}

// waitRequestComplete waits, on e's API, for request brid to complete.
func waitRequestComplete(t *testing.T, e *env, brid int64) {
	t.Helper()
	waitFor(t, "the request complete", 2*time.Minute, func() bool {
		var r struct {
			Buildrequests []struct {
				Complete bool `json:"complete"`
			}
		}
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d", brid), &r)
		return len(r.Buildrequests) == 1 && r.Buildrequests[0].Complete
	})
}
