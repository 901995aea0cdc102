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
	"net/url"
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
	"text/template"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/store"
)

// The soak test: a master, four workers (two of them in network
// namespaces, so that their links can be cut), a stream of forced,
// polled and webhook-pushed builds whose steps print a known number of
// lines and fail at random, and a chaos loop that SIGKILLs workers, cuts
// links, reconfigures the master with good and bad configs and SIGKILLs
// and restarts the master. At the end every request must be final, every
// change built exactly once per scheduler, every log complete, the store
// consistent, and no process or goroutine left behind.
//
// GBB_SOAK_DURATION sets how long the chaos runs (default 40s, what `make
// test` runs; `make soak` runs 20m); GBB_SOAK_SEED fixes the chaos (default
// 1; the seed is printed, so that a failing run can be replayed).

const (
	soakNet      = "10.1.77"
	soakLock     = "/run/gbb-soak-test.lock"
	soakPrint    = 40 // lines the print step prints
	soakTail     = 10 // lines the maybe-fail step prints
	soakHookBrs  = 3  // webhook pushes go to branches hook/0..hook/2
	soakNSWorker = 2  // of the five workers, the last two run in namespaces
	// soakBBWorker is the buildbot-worker's name; it serves b-c.
	soakBBWorker = "bb1"
	// soakMaxReconnect bounds how long a worker may take to attach again
	// once it or the master restarted (on a loaded 2-core machine), and
	// soakMaxLinkReconnect once its link is back: the master may have
	// dropped the connection during the cut, which the worker learns only
	// from its keepalive (10s + 10s).
	soakMaxReconnect     = 20 * time.Second
	soakMaxLinkReconnect = 45 * time.Second
)

// soakConfig is the master's config; .Extra is the "changed" variant a
// good reconfig toggles: one more builder in the force scheduler, a
// different poll interval (the poller restarts) and tree-stable timer (the
// scheduler restarts).
const soakConfig = `
title = "soak"
buildbot_url = "http://127.0.0.1:{{.WebPort}}/"
{{if .Bad}}
no_such_key = "a bad config is refused"
{{end}}
[protocols.grpc]
port = {{.GRPCPort}}
interface = "{{.HostAddr}}"

[protocols.msgpack]
port = {{.BBPort}}
interface = "{{.HostAddr}}"

[www]
port = {{.WebPort}}
interface = "127.0.0.1"

[www.change_hook.base]
{{if .DB}}
[db]
url = "{{.DB}}"
heartbeat_interval = "{{.Heartbeat}}"
master_timeout = "{{.MasterTimeout}}"
{{end}}
{{range .Workers}}
[[workers]]
name = "{{.}}"
password = "pw-{{.}}"
{{end}}
[[change_source]]
type = "git_poller"
name = "repo"
repourl = "{{.Repo}}"
branches = ["master"]
poll_interval = "{{if .Extra}}2s{{else}}1s{{end}}"
poll_at_launch = true

[[schedulers]]
type = "single_branch"
name = "poll"
branch = "master"
repository = "{{.Repo}}"
builder_names = ["b-a"]

[[schedulers]]
type = "any_branch"
name = "hooks"
branch_re = "^hook/"
tree_stable_timer = "{{if .Extra}}2s{{else}}1s{{end}}"
builder_names = ["b-b"]

[[schedulers]]
type = "force"
name = "force"
builder_names = ["b-a", "b-b", "b-c"{{if .Extra}}, "b-x"{{end}}]
{{range .Builders}}
[[builders]]
name = "{{.Name}}"
worker_names = [{{range $i, $w := .Workers}}{{if $i}}, {{end}}"{{$w}}"{{end}}]

  [[builders.steps]]
  type = "shell"
  name = "print"
  command = "i=0; while [ $i -lt {{$.Print}} ]; do i=$((i+1)); echo \"{{$.Mark}} line $i\"; done; sleep 0.$((%(prop:buildnumber)s %% 9 + 1))"

  [[builders.steps]]
  type = "shell"
  name = "maybe-fail"
  command = "i=0; while [ $i -lt {{$.Tail}} ]; do i=$((i+1)); echo \"{{$.Mark}} tail $i\"; done; sleep 0.$((%(prop:buildnumber)s %% 5)); [ $((%(prop:buildnumber)s %% 4)) -ne 0 ]"
{{end}}
`

type soakBuilder struct {
	Name    string
	Workers []string
}

type soakConfigData struct {
	// BBPort is [protocols.msgpack]'s, where the buildbot-worker
	// (soakBBWorker) logs in.
	WebPort, GRPCPort, BBPort int
	HostAddr, Repo            string
	Mark                      string
	Print, Tail               int
	Workers                   []string
	Builders                  []soakBuilder
	Extra, Bad                bool
	// DB is [db] url, when the masters share a PostgreSQL store (the
	// two-master soak), with its Heartbeat and MasterTimeout.
	DB, Heartbeat, MasterTimeout string
}

// soakProc is a process the soak started: a master or a worker.
type soakProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and been waited for
}

func soakStart(logPath string, name string, args ...string) (*soakProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &soakProc{cmd: cmd, done: make(chan struct{})}
	go func() { // owned by p: done says it has returned
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// kill sends sig and waits for the process to exit (SIGKILL after 30s).
func (p *soakProc) kill(sig syscall.Signal) {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

type soakWorker struct {
	name string
	ns   string // network namespace; "" runs on the host
	veth string // the host end of its link, when in a namespace
	proc *soakProc
}

// soakCounts are what the soak did and saw.
type soakCounts struct {
	forces, commits, hooks            int // accepted
	workerKills, masterKills          int
	linkCuts, goodReconfigs, badRecfg int
	reconnects                        int
	badStores                         int // stores that failed their check after a SIGKILL
	earlyReconfigs                    int // SIGHUPs to a master still starting (among goodReconfigs)
	maxReconnect, maxLinkReconnect    time.Duration
}

type soakRun struct {
	t      *testing.T
	began  time.Time // the test's start, for step's log
	seed   uint64
	id     string
	master string // binary
	worker string // binary
	dir    string
	mdir   string
	repo   string
	data   soakConfigData
	client *http.Client
	// storeURL is the store's URL when not the master's state.db (the
	// two-master soak's PostgreSQL database).
	storeURL string
	// masterArg is the -master of each gbb-worker, when not the one
	// master's gRPC port.
	masterArg map[string]string

	mu      sync.Mutex
	mproc   *soakProc              // guarded by mu; nil while the master is down
	workers map[string]*soakWorker // guarded by mu
	extra   bool                   // guarded by mu: the config applied is the Extra variant
	forces  map[int64]string       // guarded by mu: accepted forces, bsid → builder
	commits []string               // guarded by mu: revisions committed after the poller's first poll
	hooks   map[string]string      // guarded by mu: accepted webhook revisions → branch
	counts  soakCounts             // guarded by mu
	away    []soakAway             // guarded by mu: see awayFrom
}

func soakEnv(name string, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestSoak(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestSoak needs root (network namespaces to cut workers' links); make test runs as root in CI")
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
	t.Logf("soak: seed %d (GBB_SOAK_SEED=%d replays it), chaos for %v", seed, seed, duration)
	master, worker := buildBinaries(t)
	baseline := runtime.NumGoroutine()

	lock, err := os.OpenFile(soakLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", soakLock, err)
	}
	soakCleanNet() // with the lock held, any soak link or namespace is a killed run's

	var rb [3]byte
	rand.Read(rb[:])
	dir := t.TempDir()
	s := &soakRun{
		t: t, began: time.Now(), seed: seed, id: hex.EncodeToString(rb[:]),
		master: master, worker: worker, dir: dir,
		mdir:    filepath.Join(dir, "master"),
		workers: map[string]*soakWorker{},
		forces:  map[int64]string{},
		hooks:   map[string]string{},
		client:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
	}
	s.setupNet()
	defer s.teardown()

	s.repo = makeRepo(t, filepath.Join(dir, "repo"), map[string]string{"n": "0\n"})
	// One buildbot-worker (Debian's buildbot-worker 3.7, over msgpack)
	// among the gbb-workers, on the host: killed and restarted as they are.
	needBuildbotWorker(t)
	names := []string{soakBBWorker, "w1", "w2", "w3", "w4"}
	s.data = soakConfigData{
		WebPort: freePort(t), GRPCPort: freePort(t), BBPort: freePort(t), HostAddr: soakNet + ".1", Repo: s.repo,
		Mark: "soak-" + s.id, Print: soakPrint, Tail: soakTail, Workers: names,
	}
	s.writeConfig(false, false)
	mustRun(t, master, "checkconfig", s.mdir)
	for i, n := range names {
		w := &soakWorker{name: n}
		if i >= len(names)-soakNSWorker {
			w.ns = fmt.Sprintf("gskn%d-%s", i, s.id)
			w.veth = fmt.Sprintf("gskv%d%s", i, s.id)
		}
		s.workers[n] = w
	}
	s.netnsWorkers()
	s.startMaster(false)
	waitFor(t, "the poller's first poll", 60*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(s.mdir, "master.log"))
		return bytes.Contains(b, []byte("first poll: recording the tips"))
	})
	for _, n := range names {
		s.startWorker(n)
	}
	s.waitWorkers(60 * time.Second)

	// The load runs until stopLoad, which a failure calls too.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	wg.Go(func() { s.committer(stop, mrand.New(mrand.NewPCG(seed, 1))) })
	wg.Go(func() { s.forcer(stop, mrand.New(mrand.NewPCG(seed, 2))) })
	wg.Go(func() { s.hooker(stop, mrand.New(mrand.NewPCG(seed, 3))) })
	s.chaos(duration, mrand.New(mrand.NewPCG(seed, 4)))
	stopLoad()

	// Settle: every link up, every worker running, the full config, then
	// wait until everything submitted has run.
	s.settle()
	s.mu.Lock()
	s.mproc.kill(syscall.SIGTERM)
	s.mproc = nil
	for _, w := range s.workers {
		w.proc.kill(syscall.SIGTERM)
	}
	s.mu.Unlock()

	mlog, _ := os.ReadFile(filepath.Join(s.mdir, "master.log"))
	caughtUp := bytes.Count(mlog, []byte("offering the changes stored but not scheduled")) + bytes.Count(mlog, []byte("already built before a crash"))
	lost := s.verify() + s.counts.badStores
	s.counts.reconnects, s.counts.maxReconnect, s.counts.maxLinkReconnect = s.reconnections()
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
	t.Logf("soak summary: seed %d, builds %d (%d on the buildbot-worker), retries %d, forces %d, commits %d, webhook pushes %d, worker kills %d, master restarts %d, link cuts %d, reconfigs %d good (%d while the master started) / %d bad, reconnects %d (slowest %v after a restart, %v after a link came back), scheduler catch-ups after a crash %d, lost items %d",
		seed, builds, onBB, retries, c.forces, c.commits, c.hooks, c.workerKills, c.masterKills, c.linkCuts, c.goodReconfigs, c.earlyReconfigs, c.badRecfg, c.reconnects, c.maxReconnect.Round(time.Millisecond), c.maxLinkReconnect.Round(time.Millisecond), caughtUp, lost)
	if lost > 0 {
		t.Errorf("lost items: %d (seed %d)", lost, seed)
	}
}

// setupNet makes a bridge on the host (soakNet.1) and, for each worker
// that runs in a namespace, a namespace joined to it by a veth pair.
func (s *soakRun) setupNet() {
	br := "gskb-" + s.id
	netnsIP(s.t, "link", "add", br, "type", "bridge")
	netnsIP(s.t, "addr", "add", soakNet+".1/24", "dev", br)
	netnsIP(s.t, "link", "set", br, "up")
}

func (s *soakRun) netnsWorkers() {
	i := 2
	for _, n := range slices.Sorted(mapKeys(s.workers)) {
		w := s.workers[n]
		if w.ns == "" {
			continue
		}
		netnsIP(s.t, "netns", "add", w.ns)
		netnsIP(s.t, "link", "add", w.veth, "type", "veth", "peer", "name", "eth0", "netns", w.ns)
		netnsIP(s.t, "link", "set", w.veth, "master", "gskb-"+s.id)
		netnsIP(s.t, "link", "set", w.veth, "up")
		netnsIP(s.t, "-n", w.ns, "addr", "add", fmt.Sprintf("%s.%d/24", soakNet, i), "dev", "eth0")
		netnsIP(s.t, "-n", w.ns, "link", "set", "eth0", "up")
		netnsIP(s.t, "-n", w.ns, "link", "set", "lo", "up")
		i++
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// soakCleanNet removes every soak link and namespace.
func soakCleanNet() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "gskn") {
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
	out, _ = exec.Command("ip", "-o", "link", "show").Output()
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, "gskb-") || strings.HasPrefix(name, "gskv") {
			exec.Command("ip", "link", "del", name).Run()
		}
	}
}

// teardown stops whatever still runs and removes the namespaces and links.
func (s *soakRun) teardown() {
	if s.t.Failed() {
		s.dump()
	}
	s.mu.Lock()
	if s.mproc != nil {
		s.mproc.kill(syscall.SIGKILL)
	}
	for _, w := range s.workers {
		if w.proc != nil {
			w.proc.kill(syscall.SIGKILL)
		}
	}
	s.mu.Unlock()
	soakCleanNet()
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	if strings.Contains(string(out), "gsk") {
		s.t.Errorf("soak links left behind:\n%s", out)
	}
}

func (s *soakRun) writeConfig(extra, bad bool) {
	s.writeConfigTo(s.mdir, s.data, extra, bad)
}

// writeConfigTo writes the config of the master in mdir, d with extra and
// bad set.
func (s *soakRun) writeConfigTo(mdir string, d soakConfigData, extra, bad bool) {
	d.Extra, d.Bad = extra, bad
	d.Builders = []soakBuilder{
		{"b-a", []string{"w1", "w3"}},
		{"b-b", []string{"w2", "w4"}},
		{"b-c", []string{soakBBWorker, "w1", "w2", "w3", "w4"}},
	}
	if extra {
		d.Builders = append(d.Builders, soakBuilder{"b-x", []string{"w3", "w4"}})
	}
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mdir, "master.toml.sample")); err != nil {
		mustRun(s.t, s.master, "create-master", mdir)
	}
	var b bytes.Buffer
	if err := template.Must(template.New("soak").Parse(soakConfig)).Execute(&b, d); err != nil {
		s.t.Fatal(err)
	}
	// Written whole then renamed, so a reconfig never reads half a file.
	tmp := filepath.Join(mdir, ".master.toml.tmp")
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mdir, "master.toml")); err != nil {
		s.t.Fatal(err)
	}
}

// startMaster starts the master in the foreground (so that it can be
// SIGKILLed) and waits for its API.
//
// With hupEarly, it toggles the config and sends SIGHUP as soon as the pid
// file names the new master, while it is still starting: the new config
// must be in effect once it is up.
func (s *soakRun) startMaster(hupEarly bool) {
	logPath := filepath.Join(s.mdir, "master.log")
	var from int64
	if fi, err := os.Stat(logPath); err == nil {
		from = fi.Size()
	}
	p, err := soakStart(filepath.Join(s.dir, "master.out"), s.master, "start", "--nodaemon", s.mdir)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.mproc = p
	extra := s.extra
	s.mu.Unlock()
	exited := func() {
		select {
		case <-p.done:
			s.t.Fatalf("the master exited at start: %v (its output is dumped below)", p.cmd.ProcessState)
		default:
		}
	}
	if hupEarly {
		extra = !extra
		s.writeConfig(extra, false)
		waitFor(s.t, "the new master's pid file", 60*time.Second, func() bool {
			exited()
			b, _ := os.ReadFile(filepath.Join(s.mdir, "master.pid"))
			return strings.TrimSpace(string(b)) == strconv.Itoa(p.cmd.Process.Pid)
		})
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			s.t.Fatal(err)
		}
		s.mu.Lock()
		s.extra = extra
		s.counts.goodReconfigs++
		s.counts.earlyReconfigs++
		s.mu.Unlock()
	}
	waitFor(s.t, "the master's API", 60*time.Second, func() bool {
		exited()
		var v struct{ Builders []json.RawMessage }
		return s.get("/api/v2/builders", &v) == nil && len(v.Builders) > 0
	})
	if !hupEarly {
		return
	}
	waitFor(s.t, "the early reconfig applied", 60*time.Second, func() bool {
		exited()
		b, _ := os.ReadFile(logPath)
		return int64(len(b)) > from && bytes.Contains(b[from:], []byte("reconfig applied"))
	})
	var r struct {
		Builders []struct {
			Name      string            `json:"name"`
			MasterIDs []json.RawMessage `json:"masterids"`
		}
	}
	if err := s.get("/api/v2/builders", &r); err != nil {
		s.t.Fatal(err)
	}
	for _, b := range r.Builders {
		if b.Name == "b-x" && (len(b.MasterIDs) > 0) != extra {
			s.t.Errorf("a reconfig while the master started: builder b-x configured %v, want %v", len(b.MasterIDs) > 0, extra)
		}
	}
}

func (s *soakRun) startWorker(name string) {
	s.mu.Lock()
	w := s.workers[name]
	s.mu.Unlock()
	if name == soakBBWorker {
		s.startBBWorker(w)
		return
	}
	addr := fmt.Sprintf("%s.1:%d", soakNet, s.data.GRPCPort)
	if a := s.masterArg[name]; a != "" {
		addr = a
	}
	args := []string{"-master", addr, "-name", name, "-password", "pw-" + name,
		"-basedir", filepath.Join(s.dir, "worker-"+name)}
	bin := s.worker
	if w.ns != "" {
		args = append([]string{"netns", "exec", w.ns, s.worker}, args...)
		bin = "ip"
	}
	p, err := soakStart(filepath.Join(s.dir, "worker-"+name+".out"), bin, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	w.proc = p
	s.mu.Unlock()
}

// startBBWorker starts the buildbot-worker, made with create-worker the
// first time, in the foreground (so that it can be SIGKILLed).
func (s *soakRun) startBBWorker(w *soakWorker) {
	dir := filepath.Join(s.dir, "worker-"+w.name)
	if _, err := os.Stat(filepath.Join(dir, "buildbot.tac")); err != nil {
		mustRun(s.t, "buildbot-worker", "create-worker", "--protocol", "msgpack_experimental_v7", "--umask=0o22", "--maxdelay=2",
			dir, fmt.Sprintf("%s:%d", s.data.HostAddr, s.data.BBPort), w.name, "pw-"+w.name)
	}
	p, err := soakStart(filepath.Join(s.dir, "worker-"+w.name+".out"), "buildbot-worker", "start", "--nodaemon", dir)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	w.proc = p
	s.mu.Unlock()
}

func (s *soakRun) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.data.WebPort, path)
}

// get decodes the JSON at path into v; any failure (the master may be
// down) is an error.
func (s *soakRun) get(path string, v any) error {
	resp, err := s.client.Get(s.url(path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.Unmarshal(body, v)
}

type soakAPIWorker struct {
	Name        string            `json:"name"`
	ConnectedTo []json.RawMessage `json:"connected_to"`
}

func (s *soakRun) connected() (map[string]bool, error) {
	var r struct{ Workers []soakAPIWorker }
	if err := s.get("/api/v2/workers", &r); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, w := range r.Workers {
		out[w.Name] = len(w.ConnectedTo) > 0
	}
	return out, nil
}

// waitWorkers waits until every worker is connected.
func (s *soakRun) waitWorkers(timeout time.Duration) {
	waitFor(s.t, "every worker connected", timeout, func() bool {
		c, err := s.connected()
		if err != nil {
			return false
		}
		for _, n := range s.data.Workers {
			if !c[n] {
				return false
			}
		}
		return true
	})
}

// awayFrom records that what cut workers off is over (a worker restarted,
// a link restored, a master restarted): reconnections measures how long
// they took to attach again.
func (s *soakRun) awayFrom(link bool, names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.away = append(s.away, soakAway{n, time.Now(), link})
	}
}

type soakAway struct {
	worker string
	at     time.Time
	link   bool // a link restored, rather than a process restarted
}

// reconnections reads the master's log for the workers' attachments: it
// returns how many came after the first of each worker and, for each
// awayFrom, how long until the worker attached again (if it had to: a
// short link cut may leave the connection up) before its next one.
func (s *soakRun) reconnections(logs ...string) (n int, slowest, slowestLink time.Duration) {
	if len(logs) == 0 {
		logs = []string{filepath.Join(s.mdir, "master.log")}
	}
	var b []byte
	for _, p := range logs {
		data, err := os.ReadFile(p)
		if err != nil {
			s.t.Fatal(err)
		}
		b = append(b, data...)
	}
	attached := map[string][]time.Time{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `msg="worker attached"`) || !strings.Contains(line, " host=") {
			continue
		}
		var at time.Time
		var name string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "time="); ok {
				at, _ = time.Parse(time.RFC3339Nano, v)
			}
			if v, ok := strings.CutPrefix(f, "worker="); ok {
				name = v
			}
		}
		attached[name] = append(attached[name], at)
	}
	for _, ts := range attached {
		slices.SortFunc(ts, time.Time.Compare) // several masters' logs
		n += len(ts) - 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range s.away {
		until := time.Now()
		for _, b := range s.away[i+1:] {
			if b.worker == a.worker {
				until = b.at
				break
			}
		}
		for _, t := range attached[a.worker] {
			if !t.Before(a.at.Add(-time.Second)) && t.Before(until) {
				if a.link {
					slowestLink = max(slowestLink, t.Sub(a.at))
				} else {
					slowest = max(slowest, t.Sub(a.at))
				}
				break
			}
		}
	}
	return n, slowest, slowestLink
}

func (s *soakRun) git(args ...string) (string, error) {
	base := []string{"-C", s.repo, "-c", "user.name=Soak", "-c", "user.email=soak@example.com"}
	out, err := exec.Command("git", append(base, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// committer commits to the polled repository.
func (s *soakRun) committer(stop <-chan struct{}, rng *mrand.Rand) {
	for i := 1; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(300+rng.IntN(900)) * time.Millisecond):
		}
		if err := s.commit(i); err != nil {
			s.t.Errorf("commit: %v", err)
			return
		}
	}
}

func (s *soakRun) commit(i int) error {
	if err := os.WriteFile(filepath.Join(s.repo, "n"), []byte(fmt.Sprintln(i)), 0o644); err != nil {
		return err
	}
	if out, err := s.git("commit", "-q", "-a", "-m", fmt.Sprint("soak ", i)); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	rev, err := s.git("rev-parse", "HEAD")
	if err != nil {
		return fmt.Errorf("%v: %s", err, rev)
	}
	s.mu.Lock()
	s.commits = append(s.commits, rev)
	s.counts.commits++
	s.mu.Unlock()
	return nil
}

// forcer forces builds through the API and keeps the buildsets accepted.
func (s *soakRun) forcer(stop <-chan struct{}, rng *mrand.Rand) {
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
		s.force(builders[rng.IntN(len(builders))])
	}
}

func (s *soakRun) force(builder string) {
	s.forceAt(s.url(""), builder)
}

// forceAt forces a build of builder on the master whose web root is base.
func (s *soakRun) forceAt(base, builder string) {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":[%q],"reason":"soak"}}`, builder)
	resp, err := s.client.Post(base+"/api/v2/forceschedulers/force", "application/json", strings.NewReader(body))
	if err != nil {
		return // the master is down: not accepted
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return
	}
	var r struct {
		Result []json.RawMessage `json:"result"`
	}
	if json.Unmarshal(raw, &r) != nil || len(r.Result) != 2 {
		return // refused (b-x removed by a reconfig meanwhile)
	}
	var bsid int64
	if err := json.Unmarshal(r.Result[0], &bsid); err != nil {
		s.t.Errorf("force answer %s: %v", raw, err)
		return
	}
	s.mu.Lock()
	s.forces[bsid] = builder
	s.counts.forces++
	s.mu.Unlock()
}

// hooker pushes changes through the base webhook.
func (s *soakRun) hooker(stop <-chan struct{}, rng *mrand.Rand) {
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
		s.push(hex.EncodeToString(rb[:]), fmt.Sprintf("hook/%d", i%soakHookBrs))
	}
}

func (s *soakRun) push(rev, branch string) {
	s.pushAt(s.url(""), rev, branch)
}

// pushAt pushes a change through the webhook of the master whose web root
// is base.
func (s *soakRun) pushAt(base, rev, branch string) {
	form := url.Values{"author": {"Hook <hook@example.com>"}, "branch": {branch}, "revision": {rev},
		"repository": {"https://example.com/hooked.git"}, "comments": {"pushed"}, "files": {`["a.txt"]`}}
	resp, err := s.client.PostForm(base+"/change_hook/base", form)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return
	}
	s.mu.Lock()
	s.hooks[rev] = branch
	s.counts.hooks++
	s.mu.Unlock()
}

// chaos runs random disasters for d: first one of each kind, in a random
// order (so that a short run sees them all), then at random.
func (s *soakRun) chaos(d time.Duration, rng *mrand.Rand) {
	end := time.Now().Add(d)
	first := rng.Perm(6) // one x in each case's range below
	for i := 0; time.Now().Before(end); i++ {
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		names := s.data.Workers
		x := rng.IntN(100)
		if i < len(first) {
			x = []int{0, 30, 50, 65, 78, 79}[first[i]]
		}
		switch {
		case x < 30:
			s.step(i, "kill a worker")
			s.killWorker(rng)
		case x < 50:
			s.step(i, "cut a link")
			s.cutLink(rng)
		case x < 65:
			s.step(i, "good reconfig")
			s.goodReconfig()
		case x < 79:
			s.step(i, "bad reconfig")
			s.badReconfig(x == 78 || x != 65 && rng.IntN(2) == 0) // the first two: one by SIGHUP, one by the command
		default: // SIGKILL the master, restart it
			s.step(i, "kill the master")
			s.mu.Lock()
			p := s.mproc
			s.mproc = nil
			s.counts.masterKills++
			s.mu.Unlock()
			p.kill(syscall.SIGKILL)
			// The store a SIGKILL left must pass the check as it is.
			s.withStore(func(db store.Store) {
				if err := db.Check(); err != nil {
					s.mu.Lock()
					s.counts.badStores++
					s.mu.Unlock()
					s.t.Errorf("lost: the store after a SIGKILL: %v", err)
				}
			})
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
			s.awayFrom(false, names...) // the time to start counts
			s.startMaster(rng.IntN(3) == 0)
		}
	}
}

// killWorker SIGKILLs a worker and restarts it.
func (s *soakRun) killWorker(rng *mrand.Rand) {
	names := s.data.Workers
	n := names[rng.IntN(len(names))]
	s.mu.Lock()
	p := s.workers[n].proc
	s.counts.workerKills++
	s.mu.Unlock()
	p.kill(syscall.SIGKILL)
	time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
	s.startWorker(n)
	s.awayFrom(false, n)
}

// cutLink cuts a namespaced worker's link and restores it 1-6s later.
func (s *soakRun) cutLink(rng *mrand.Rand) {
	names := s.data.Workers
	n := names[len(names)-soakNSWorker+rng.IntN(soakNSWorker)]
	veth := s.workers[n].veth
	netnsIP(s.t, "link", "set", veth, "down")
	s.mu.Lock()
	s.counts.linkCuts++
	s.mu.Unlock()
	time.Sleep(time.Duration(1000+rng.IntN(5000)) * time.Millisecond)
	netnsIP(s.t, "link", "set", veth, "up")
	s.awayFrom(true, n)
}

// goodReconfig toggles the Extra variant with `gbb-master reconfig`.
func (s *soakRun) goodReconfig() {
	s.mu.Lock()
	extra := !s.extra
	s.mu.Unlock()
	s.writeConfig(extra, false)
	out, err := run(s.t, s.master, "reconfig", s.mdir)
	if err != nil || !strings.Contains(out, "completed successfully") {
		s.t.Fatalf("good reconfig: %v\n%s", err, out)
	}
	s.mu.Lock()
	s.extra = extra
	s.counts.goodReconfigs++
	s.mu.Unlock()
}

// badReconfig writes a config with an unknown key and asks for a reconfig:
// with `gbb-master reconfig`, which must refuse and print the error, or
// with a bare SIGHUP, which the master must refuse in its log. Either way
// the running config stays; the good file is put back.
func (s *soakRun) badReconfig(bySignal bool) {
	s.mu.Lock()
	extra := s.extra
	pid := s.mproc.cmd.Process.Pid
	s.mu.Unlock()
	s.writeConfig(extra, true)
	defer s.writeConfig(extra, false)
	if !bySignal {
		out, err := run(s.t, s.master, "reconfig", s.mdir)
		if err == nil || !strings.Contains(out, "master.toml:") || !strings.Contains(out, "no_such_key") {
			s.t.Fatalf("bad reconfig: %v, want a refusal naming master.toml:LINE and the key:\n%s", err, out)
		}
	} else {
		logPath := filepath.Join(s.mdir, "master.log")
		fi, err := os.Stat(logPath)
		if err != nil {
			s.t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			s.t.Fatal(err)
		}
		waitFor(s.t, "the master's refusal of a bad config in master.log", 30*time.Second, func() bool {
			f, err := os.Open(logPath)
			if err != nil {
				return false
			}
			defer f.Close()
			f.Seek(fi.Size(), io.SeekStart)
			b, _ := io.ReadAll(f)
			return bytes.Contains(b, []byte("reconfig refused")) && bytes.Contains(b, []byte("no_such_key"))
		})
	}
	s.mu.Lock()
	s.counts.badRecfg++
	s.mu.Unlock()
}

// settle ends the chaos: every link up, every worker running, the Extra
// config (so that requests for b-x can run), then waits until every
// commit and push is a change, the last of each branch is in a buildset,
// and no request is left.
func (s *soakRun) settle() {
	s.mu.Lock()
	extra := s.extra
	s.mu.Unlock()
	if !extra {
		s.goodReconfig()
	}
	s.waitWorkers(60 * time.Second)
	s.settleWait()
}

// settleWait waits until every commit and push is a change, the last of
// each branch is in a buildset, and no request is left.
func (s *soakRun) settleWait() {
	s.mu.Lock()
	last := map[string]string{} // revision each scheduler's last buildset must build, by branch
	if len(s.commits) > 0 {
		last["master"] = s.commits[len(s.commits)-1]
	}
	s.mu.Unlock()
	s.lastHookRevs(last)
	waitFor(s.t, "the last commit and push of each branch in a buildset", 2*time.Minute, func() bool {
		var r struct {
			Buildsets []struct {
				Sourcestamps []struct {
					Revision string `json:"revision"`
				} `json:"sourcestamps"`
			}
		}
		if s.get("/api/v2/buildsets", &r) != nil {
			return false
		}
		seen := map[string]bool{}
		for _, bs := range r.Buildsets {
			for _, ss := range bs.Sourcestamps {
				seen[ss.Revision] = true
			}
		}
		for _, rev := range last {
			if !seen[rev] {
				return false
			}
		}
		return true
	})
	waitFor(s.t, "every build request complete", 5*time.Minute, func() bool {
		var r struct {
			Buildrequests []json.RawMessage
		}
		return s.get("/api/v2/buildrequests?complete=false", &r) == nil && len(r.Buildrequests) == 0
	})
}

// lastHookRevs sets, for each hook branch, the revision of the newest
// change the master stored on it (the webhook keeps no order of its own).
func (s *soakRun) lastHookRevs(last map[string]string) {
	var r struct {
		Changes []struct {
			ID       int64  `json:"changeid"`
			Branch   string `json:"branch"`
			Revision string `json:"revision"`
		}
	}
	if err := s.get("/api/v2/changes", &r); err != nil {
		s.t.Fatal(err)
	}
	var newest = map[string]int64{}
	for _, c := range r.Changes {
		if strings.HasPrefix(c.Branch, "hook/") && c.ID > newest[c.Branch] {
			newest[c.Branch], last[c.Branch] = c.ID, c.Revision
		}
	}
}

// withStore opens the stopped masters' store.
func (s *soakRun) withStore(fn func(store.Store)) {
	url := s.storeURL
	if url == "" {
		url = "state.db"
	}
	db, err := store.OpenURL(url, s.mdir, store.Options{Timeout: 10 * time.Second})
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	fn(db)
}

// verify checks the store of the stopped master and returns the number of
// lost items, each reported.
func (s *soakRun) verify() int {
	lost := 0
	lose := func(format string, args ...any) {
		lost++
		if lost <= 50 {
			s.t.Errorf("lost: "+format, args...)
		}
	}
	s.withStore(func(db store.Store) {
		if err := db.Check(); err != nil {
			lose("%v", err)
		}
		reqs, err := db.BuildRequests(store.BuildRequestFilter{})
		if err != nil {
			s.t.Fatal(err)
		}
		built := map[int64]bool{} // buildsets with a request that ran to a result
		for _, r := range reqs {
			if !r.Complete || r.Results < store.Success || r.Results > store.Cancelled {
				lose("buildrequest %d: complete %v, results %d", r.ID, r.Complete, r.Results)
			}
			if r.Results == store.Success || r.Results == store.Warnings || r.Results == store.Failure {
				built[r.BuildsetID] = true
			}
		}
		for bsid, builder := range s.forces {
			if _, err := db.Buildset(bsid); err != nil {
				lose("accepted force of %s: buildset %d: %v", builder, bsid, err)
			} else if !built[bsid] {
				lose("accepted force of %s: buildset %d never built", builder, bsid)
			}
		}

		changes, err := db.Changes(store.ChangeFilter{})
		if err != nil {
			s.t.Fatal(err)
		}
		byRev := map[string][]int64{}
		for _, c := range changes {
			byRev[c.Revision] = append(byRev[c.Revision], c.ID)
		}
		sets, err := db.Buildsets(nil)
		if err != nil {
			s.t.Fatal(err)
		}
		perSched := map[string]map[int64][]int64{"poll": {}, "hooks": {}} // scheduler → change → buildsets
		for _, bs := range sets {
			if m := perSched[bs.SchedulerName]; m != nil {
				for _, cid := range bs.ChangeIDs {
					m[cid] = append(m[cid], bs.ID)
				}
			}
		}
		check := func(kind, sched string, revs []string) {
			for _, rev := range revs {
				ids := byRev[rev]
				if len(ids) != 1 {
					lose("%s %s: in %d changes %v, want 1", kind, rev[:12], len(ids), ids)
					continue
				}
				bss := perSched[sched][ids[0]]
				switch {
				case len(bss) != 1:
					lose("%s %s (change %d): in %d buildsets %v of scheduler %s, want 1", kind, rev[:12], ids[0], len(bss), bss, sched)
				case !built[bss[0]]:
					lose("%s %s (change %d): buildset %d never built", kind, rev[:12], ids[0], bss[0])
				}
			}
		}
		check("commit", "poll", s.commits)
		check("webhook push", "hooks", slices.Collect(mapKeys(s.hooks)))
		// Every change stored, accepted or not (a push whose answer a
		// SIGKILL cut off), is built once by its scheduler.
		for _, c := range changes {
			sched := "hooks"
			if c.Repository == s.repo {
				sched = "poll"
			}
			if n := len(perSched[sched][c.ID]); n != 1 {
				lose("change %d (%s on %s): in %d buildsets of scheduler %s, want 1", c.ID, c.Revision[:12], c.Branch, n, sched)
			}
		}

		builds, err := db.Builds(store.BuildFilter{})
		if err != nil {
			s.t.Fatal(err)
		}
		if s.storeURL != "" {
			s.verifyShared(db, reqs, builds, lose)
		}
		for _, b := range builds {
			if !b.Complete {
				lose("build %d: not complete", b.ID)
				continue
			}
			lose2 := func(format string, args ...any) {
				lose("build %d (results %d): "+format, append([]any{b.ID, b.Results}, args...)...)
			}
			s.checkLogs(db, b, lose2)
		}
	})
	return lost
}

// checkLogs checks that every log of a finished build is complete and, for
// a build that ran to its end, that each step printed all its lines.
func (s *soakRun) checkLogs(db store.Store, b store.Build, lose func(string, ...any)) {
	ranToEnd := b.Results == store.Success || b.Results == store.Failure
	steps, err := db.Steps(b.ID)
	if err != nil {
		lose("steps: %v", err)
		return
	}
	if n := len(slices.DeleteFunc(slices.Clone(steps), func(st store.Step) bool { return st.Name != "print" && st.Name != "maybe-fail" })); ranToEnd && n != 2 {
		lose("%d of the steps print and maybe-fail, want 2", n)
	}
	for _, st := range steps {
		if !st.Complete {
			lose("step %s not complete", st.Name)
		}
		logs, err := db.Logs(st.ID)
		if err != nil {
			lose("logs of step %s: %v", st.Name, err)
			continue
		}
		for _, l := range logs {
			if !l.Complete {
				lose("log %s of step %s not complete", l.Name, st.Name)
			}
		}
		if !ranToEnd || st.Results == store.Skipped {
			continue
		}
		want, ours := map[string]int{"print": soakPrint, "maybe-fail": soakTail}[st.Name]
		if !ours {
			continue
		}
		l, err := db.LogBySlug(st.ID, "stdio")
		if err != nil {
			lose("step %s: stdio: %v", st.Name, err)
			continue
		}
		text, err := db.LogLines(l.ID, 0, l.NumLines)
		if err != nil {
			lose("step %s: read stdio: %v", st.Name, err)
			continue
		}
		got := 0
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "o") && strings.Contains(line, s.data.Mark) {
				got++
			}
		}
		if got != want {
			lose("step %s: %d lines printed in its log, want %d", st.Name, got, want)
		}
	}
}

// waitNoProcesses waits until no process of the soak (workers, their
// steps) is left.
func (s *soakRun) waitNoProcesses() {
	var left []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		left = left[:0]
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil {
				continue
			}
			cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			if strings.Contains(cmd, s.data.Mark) || strings.Contains(cmd, s.dir) {
				left = append(left, fmt.Sprintf("%d: %s", pid, cmd))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("processes left behind:\n%s", strings.Join(left, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// step logs chaos step i, so that a failure's log tells where in the
// chaos it came.
func (s *soakRun) step(i int, what string) {
	s.t.Logf("chaos step %d at %v: %s", i, time.Since(s.began).Round(time.Millisecond), what)
}

// dump logs the master's and workers' output (teardown calls it when the
// test failed: after the failure's message, which CI shows first).
func (s *soakRun) dump() {
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".out") {
			b, _ := os.ReadFile(filepath.Join(s.dir, e.Name()))
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			s.t.Logf("--- %s (tail):\n%s", e.Name(), b)
		}
	}
}
