package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reconfigConfig is TestReconfigAtOnce's master; .V is the version. v1: builders
// slow (w1) and gone (w3, never connected: its requests wait), workers w1,
// w2, w3, a poller of repo1 with scheduler on-repo1 building gone, and a
// poller of a stalled HTTP remote that never answers. v2: slow's steps
// changed, gone removed, new added, worker w2 removed, the repo1 and the
// stalled pollers removed, a poller of repo2 with scheduler on-repo2
// building new. v3: v2 with gone back, on w1. v4: v3 with an error.
const reconfigConfig = loopback + `
{{if eq .V 4}}
[[builders]]
name = "broken"
worker_names = ["nobody"]
{{end}}
[[workers]]
name = "w1"
password = "secret"
{{if eq .V 1}}
[[workers]]
name = "w2"
password = "secret"
{{end}}
[[workers]]
name = "w3"
password = "secret"

{{if eq .V 1}}
[[change_source]]
type = "git_poller"
name = "repo1"
repourl = "{{.Repo1}}"
branches = ["master"]
poll_interval = "1s"
poll_at_launch = true

[[change_source]]
type = "git_poller"
name = "stalled"
repourl = "http://{{.Stalled}}/repo.git"
branches = ["master"]
poll_interval = "1s"
poll_at_launch = true

[[schedulers]]
type = "single_branch"
name = "on-repo1"
branch = "master"
builder_names = ["gone"]
{{else}}
[[change_source]]
type = "git_poller"
name = "repo2"
repourl = "{{.Repo2}}"
branches = ["master"]
poll_interval = "1s"
poll_at_launch = true

[[schedulers]]
type = "single_branch"
name = "on-repo2"
branch = "master"
builder_names = ["new"]
{{end}}
[[schedulers]]
type = "force"
name = "force"
builder_names = [{{if eq .V 1}}"slow", "gone"{{else if eq .V 2}}"slow", "new"{{else}}"slow", "new", "gone"{{end}}]

[[builders]]
name = "slow"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "first"
  command = "echo config-v{{.V}}; touch {{.Dir}}/started; while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done"

  [[builders.steps]]
  type = "shell"
  name = "second"
  command = "echo second-v{{.V}}"
{{if eq .V 1}}
[[builders]]
name = "gone"
worker_names = ["w3"]

  [[builders.steps]]
  type = "shell"
  command = "echo gone"
{{else}}
[[builders]]
name = "new"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  command = "echo new"
{{end}}{{if ge .V 3}}
[[builders]]
name = "gone"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  command = "echo gone-is-back"
{{end}}`

// stalledGit is a TCP server that accepts connections and never answers:
// a git remote whose fetch hangs.
type stalledGit struct {
	ln       net.Listener
	accepted chan struct{} // one per connection
	closed   chan struct{} // one per connection the other end closed
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn // guarded by mu
}

func newStalledGit(t *testing.T) *stalledGit {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stalledGit{ln: ln, accepted: make(chan struct{}, 100), closed: make(chan struct{}, 100)}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.accepted <- struct{}{}
			s.wg.Go(func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						s.closed <- struct{}{}
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// TestReconfigAtOnce changes builders, schedulers, change sources and
// workers in one reconfig while a build runs and a poller hangs in a
// fetch: the reconfig is applied at once, the running build finishes with
// its old config, the removed worker is disconnected and refused, the
// removed builder's pending request waits until the builder comes back,
// and a bad config is refused, by `gbb-master reconfig` and by SIGHUP,
// with its errors, leaving the running config alone.
func TestReconfigAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stalled := newStalledGit(t)
	data := struct {
		*env
		V                     int
		Repo1, Repo2, Stalled string
	}{
		env: e, V: 1,
		Repo1:   makeRepo(t, filepath.Join(e.Dir, "repo1"), map[string]string{"a": "1"}),
		Repo2:   makeRepo(t, filepath.Join(e.Dir, "repo2"), map[string]string{"a": "1"}),
		Stalled: stalled.ln.Addr().String(),
	}
	write := func(v int) {
		data.V = v
		e.writeConfigData(reconfigConfig, data)
	}
	write(1)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"master/master.log", "worker-w1.stderr", "worker-w2.stderr"} {
				b, _ := os.ReadFile(filepath.Join(e.Dir, f))
				t.Logf("--- %s:\n%s", f, b)
			}
		}
	})
	e.startMaster()
	e.startWorker("w1", "secret")
	e.startWorker("w2", "secret")
	connected := func() map[string]bool {
		var r struct{ Workers []soakAPIWorker }
		e.get("/api/v2/workers", &r)
		out := map[string]bool{}
		for _, w := range r.Workers {
			out[w.Name] = len(w.ConnectedTo) > 0
		}
		return out
	}
	waitFor(t, "w1 and w2 connected", 30*time.Second, func() bool { c := connected(); return c["w1"] && c["w2"] })
	select {
	case <-stalled.accepted: // the stalled poller is in its fetch
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled poller never connected")
	}
	ids := e.builderIDs()
	slowReq := e.force("force", ids["slow"], "old config")
	goneReq := e.force("force", ids["gone"], "waits for w3")
	waitFor(t, "the slow build's first step", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(e.Dir, "started"))
		return err == nil
	})
	os.Remove(filepath.Join(e.Dir, "started"))

	// Everything at once, while the build runs and the poller hangs.
	write(2)
	start := time.Now()
	out := mustRun(t, e.master, "reconfig", e.masterDir)
	if took := time.Since(start); !strings.Contains(out, "completed successfully") || took > 20*time.Second {
		t.Fatalf("reconfig took %v: %s", took, out)
	}
	t.Logf("reconfig applied in %v with a poller stalled in its fetch", time.Since(start).Round(time.Millisecond))
	select {
	case <-stalled.closed: // the removed poller gave up its fetch
	case <-time.After(20 * time.Second):
		t.Error("the removed poller's stalled fetch was not cancelled")
	}
	waitFor(t, "the removed worker w2 disconnected", 20*time.Second, func() bool { c := connected(); return c["w1"] && !c["w2"] })
	waitFor(t, "w2 refused when it dials again", 20*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(e.Dir, "worker-w2.stderr"))
		return strings.Contains(string(b), "master refused worker")
	})
	ids = e.builderIDs()
	if _, ok := ids["new"]; !ok {
		t.Fatalf("builder new missing after the reconfig: %v", ids)
	}

	// The new poller and scheduler run; the removed ones do not.
	rev1 := e.commit(data.Repo1, "to the removed poller")
	rev2 := e.commit(data.Repo2, "to the new poller")
	var newBuild apiBuild
	waitFor(t, "a build of builder new for the commit to repo2", 60*time.Second, func() bool {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/builders/%d/builds?complete=true", ids["new"]), &r)
		if len(r.Builds) > 0 {
			newBuild = r.Builds[0]
			return true
		}
		return false
	})
	if got := e.property(newBuild.BuildID, "revision"); got != rev2 {
		t.Errorf("builder new built %v, want repo2's %s", got, rev2)
	}
	var changes struct {
		Changes []struct {
			Revision string `json:"revision"`
		}
	}
	e.get("/api/v2/changes", &changes)
	for _, c := range changes.Changes {
		if c.Revision == rev1 {
			t.Errorf("the removed poller of repo1 still saw %s", rev1)
		}
	}

	// The running build finishes with the config it started with.
	if err := os.WriteFile(filepath.Join(e.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	old := e.waitBuild(slowReq, 60*time.Second)
	if log := e.buildLog(old.BuildID); !strings.Contains(log, "config-v1") || !strings.Contains(log, "second-v1") || strings.Contains(log, "-v2") {
		t.Errorf("the build started before the reconfig ran:\n%s", log)
	}
	if b := e.waitBuild(e.force("force", ids["slow"], "new config"), 60*time.Second); !strings.Contains(e.buildLog(b.BuildID), "second-v2") {
		t.Errorf("a build after the reconfig ran:\n%s", e.buildLog(b.BuildID))
	}

	// The removed builder's request waits, unclaimed, until it is back.
	var br struct {
		Buildrequests []struct {
			Complete bool `json:"complete"`
			Claimed  bool `json:"claimed"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d", goneReq), &br)
	if len(br.Buildrequests) != 1 || br.Buildrequests[0].Complete || br.Buildrequests[0].Claimed {
		t.Errorf("request %d of the removed builder: %+v, want pending", goneReq, br.Buildrequests)
	}
	write(3)
	mustRun(t, e.master, "reconfig", e.masterDir)
	if b := e.waitBuild(goneReq, 60*time.Second); !strings.Contains(e.buildLog(b.BuildID), "gone-is-back") {
		t.Errorf("the request kept for the removed builder ran:\n%s", e.buildLog(b.BuildID))
	}

	// A bad config is refused, with its errors, by the command and by the
	// master, whose log says so whichever asked (probe-cfg1: the command
	// checked first and left master.log silent); the running config stays.
	write(4)
	logPath := filepath.Join(e.masterDir, "master.log")
	before, _ := os.ReadFile(logPath)
	out, err := run(t, e.master, "reconfig", e.masterDir)
	if err == nil || !strings.Contains(out, "master.toml:") || !strings.Contains(out, "nobody") {
		t.Errorf("reconfig of a bad config: %v, want its errors:\n%s", err, out)
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b[len(before):]), "reconfig refused") {
		t.Errorf("gbb-master reconfig of a bad config left no refusal in master.log:\n%s", b[len(before):])
	}
	before, _ = os.ReadFile(logPath)
	pidText, _ := os.ReadFile(filepath.Join(e.masterDir, "master.pid"))
	var pid int
	fmt.Sscan(string(pidText), &pid)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the master's refusal in master.log", 30*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		after := string(b[len(before):])
		return strings.Contains(after, "reconfig refused") && strings.Contains(after, "master.toml:") && strings.Contains(after, "nobody")
	})
	if _, ok := e.builderIDs()["broken"]; ok {
		t.Error("the refused config's builder appeared")
	}
	if b := e.waitBuild(e.force("force", ids["slow"], "still v3"), 60*time.Second); !strings.Contains(e.buildLog(b.BuildID), "second-v3") {
		t.Errorf("a build after the refused reconfig:\n%s", e.buildLog(b.BuildID))
	}
}

// builderIDs returns the configured builders' ids by name.
func (e *env) builderIDs() map[string]int64 {
	e.t.Helper()
	var r struct {
		Builders []struct {
			ID        int64             `json:"builderid"`
			Name      string            `json:"name"`
			MasterIDs []json.RawMessage `json:"masterids"`
		}
	}
	e.get("/api/v2/builders", &r)
	out := map[string]int64{}
	for _, b := range r.Builders {
		if len(b.MasterIDs) > 0 {
			out[b.Name] = b.ID
		}
	}
	return out
}

// commit commits a change to the repository at dir and returns its
// revision.
func (e *env) commit(dir, msg string) string {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte(msg), 0o644); err != nil {
		e.t.Fatal(err)
	}
	git := []string{"-C", dir, "-c", "user.name=A U Thor", "-c", "user.email=a@example.com"}
	mustRun(e.t, "git", append(git, "commit", "-q", "-a", "-m", msg)...)
	return strings.TrimSpace(mustRun(e.t, "git", "-C", dir, "rev-parse", "HEAD"))
}

// buildLog returns the stdio logs of a build's steps, joined.
func (e *env) buildLog(buildID int64) string {
	e.t.Helper()
	var b strings.Builder
	for _, s := range e.steps(buildID) {
		b.WriteString(e.stdio(s.StepID))
	}
	return b.String()
}

// authReconfigConfig: admin may do everything; viewer may force once the
// reconfig adds {{.ViewerRule}}.
const authReconfigConfig = loopback + workerW1 + authUsers + `{{.ViewerRule}}
[[www.authz.rules]]
actions = ["*"]
roles = ["admins"]
` + forceQuick

// TestReconfigAuthz: `gbb-master reconfig` applies a changed [www.authz]
// to the running web server, as buildbot's reconfig does: a force refused
// before it is accepted after it, with no restart.
func TestReconfigAuthz(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	data := struct {
		*env
		AdminHash, ViewerHash, ViewerRule string
	}{e, e.hashpw("admin-pw"), e.hashpw("viewer-pw"), ""}
	e.writeConfigData(authReconfigConfig, data)
	e.startMaster()
	force := func() (int, string) { return e.forceAs("viewer", "viewer-pw", "quick", "viewer") }
	if code, body := force(); code != 403 || !strings.Contains(body, "viewer may not force") {
		t.Fatalf("viewer's force before the reconfig: %d %s", code, body)
	}
	data.ViewerRule = "\n[[www.authz.rules]]\nactions = [\"force\"]\nroles = [\"users\"]\n\n[[www.authz.roles]]\nrole = \"users\"\nusers = [\"viewer\"]\n"
	e.writeConfigData(authReconfigConfig, data)
	mustRun(t, e.master, "reconfig", e.masterDir)
	if code, body := force(); code != 200 {
		t.Errorf("viewer's force after the reconfig: %d %s", code, body)
	}
}

// forceQuick is a force scheduler "force" of one builder "quick" on w1,
// whose one step runs true.
const forceQuick = `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["quick"]

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "true"
  command = ["true"]
`

// schedIDsConfig has the scheduler "force", after {{.First}}.
const schedIDsConfig = loopback + workerW1 + `{{.First}}` + forceQuick

// TestSchedulerIDsSurviveReconfig: /api/v2/schedulers keeps a scheduler's
// id when the one before it is removed by a reconfig.
func TestSchedulerIDsSurviveReconfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	data := struct {
		*env
		First string
	}{e, "\n[[schedulers]]\ntype = \"force\"\nname = \"first\"\nbuilder_names = [\"quick\"]\n"}
	e.writeConfigData(schedIDsConfig, data)
	e.startMaster()
	ids := func() map[string]int64 {
		t.Helper()
		var r struct {
			Schedulers []struct {
				ID   int64  `json:"schedulerid"`
				Name string `json:"name"`
			} `json:"schedulers"`
		}
		e.get("/api/v2/schedulers", &r)
		out := map[string]int64{}
		for _, s := range r.Schedulers {
			out[s.Name] = s.ID
		}
		return out
	}
	if got := ids(); got["first"] != 1 || got["force"] != 2 {
		t.Fatalf("scheduler ids = %v, want first 1, force 2", got)
	}
	data.First = ""
	e.writeConfigData(schedIDsConfig, data)
	mustRun(t, e.master, "reconfig", e.masterDir)
	if got := ids(); len(got) != 1 || got["force"] != 2 {
		t.Errorf("scheduler ids after removing first = %v, want force 2 only", got)
	}
}
