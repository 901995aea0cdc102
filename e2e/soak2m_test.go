package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/store"
)

// The soak's two-master mode: the soak's load and chaos (soak_test.go) on
// two gbb-masters with the same config, each with its own ports, sharing
// one PostgreSQL database (internal/testpg). The gbb-workers name both
// masters (half of them a first, half b first) and move when theirs goes
// away; the buildbot-worker, which knows one master, serves a. Forces and
// webhook pushes go to either master at random; the poller and the
// schedulers run on whichever leads. Beside the soak's chaos (worker
// kills, cut links, good and bad reconfigs), the chaos SIGKILLs a master
// and restarts it later, sometimes after master_timeout (so that the
// other presumes it dead, ends its builds RETRY and runs its requests),
// and sometimes both masters at once.
//
// At the end, besides the soak's checks (every accepted force and every
// commit and push built exactly once by its scheduler, every request and
// build complete, every log whole, no process or goroutine left), both
// masters' /api/v2/builds must agree, no request may be built to a result
// twice (by two masters), none may be left claimed by a dead master, and
// the PostgreSQL store, opened with store.OpenPG once the masters stopped,
// must pass Check.
//
// GBB_SOAK_DURATION and GBB_SOAK_SEED are the soak's (default 40s, seed 1).

const (
	// soak2Heartbeat and soak2MasterTimeout are [db]'s: short, so that a
	// master killed for a few seconds is presumed dead within the chaos.
	soak2Heartbeat     = "1s"
	soak2MasterTimeout = "4s"
)

// soak2Master is one of the two masters.
type soak2Master struct {
	name string // "a" or "b"
	dir  string
	data soakConfigData
	proc *soakProc // guarded by soakRun.mu; nil while it is down
}

type soak2Run struct {
	*soakRun
	masters []*soak2Master

	// guarded by soakRun.mu
	bothKills   int // chaos steps that SIGKILLed both masters
	overTimeout int // single master kills that lasted longer than master_timeout
	checks      int // store checks while both masters were down
}

func TestSoakTwoMasters(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestSoakTwoMasters needs root (network namespaces to cut workers' links); make test runs as root in CI")
	}
	testdeb.Need(t, "ip", "iproute2")
	testdeb.Need(t, "git", "git")
	duration, err := time.ParseDuration(soakEnv("GBB_SOAK_DURATION", "40s"))
	if err != nil {
		t.Fatalf("GBB_SOAK_DURATION: %v", err)
	}
	seed, err := strconv.ParseUint(soakEnv("GBB_SOAK_SEED", "1"), 10, 64)
	if err != nil {
		t.Fatalf("GBB_SOAK_SEED: %v", err)
	}
	t.Logf("two-master soak: seed %d (GBB_SOAK_SEED=%d replays it), chaos for %v", seed, seed, duration)
	master, worker := buildBinaries(t)
	dbURL := startPG(t).NewDatabase(t)
	baseline := runtime.NumGoroutine()

	lock, err := os.OpenFile(soakLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", soakLock, err)
	}
	soakCleanNet()

	var rb [3]byte
	rand.Read(rb[:])
	dir := t.TempDir()
	s := &soak2Run{soakRun: &soakRun{
		t: t, began: time.Now(), seed: seed, id: hex.EncodeToString(rb[:]),
		master: master, worker: worker, dir: dir,
		workers:   map[string]*soakWorker{},
		forces:    map[int64]string{},
		hooks:     map[string]string{},
		client:    &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
		storeURL:  dbURL,
		masterArg: map[string]string{},
	}}
	s.setupNet()
	defer s.teardown2()

	s.repo = makeRepo(t, filepath.Join(dir, "repo"), map[string]string{"n": "0\n"})
	needBuildbotWorker(t)
	names := []string{soakBBWorker, "w1", "w2", "w3", "w4"}
	for _, n := range []string{"a", "b"} {
		m := &soak2Master{name: n, dir: filepath.Join(dir, "master-"+n)}
		m.data = soakConfigData{
			WebPort: freePort(t), GRPCPort: freePort(t), BBPort: freePort(t), HostAddr: soakNet + ".1", Repo: s.repo,
			Mark: "soak-" + s.id, Print: soakPrint, Tail: soakTail, Workers: names,
			DB: dbURL, Heartbeat: soak2Heartbeat, MasterTimeout: soak2MasterTimeout,
		}
		s.masters = append(s.masters, m)
	}
	a, b := s.masters[0], s.masters[1]
	// The soak's single-master parts (the buildbot-worker, settleWait's
	// and waitWorkers' API calls, verify's store) use a.
	s.data, s.mdir = a.data, a.dir
	for i, n := range names[1:] {
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		s.masterArg[n] = fmt.Sprintf("%s.1:%d,%s.1:%d", soakNet, first.data.GRPCPort, soakNet, second.data.GRPCPort)
	}
	for _, m := range s.masters {
		s.writeConfigTo(m.dir, m.data, false, false)
		mustRun(t, master, "checkconfig", m.dir)
	}
	for i, n := range names {
		w := &soakWorker{name: n}
		if i >= len(names)-soakNSWorker {
			w.ns = fmt.Sprintf("gskn%d-%s", i, s.id)
			w.veth = fmt.Sprintf("gskv%d%s", i, s.id)
		}
		s.workers[n] = w
	}
	s.netnsWorkers()
	for _, m := range s.masters {
		s.startMaster2(m)
	}
	waitFor(t, "the poller's first poll, on the leader", 60*time.Second, func() bool {
		for _, m := range s.masters {
			b, _ := os.ReadFile(filepath.Join(m.dir, "master.log"))
			if bytes.Contains(b, []byte("first poll: recording the tips")) {
				return true
			}
		}
		return false
	})
	for _, n := range names {
		s.startWorker(n)
	}
	s.waitWorkers(60 * time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	wg.Go(func() { s.committer(stop, mrand.New(mrand.NewPCG(seed, 1))) })
	wg.Go(func() { s.forcer2(stop, mrand.New(mrand.NewPCG(seed, 2))) })
	wg.Go(func() { s.hooker2(stop, mrand.New(mrand.NewPCG(seed, 3))) })
	s.chaos2(duration, mrand.New(mrand.NewPCG(seed, 4)))
	stopLoad()

	// Settle: both masters up (the chaos restarts what it kills), every
	// link up, every worker running, the Extra config; then everything
	// submitted has run.
	s.mu.Lock()
	extra := s.extra
	s.mu.Unlock()
	if !extra {
		s.goodReconfig2()
	}
	s.waitWorkers(60 * time.Second)
	s.settleWait()
	perMaster := s.sameBuilds()

	s.mu.Lock()
	for _, m := range s.masters {
		m.proc.kill(syscall.SIGTERM)
		m.proc = nil
	}
	for _, w := range s.workers {
		w.proc.kill(syscall.SIGTERM)
	}
	s.mu.Unlock()

	var logs []string
	for _, m := range s.masters {
		logs = append(logs, filepath.Join(m.dir, "master.log"))
	}
	moves := s.moves(logs)
	lost := s.verify() + s.counts.badStores
	s.counts.reconnects, s.counts.maxReconnect, s.counts.maxLinkReconnect = s.reconnections(logs...)
	if s.counts.maxReconnect > soakMaxReconnect {
		t.Errorf("a worker took %v to attach again after a restart, more than %v", s.counts.maxReconnect, soakMaxReconnect)
	}
	if s.counts.maxLinkReconnect > soakMaxLinkReconnect {
		t.Errorf("a worker took %v to attach again after its link came back, more than %v", s.counts.maxLinkReconnect, soakMaxLinkReconnect)
	}
	s.waitNoProcesses()
	s.client.CloseIdleConnections()
	var n int
	deadline := time.Now().Add(20 * time.Second)
	for n = runtime.NumGoroutine(); n > baseline && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	if n > baseline {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d, %d at the start:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}

	c := s.counts
	var builds, retries, onBB int
	s.withStore(func(db store.Store) {
		all, err := db.Builds(store.BuildFilter{})
		if err != nil {
			t.Fatal(err)
		}
		bb, err := db.WorkerByName(soakBBWorker)
		if err != nil {
			t.Fatal(err)
		}
		builds = len(all)
		for _, b := range all {
			if b.Results == store.Retry {
				retries++
			}
			if b.WorkerID == bb.ID && b.Results != store.Retry {
				onBB++
			}
		}
	})
	if onBB == 0 {
		t.Errorf("no build ran to its end on the buildbot-worker %s", soakBBWorker)
	}
	t.Logf("two-master soak summary: seed %d, builds %d (a %d, b %d; %d on the buildbot-worker), retries %d, forces %d, commits %d, webhook pushes %d, worker kills %d, master kills %d (%d of both, %d longer than master_timeout), store checks with both down %d, worker moves between masters %d, link cuts %d, reconfigs %d good / %d bad, reconnects %d (slowest %v after a restart, %v after a link came back), lost items %d",
		seed, builds, perMaster["a"], perMaster["b"], onBB, retries, c.forces, c.commits, c.hooks, c.workerKills, c.masterKills, s.bothKills, s.overTimeout, s.checks, moves, c.linkCuts, c.goodReconfigs, c.badRecfg, c.reconnects, c.maxReconnect.Round(time.Millisecond), c.maxLinkReconnect.Round(time.Millisecond), lost)
	if lost > 0 {
		t.Errorf("lost items: %d (seed %d)", lost, seed)
	}
}

// teardown2 kills the masters, then does the soak's teardown.
func (s *soak2Run) teardown2() {
	s.mu.Lock()
	for _, m := range s.masters {
		if m.proc != nil {
			m.proc.kill(syscall.SIGKILL)
			m.proc = nil
		}
	}
	s.mu.Unlock()
	if keep := os.Getenv("GBB_SOAK_KEEP"); keep != "" && s.t.Failed() {
		// The masters' and workers' directories, logs included, for a
		// failure's post-mortem.
		if out, err := exec.Command("cp", "-a", s.dir, keep).CombinedOutput(); err != nil {
			s.t.Errorf("GBB_SOAK_KEEP: %v: %s", err, out)
		} else {
			s.t.Logf("the run's directory is kept in %s", keep)
		}
	}
	s.teardown()
}

func (m *soak2Master) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", m.data.WebPort, path)
}

// getFrom decodes the JSON at path on master m into v.
func (s *soak2Run) getFrom(m *soak2Master, path string, v any) error {
	resp, err := s.client.Get(m.url(path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s on master %s: %s", path, m.name, resp.Status)
	}
	return json.Unmarshal(body, v)
}

// startMaster2 starts master m in the foreground (so that it can be
// SIGKILLed) and waits for its API.
func (s *soak2Run) startMaster2(m *soak2Master) {
	p, err := soakStart(filepath.Join(s.dir, "master-"+m.name+".out"), s.master, "start", "--nodaemon", m.dir)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	m.proc = p
	s.mu.Unlock()
	waitFor(s.t, "master "+m.name+"'s API", 60*time.Second, func() bool {
		select {
		case <-p.done:
			s.t.Fatalf("master %s exited at start: %v (its output is dumped below)", m.name, p.cmd.ProcessState)
		default:
		}
		var v struct{ Builders []json.RawMessage }
		return s.getFrom(m, "/api/v2/builders", &v) == nil && len(v.Builders) > 0
	})
}

// forcer2 forces builds on either master.
func (s *soak2Run) forcer2(stop <-chan struct{}, rng *mrand.Rand) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(200+rng.IntN(600)) * time.Millisecond):
		}
		builders := []string{"b-a", "b-b", "b-c"}
		s.mu.Lock()
		if s.extra {
			builders = append(builders, "b-x")
		}
		s.mu.Unlock()
		builder := builders[rng.IntN(len(builders))]
		s.forceAt(s.masters[rng.IntN(len(s.masters))].url(""), builder)
	}
}

// hooker2 pushes changes through either master's webhook.
func (s *soak2Run) hooker2(stop <-chan struct{}, rng *mrand.Rand) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(400+rng.IntN(800)) * time.Millisecond):
		}
		var rb [20]byte
		for j := range rb {
			rb[j] = byte(rng.Uint32())
		}
		m := s.masters[rng.IntN(len(s.masters))]
		s.pushAt(m.url(""), hex.EncodeToString(rb[:]), fmt.Sprintf("hook/%d", i%soakHookBrs))
	}
}

// chaos2 is the soak's chaos with master kills: first one of each kind in
// a random order, then at random.
func (s *soak2Run) chaos2(d time.Duration, rng *mrand.Rand) {
	end := time.Now().Add(d)
	first := rng.Perm(6) // one x in each case's range below
	for i := 0; time.Now().Before(end); i++ {
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		x := rng.IntN(100)
		if i < len(first) {
			x = []int{0, 25, 40, 50, 60, 61}[first[i]]
		}
		switch {
		case x < 25:
			s.step(i, "kill a worker")
			s.killWorker(rng)
		case x < 40:
			s.step(i, "cut a link")
			s.cutLink(rng)
		case x < 50:
			s.step(i, "good reconfig")
			s.goodReconfig2()
		case x < 60:
			s.step(i, "bad reconfig")
			s.badReconfig2(rng)
		case x == 61 || x >= 90:
			s.step(i, "kill both masters")
			s.killMasters(rng, true)
		default:
			s.step(i, "kill a master")
			s.killMasters(rng, false)
		}
	}
}

// killMasters SIGKILLs one master (both with both) and restarts it: one
// after up to 8s (twice master_timeout: the other presumes it dead about
// half the time), both after up to 1.5s, having checked the store they
// left.
func (s *soak2Run) killMasters(rng *mrand.Rand, both bool) {
	victims := s.masters
	if !both {
		victims = []*soak2Master{s.masters[rng.IntN(len(s.masters))]}
	}
	s.mu.Lock()
	procs := make([]*soakProc, len(victims))
	for i, m := range victims {
		procs[i], m.proc = m.proc, nil
	}
	s.counts.masterKills += len(victims)
	if both {
		s.bothKills++
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.kill(syscall.SIGKILL)
	}
	killed := time.Now()
	var down time.Duration
	if both {
		// The store two SIGKILLs left must pass the check as it is.
		s.withStore(func(db store.Store) {
			if err := db.Check(); err != nil {
				s.mu.Lock()
				s.counts.badStores++
				s.mu.Unlock()
				s.t.Errorf("lost: the store after SIGKILLing both masters: %v", err)
			}
		})
		s.mu.Lock()
		s.checks++
		s.mu.Unlock()
		down = time.Duration(rng.IntN(1500)) * time.Millisecond
	} else {
		down = time.Duration(rng.IntN(8000)) * time.Millisecond
	}
	var names []string
	for _, m := range victims {
		names = append(names, m.name)
	}
	s.t.Logf("master %s down for %v", strings.Join(names, " and "), down)
	time.Sleep(down)
	timeout, _ := time.ParseDuration(soak2MasterTimeout)
	if !both && time.Since(killed) > timeout {
		s.mu.Lock()
		s.overTimeout++
		s.mu.Unlock()
		s.waitPresumedDead(victims[0])
	}
	if both {
		s.awayFrom(false, s.data.Workers...) // the time to start counts
	}
	for _, m := range victims {
		s.startMaster2(m)
	}
}

// waitPresumedDead waits until the master other than dead, which is down
// since longer than master_timeout, has taken the lead and presumed dead
// dead: shown inactive, no request left claimed by it, none of its builds
// left running.
func (s *soak2Run) waitPresumedDead(dead *soak2Master) {
	alive := s.masters[0]
	if alive == dead {
		alive = s.masters[1]
	}
	var why string
	start := time.Now()
	done := func() bool {
		var ms struct {
			Masters []struct {
				MasterID int64  `json:"masterid"`
				Name     string `json:"name"`
				Active   bool   `json:"active"`
				Leader   bool   `json:"leader"`
			}
		}
		if err := s.getFrom(alive, "/api/v2/masters", &ms); err != nil {
			why = err.Error()
			return false
		}
		ids := map[int64]bool{}
		for _, m := range ms.Masters {
			switch {
			case strings.HasSuffix(m.Name, ":"+dead.dir):
				ids[m.MasterID] = true
				if m.Active || m.Leader {
					why = fmt.Sprintf("master %s shown active %v, leader %v", dead.name, m.Active, m.Leader)
					return false
				}
			case strings.HasSuffix(m.Name, ":"+alive.dir):
				if !m.Leader {
					why = fmt.Sprintf("master %s not the leader", alive.name)
					return false
				}
			}
		}
		if len(ids) == 0 {
			why = fmt.Sprintf("master %s not in /api/v2/masters", dead.name)
			return false
		}
		var brs struct {
			Buildrequests []struct {
				ID       int64  `json:"buildrequestid"`
				MasterID *int64 `json:"claimed_by_masterid"`
			}
		}
		if err := s.getFrom(alive, "/api/v2/buildrequests?complete=false", &brs); err != nil {
			why = err.Error()
			return false
		}
		for _, br := range brs.Buildrequests {
			if br.MasterID != nil && ids[*br.MasterID] {
				why = fmt.Sprintf("request %d still claimed by master %s", br.ID, dead.name)
				return false
			}
		}
		var bs struct{ Builds []soak2Build }
		if err := s.getFrom(alive, "/api/v2/builds?complete=false", &bs); err != nil {
			why = err.Error()
			return false
		}
		for _, b := range bs.Builds {
			if ids[b.MasterID] {
				why = fmt.Sprintf("build %d of master %s still running", b.BuildID, dead.name)
				return false
			}
		}
		return true
	}
	for !done() {
		if time.Since(start) > 60*time.Second {
			s.t.Fatalf("master %s did not take the lead and presume master %s dead within 60s: %s", alive.name, dead.name, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Logf("master %s presumed dead by master %s %v after the wait began", dead.name, alive.name, time.Since(start).Round(time.Millisecond))
}

// goodReconfig2 toggles the Extra variant on both masters: each running
// one applies it with `gbb-master reconfig`; one that is down reads it
// when it starts.
func (s *soak2Run) goodReconfig2() {
	s.mu.Lock()
	extra := !s.extra
	s.mu.Unlock()
	for _, m := range s.masters {
		s.writeConfigTo(m.dir, m.data, extra, false)
	}
	for _, m := range s.masters {
		s.mu.Lock()
		up := m.proc != nil
		s.mu.Unlock()
		if !up {
			continue
		}
		out, err := run(s.t, s.master, "reconfig", m.dir)
		if err != nil || !strings.Contains(out, "completed successfully") {
			s.t.Fatalf("good reconfig of master %s: %v\n%s", m.name, err, out)
		}
	}
	s.mu.Lock()
	s.extra = extra
	s.counts.goodReconfigs++
	s.mu.Unlock()
}

// badReconfig2 writes a config with an unknown key for a running master
// and asks it to reconfig: it must refuse, naming the file, line and key;
// the good file is put back.
func (s *soak2Run) badReconfig2(rng *mrand.Rand) {
	var up []*soak2Master
	s.mu.Lock()
	extra := s.extra
	for _, m := range s.masters {
		if m.proc != nil {
			up = append(up, m)
		}
	}
	s.mu.Unlock()
	m := up[rng.IntN(len(up))] // the chaos restarts what it kills: both are up
	s.writeConfigTo(m.dir, m.data, extra, true)
	defer s.writeConfigTo(m.dir, m.data, extra, false)
	out, err := run(s.t, s.master, "reconfig", m.dir)
	if err == nil || !strings.Contains(out, "master.toml:") || !strings.Contains(out, "no_such_key") {
		s.t.Fatalf("bad reconfig of master %s: %v, want a refusal naming master.toml:LINE and the key:\n%s", m.name, err, out)
	}
	s.mu.Lock()
	s.counts.badRecfg++
	s.mu.Unlock()
}

// soak2Build is what sameBuilds compares of a build.
type soak2Build struct {
	BuildID        int64  `json:"buildid"`
	BuilderID      int64  `json:"builderid"`
	BuildRequestID int64  `json:"buildrequestid"`
	Number         int64  `json:"number"`
	MasterID       int64  `json:"masterid"`
	WorkerID       int64  `json:"workerid"`
	Complete       bool   `json:"complete"`
	Results        *int   `json:"results"`
	StartedAt      *int64 `json:"started_at"`
	CompleteAt     *int64 `json:"complete_at"`
}

// sameBuilds checks that both masters' /api/v2/builds list the same builds,
// each the same, and returns how many builds each master ran.
func (s *soak2Run) sameBuilds() map[string]int {
	lists := make([][]soak2Build, len(s.masters))
	for i, m := range s.masters {
		var r struct{ Builds []soak2Build }
		if err := s.getFrom(m, "/api/v2/builds", &r); err != nil {
			s.t.Fatal(err)
		}
		slices.SortFunc(r.Builds, func(x, y soak2Build) int { return int(x.BuildID - y.BuildID) })
		lists[i] = r.Builds
	}
	if len(lists[0]) == 0 {
		s.t.Error("no builds at all")
	}
	for i := 1; i < len(lists); i++ {
		if !slices.EqualFunc(lists[0], lists[i], soak2SameBuild) {
			s.t.Errorf("master %s's /api/v2/builds (%d builds) differs from master %s's (%d builds)",
				s.masters[0].name, len(lists[0]), s.masters[i].name, len(lists[i]))
			for j := 0; j < min(len(lists[0]), len(lists[i])); j++ {
				if !soak2SameBuild(lists[0][j], lists[i][j]) {
					s.t.Errorf("first difference: %+v against %+v", lists[0][j], lists[i][j])
					break
				}
			}
		}
	}
	// Each master's id, from its own /api/v2/masters entry.
	perMaster := map[string]int{}
	var r struct {
		Masters []struct {
			MasterID int64  `json:"masterid"`
			Name     string `json:"name"`
		}
	}
	if err := s.getFrom(s.masters[0], "/api/v2/masters", &r); err != nil {
		s.t.Fatal(err)
	}
	names := map[int64]string{}
	for _, m := range r.Masters {
		for _, sm := range s.masters {
			if strings.HasSuffix(m.Name, ":"+sm.dir) {
				names[m.MasterID] = sm.name
			}
		}
	}
	for _, b := range lists[0] {
		perMaster[names[b.MasterID]]++
	}
	return perMaster
}

func soak2SameBuild(x, y soak2Build) bool {
	return x.BuildID == y.BuildID && x.BuilderID == y.BuilderID && x.BuildRequestID == y.BuildRequestID &&
		x.Number == y.Number && x.MasterID == y.MasterID && x.WorkerID == y.WorkerID && x.Complete == y.Complete &&
		equalPtr(x.Results, y.Results) && equalPtr(x.StartedAt, y.StartedAt) && equalPtr(x.CompleteAt, y.CompleteAt)
}

func equalPtr[T comparable](x, y *T) bool {
	return (x == nil) == (y == nil) && (x == nil || *x == *y)
}

// moves counts, from the masters' logs, the times a worker attached to a
// master other than the one it attached to before.
func (s *soak2Run) moves(logs []string) int {
	type attach struct {
		at     time.Time
		master int
	}
	byWorker := map[string][]attach{}
	for i, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `msg="worker attached"`) || !strings.Contains(line, " host=") {
				continue
			}
			var a attach
			var name string
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "time="); ok {
					a.at, _ = time.Parse(time.RFC3339Nano, v)
				}
				if v, ok := strings.CutPrefix(f, "worker="); ok {
					name = v
				}
			}
			a.master = i
			byWorker[name] = append(byWorker[name], a)
		}
	}
	n := 0
	for _, as := range byWorker {
		slices.SortFunc(as, func(x, y attach) int { return x.at.Compare(y.at) })
		for i := 1; i < len(as); i++ {
			if as[i].master != as[i-1].master {
				n++
			}
		}
	}
	return n
}

// verifyShared is verify's part for masters sharing a store: no request
// built to a result by two builds (two masters), none incomplete and
// claimed by a master that is not active, every build's master known.
func (s *soakRun) verifyShared(db store.Store, reqs []store.BuildRequest, builds []store.Build, lose func(string, ...any)) {
	masters, err := db.Masters()
	if err != nil {
		s.t.Fatal(err)
	}
	active := map[int64]bool{}
	known := map[int64]bool{}
	for _, m := range masters {
		known[m.ID], active[m.ID] = true, m.Active
	}
	for _, r := range reqs {
		if r.Claimed && !r.Complete && !active[r.ClaimedByMasterID] {
			lose("buildrequest %d: incomplete, claimed by master %d, which is not active", r.ID, r.ClaimedByMasterID)
		}
	}
	ran := map[int64][]int64{} // request → its builds that ended otherwise than RETRY
	for _, b := range builds {
		if !known[b.MasterID] {
			lose("build %d: master %d unknown", b.ID, b.MasterID)
		}
		if b.Complete && b.Results != store.Retry {
			ran[b.BuildRequestID] = append(ran[b.BuildRequestID], b.ID)
		}
	}
	for brid, ids := range ran {
		if len(ids) > 1 {
			lose("buildrequest %d: built %d times to a result (builds %v), want once", brid, len(ids), ids)
		}
	}
}
