package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/master"
)

// options shape one master and its workers.
type options struct {
	workers     int
	repoURL     string // git repository the poller watches; empty means no poller
	pollSeconds int
	logBytes    int // what the "log" builder's step prints
	// simulated runs the workers as protocol clients in the bench process
	// (gbb only) instead of worker processes: see simWorkers.
	simulated bool
	// state, when set, is a store copied in as the master's state.db.
	state string
	// coldState drops the copy of state from the page cache before the
	// master starts, as after a reboot: see copyFile.
	coldState bool
	// tmpl is the gbb config template; "" means master.toml.tmpl.
	tmpl string
	// builders names the builders of a template that lists them.
	builders []string
	// tpBuilders adds that many one-step `true` builders (t0, t1, ...)
	// on every worker, and lets each worker run one build of each at once
	// (max_builds = tpBuilders): the throughput scenario.
	tpBuilders int
	// noMetrics sets [www] metrics = false (gbb only).
	noMetrics bool
	// dbURL sets [db] url (gbb only): a PostgreSQL store instead of the
	// default bbolt file in the master's basedir.
	dbURL string
}

// system is gbb or buildbot: how to lay out and start a master and workers.
type system interface {
	name() string
	// prepare writes the master's and workers' files; it is not timed.
	prepare(b *testing.B, inst *instance, o options)
	// startMaster starts the master process.
	startMaster(b *testing.B, inst *instance) *proc
	// startWorker starts one worker process.
	startWorker(b *testing.B, inst *instance, name string) *proc
}

// instance is one running master with its workers, on loopback.
type instance struct {
	sys        system
	dir        string
	webPort    int
	workerPort int
	workers    []string
	master     *proc
	workerPs   []*proc
	builders   map[string]int64 // name → builderid
	client     *http.Client
	sims       *sims // simulated workers, when options.simulated
	ev         *watcher
}

// events returns the instance's /ws watcher, opened on first use (after
// the start-up and idle-memory readings, which it would change).
func (i *instance) events(b *testing.B) *watcher {
	b.Helper()
	if i.ev == nil {
		i.ev = watch(b, i)
	}
	return i.ev
}

func (i *instance) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", i.webPort, path)
}

// proc is a process the bench started; pid is the test's own for an
// in-process master.
type proc struct {
	name string
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
	stop func() // in-process master only
}

var live struct {
	mu    sync.Mutex
	procs map[*proc]bool
}

func track(p *proc, on bool) {
	live.mu.Lock()
	defer live.mu.Unlock()
	if live.procs == nil {
		live.procs = map[*proc]bool{}
	}
	if on {
		live.procs[p] = true
	} else {
		delete(live.procs, p)
	}
}

// tempDirs are the directories the bench made outside any b.TempDir (the
// binaries, buildbot's www stub), removed when the bench exits.
var tempDirs struct {
	mu   sync.Mutex
	dirs []string
}

func tempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		tempDirs.mu.Lock()
		tempDirs.dirs = append(tempDirs.dirs, dir)
		tempDirs.mu.Unlock()
	}
	return dir, err
}

// atExit are functions cleanupAll runs once the processes are stopped
// (the bench's PostgreSQL server: its masters are stopped first).
var atExit struct {
	mu  sync.Mutex
	fns []func()
}

func onExit(fn func()) {
	atExit.mu.Lock()
	defer atExit.mu.Unlock()
	atExit.fns = append(atExit.fns, fn)
}

// cleanupAll stops what a failed benchmark left running, runs atExit, then
// removes tempDirs.
func cleanupAll() {
	defer func() {
		tempDirs.mu.Lock()
		defer tempDirs.mu.Unlock()
		for _, d := range tempDirs.dirs {
			os.RemoveAll(d)
		}
		tempDirs.dirs = nil
	}()
	live.mu.Lock()
	ps := make([]*proc, 0, len(live.procs))
	for p := range live.procs {
		ps = append(ps, p)
	}
	live.mu.Unlock()
	stopAll(ps)
	atExit.mu.Lock()
	defer atExit.mu.Unlock()
	for _, fn := range atExit.fns {
		fn()
	}
	atExit.fns = nil
}

// spawn starts a command with its output in logFile.
func spawn(b *testing.B, name string, dir, logFile string, env []string, argv ...string) *proc {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	f, err := os.Create(logFile)
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	track(p, true)
	return p
}

func (p *proc) exited() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stopAll sends SIGTERM to every process, waits, then kills what is left.
func stopAll(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p == nil {
			continue
		}
		wg.Go(func() {
			defer track(p, false)
			if p.stop != nil {
				p.stop()
				return
			}
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				syscall.Kill(-p.pid, syscall.SIGKILL)
				<-p.done
			}
		})
	}
	wg.Wait()
}

func (i *instance) stop() {
	i.sims.stop()
	stopAll(append([]*proc{i.master}, i.workerPs...))
}

func freePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// launch prepares and starts a master and o.workers workers, and returns
// the time from the master's exec to the API listing every worker as
// connected. Workers start as soon as the master's worker port accepts.
func launch(b *testing.B, sys system, o options) (*instance, time.Duration) {
	b.Helper()
	inst := prepareInstance(b, sys, o)
	return inst, inst.start(b, o, inst.workers, len(inst.workers))
}

// prepareInstance lays out a master and its o.workers workers without starting
// anything; the instance is stopped when b ends.
func prepareInstance(b *testing.B, sys system, o options) *instance {
	b.Helper()
	if o.workers == 0 {
		o.workers = 1
	}
	inst := &instance{
		sys:        sys,
		dir:        b.TempDir(),
		webPort:    freePort(b),
		workerPort: freePort(b),
		client:     &http.Client{Timeout: 60 * time.Second},
	}
	for n := range o.workers {
		inst.workers = append(inst.workers, fmt.Sprintf("w%d", n))
	}
	sys.prepare(b, inst, o)
	if o.state != "" {
		if sys.name() != "gbb" {
			b.Fatalf("%s: no premade store", sys.name())
		}
		dst := filepath.Join(inst.dir, "master", "state.db")
		copyFile(b, o.state, dst)
		if o.coldState {
			dropCache(b, dst)
		}
	}
	b.Cleanup(inst.stop)
	return inst
}

// start starts the master of a prepared instance, then the workers named
// in connect (worker processes, or simulated ones when o.simulated) on it,
// and waits until the API lists want workers as connected (with several
// masters on one store, it lists those of every master). It returns the
// time from the master's exec to then.
func (inst *instance) start(b *testing.B, o options, connect []string, want int) time.Duration {
	b.Helper()
	sys := inst.sys
	t0 := time.Now()
	inst.master = sys.startMaster(b, inst)
	waitUntil(b, sys.name()+" worker port", 120*time.Second, time.Millisecond, func() bool {
		if inst.master.exited() {
			// inst.dir goes with b: the end of the log is all that is left.
			out, _ := os.ReadFile(filepath.Join(inst.dir, "master.out"))
			b.Fatalf("%s master exited; the end of its output:\n%s", sys.name(), out[max(0, len(out)-3000):])
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", inst.workerPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if o.simulated {
		inst.sims = startSims(b, inst, connect)
	} else {
		for _, w := range connect {
			inst.workerPs = append(inst.workerPs, sys.startWorker(b, inst, w))
		}
	}
	waitUntil(b, sys.name()+" workers connected", 120*time.Second, 2*time.Millisecond, func() bool {
		return inst.connectedWorkers() == want
	})
	d := time.Since(t0)

	var r struct {
		Builders []struct {
			BuilderID int64  `json:"builderid"`
			Name      string `json:"name"`
		} `json:"builders"`
	}
	inst.getJSON(b, "/api/v2/builders", &r)
	inst.builders = map[string]int64{}
	for _, x := range r.Builders {
		inst.builders[x.Name] = x.BuilderID
	}
	return d
}

// waitUntil polls cond every interval until it holds.
func waitUntil(b *testing.B, what string, timeout, interval time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

// get fetches a path; it returns the status and body, or an error.
func (i *instance) get(path string) (int, []byte, error) {
	resp, err := i.client.Get(i.url(path))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func (i *instance) getJSON(b *testing.B, path string, v any) {
	b.Helper()
	code, body, err := i.get(path)
	if err != nil || code != 200 {
		b.Fatalf("%s GET %s: %d %v %.300s", i.sys.name(), path, code, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		b.Fatalf("%s GET %s: %v", i.sys.name(), path, err)
	}
}

// connectedWorkers counts the workers the API lists as connected; -1 when
// the API does not answer yet.
func (i *instance) connectedWorkers() int {
	code, body, err := i.get("/api/v2/workers")
	if err != nil || code != 200 {
		return -1
	}
	var r struct {
		Workers []struct {
			ConnectedTo []json.RawMessage `json:"connected_to"`
		} `json:"workers"`
	}
	if json.Unmarshal(body, &r) != nil {
		return -1
	}
	n := 0
	for _, w := range r.Workers {
		if len(w.ConnectedTo) > 0 {
			n++
		}
	}
	return n
}

// force asks the force scheduler for one build of builder and returns the
// build request id.
func (i *instance) force(b *testing.B, builder string) int64 {
	b.Helper()
	id, ok := i.builders[builder]
	if !ok {
		b.Fatalf("%s: no builder %s in %v", i.sys.name(), builder, i.builders)
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"reason":"bench","owner":"bench"}}`, id)
	resp, err := i.client.Post(i.url("/api/v2/forceschedulers/force"), "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatalf("%s force: %v", i.sys.name(), err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Result []json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 || len(r.Result) != 2 {
		b.Fatalf("%s force: %s: %.300s", i.sys.name(), resp.Status, raw)
	}
	var brids map[string]int64
	if err := json.Unmarshal(r.Result[1], &brids); err != nil {
		b.Fatalf("%s force: %v", i.sys.name(), err)
	}
	return brids[strconv.FormatInt(id, 10)]
}

// requestComplete says whether a build request is complete.
func (i *instance) requestComplete(b *testing.B, brid int64) bool {
	b.Helper()
	var r struct {
		Buildrequests []struct {
			Complete bool `json:"complete"`
		} `json:"buildrequests"`
	}
	i.getJSON(b, fmt.Sprintf("/api/v2/buildrequests/%d", brid), &r)
	return len(r.Buildrequests) == 1 && r.Buildrequests[0].Complete
}

// buildsOf counts the builds of a builder.
func (i *instance) buildsOf(b *testing.B, builder string) int {
	b.Helper()
	var r struct {
		Builds []json.RawMessage `json:"builds"`
	}
	i.getJSON(b, fmt.Sprintf("/api/v2/builders/%d/builds", i.builders[builder]), &r)
	return len(r.Builds)
}

// status reads a field of /proc/PID/status in MB (VmRSS, VmHWM).
func status(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuSeconds is the user+system CPU time of a process so far.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// configData is what both config templates see.
type configData struct {
	WebPort, WorkerPort int
	Workers             []string
	WorkerList          string // "w0", "w1"
	RepoURL             string
	PollSeconds         int
	LogCommand          string
	Builders            []string
	TPBuilders          []string // throughput builders
	MaxBuilds           int      // each worker's max_builds
	NoMetrics           bool     // [www] metrics = false
	DBURL               string   // [db] url; "" keeps the default (bbolt)
}

// logLine is a 100-byte line (99 characters and \n), for fillers.
const logLine = "gbb-bench-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789-abcdefghijklmn"

// buildLog is a real build's output, what the log steps print (repeated to
// their size): testdata/buildlog.txt.gz is `go build -v -x` of gbb's worker
// from an empty cache, then `go test -v` of some of gbb's packages. A log of
// one repeated line would compress (in the store, and on the wire) far
// better than a real one.
var buildLog = sync.OnceValues(func() ([]byte, error) {
	f, err := os.Open("testdata/buildlog.txt.gz")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(z)
})

func mustBuildLog(b *testing.B) []byte {
	b.Helper()
	data, err := buildLog()
	if err != nil {
		b.Fatalf("testdata/buildlog.txt.gz: %v", err)
	}
	return data
}

// buildLogRatio is buildLog's gzip compression ratio (default level):
// its size over its compressed size.
var buildLogRatio = sync.OnceValue(func() float64 {
	data, err := buildLog()
	if err != nil {
		return 0
	}
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	z.Write(data)
	z.Close()
	return float64(len(data)) / float64(buf.Len())
})

// repeatedLog writes size bytes of buildLog, repeated, to path.
func repeatedLog(b *testing.B, path string, size int) {
	b.Helper()
	text := mustBuildLog(b)
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for left := size; left > 0; left -= min(left, len(text)) {
		if _, err := f.Write(text[:min(left, len(text))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

func writeTemplate(b *testing.B, tmpl, out string, inst *instance, o options) {
	b.Helper()
	quoted := make([]string, len(inst.workers))
	for n, w := range inst.workers {
		quoted[n] = strconv.Quote(w)
	}
	logFile := filepath.Join(inst.dir, "buildlog.txt")
	if _, err := os.Stat(logFile); err != nil {
		repeatedLog(b, logFile, max(o.logBytes, 100))
	}
	d := configData{
		WebPort: inst.webPort, WorkerPort: inst.workerPort, Workers: inst.workers,
		WorkerList: strings.Join(quoted, ", "), RepoURL: o.repoURL, PollSeconds: max(o.pollSeconds, 1),
		LogCommand: "cat " + logFile,
		Builders:   o.builders,
		MaxBuilds:  max(1, o.tpBuilders),
		NoMetrics:  o.noMetrics,
		DBURL:      o.dbURL,
	}
	for n := range o.tpBuilders {
		d.TPBuilders = append(d.TPBuilders, fmt.Sprintf("t%d", n))
	}
	t := template.Must(template.ParseFiles(filepath.Join("testdata", tmpl)))
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
}

func mustRun(b *testing.B, dir string, env []string, argv ...string) {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// gbb is the system under test.
type gbb struct{}

func (gbb) name() string { return "gbb" }

var gbbBins = sync.OnceValues(func() (string, error) {
	dir, err := tempDir("gbb-bench-bin")
	if err != nil {
		return "", err
	}
	for _, p := range []string{"master", "worker"} {
		// As make build: grpcnotrace (see the Makefile).
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace", "-o", filepath.Join(dir, "gbb-"+p), "./cmd/"+p)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build ./cmd/%s: %v\n%s", p, err, out)
		}
	}
	return dir, nil
})

func gbbBin(b *testing.B, name string) string {
	b.Helper()
	dir, err := gbbBins()
	if err != nil {
		b.Fatal(err)
	}
	return filepath.Join(dir, name)
}

func (gbb) prepare(b *testing.B, inst *instance, o options) {
	md := filepath.Join(inst.dir, "master")
	mustRun(b, inst.dir, nil, gbbBin(b, "gbb-master"), "create-master", md)
	tmpl := o.tmpl
	if tmpl == "" {
		tmpl = "master.toml.tmpl"
	}
	writeTemplate(b, tmpl, filepath.Join(md, "master.toml"), inst, o)
}

func (gbb) startMaster(b *testing.B, inst *instance) *proc {
	md := filepath.Join(inst.dir, "master")
	if !cfg().inproc {
		return spawn(b, "gbb-master", inst.dir, filepath.Join(inst.dir, "master.out"), nil,
			gbbBin(b, "gbb-master"), "start", "--nodaemon", md)
	}
	// In the test process, so that go test -cpuprofile sees the master.
	c, err := config.Load(filepath.Join(md, "master.toml"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := master.New(md, c, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx, nil); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "bench: in-process master:", err)
		}
	}()
	p := &proc{name: "gbb-master (in process)", pid: os.Getpid(), done: done, stop: func() { cancel(); <-done }}
	track(p, true)
	return p
}

func (gbb) startWorker(b *testing.B, inst *instance, name string) *proc {
	return spawn(b, "gbb-worker "+name, inst.dir, filepath.Join(inst.dir, "worker-"+name+".out"), nil,
		gbbBin(b, "gbb-worker"), "-master", fmt.Sprintf("127.0.0.1:%d", inst.workerPort),
		"-name", name, "-password", "pass", "-basedir", filepath.Join(inst.dir, "worker-"+name))
}

// buildbot is Python buildbot 3.7 from Debian, with the www stub.
type buildbot struct {
	stub string // directory put on PYTHONPATH
}

func (buildbot) name() string { return "buildbot" }

// findBuildbot makes sure buildbot, buildbot-worker and twistd are
// installed, installing Debian's packages when they are missing, and copies
// the www stub out of testdata. It returns why buildbot cannot run, or "".
var findBuildbot = sync.OnceValues(func() (buildbot, string) {
	if !cfg().buildbot {
		return buildbot{}, "GBB_BENCH_BUILDBOT=0"
	}
	missing := func() bool {
		for _, c := range []string{"buildbot", "buildbot-worker", "twistd3"} {
			if _, err := exec.LookPath(c); err != nil {
				return true
			}
		}
		return false
	}
	if missing() {
		fmt.Fprintln(os.Stderr, "bench: buildbot is missing; installing it: apt-get install -y buildbot buildbot-worker")
		cmd := exec.Command("apt-get", "install", "-y", "buildbot", "buildbot-worker")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil || missing() {
			return buildbot{}, fmt.Sprintf("apt-get install buildbot buildbot-worker failed: %v", err)
		}
	}
	stub, err := tempDir("gbb-bench-www-stub")
	if err != nil {
		return buildbot{}, err.Error()
	}
	if err := os.CopyFS(stub, os.DirFS("testdata/buildbot-www-stub")); err != nil {
		return buildbot{}, err.Error()
	}
	// The copy keeps testdata's read-only modes; Python must not need more.
	filepath.WalkDir(stub, func(p string, d fs.DirEntry, _ error) error {
		if d != nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return buildbot{stub: stub}, ""
})

// needBuildbot returns buildbot, or nil (and logs why) when it cannot run.
func needBuildbot(b *testing.B) system {
	bb, why := findBuildbot()
	if why != "" {
		b.Logf("buildbot side skipped: %s", why)
		return nil
	}
	return bb
}

func (s buildbot) env() []string {
	return []string{"PYTHONPATH=" + s.stub, "PYTHONDONTWRITEBYTECODE=1"}
}

func (s buildbot) prepare(b *testing.B, inst *instance, o options) {
	md := filepath.Join(inst.dir, "master")
	mustRun(b, inst.dir, s.env(), "buildbot", "create-master", "-r", md)
	writeTemplate(b, "master.cfg.tmpl", filepath.Join(md, "master.cfg"), inst, o)
	var wg sync.WaitGroup
	errs := make([]error, len(inst.workers))
	for n, w := range inst.workers {
		wg.Go(func() {
			cmd := exec.Command("buildbot-worker", "create-worker", "-r", filepath.Join(inst.dir, "worker-"+w),
				fmt.Sprintf("127.0.0.1:%d", inst.workerPort), w, "pass")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[n] = fmt.Errorf("create-worker %s: %v\n%s", w, err, out)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}

func (s buildbot) startMaster(b *testing.B, inst *instance) *proc {
	md := filepath.Join(inst.dir, "master")
	return spawn(b, "buildbot master", md, filepath.Join(inst.dir, "master.out"), s.env(),
		"twistd3", "--nodaemon", "--no_save", "--pidfile=", "-y", "buildbot.tac")
}

func (s buildbot) startWorker(b *testing.B, inst *instance, name string) *proc {
	wd := filepath.Join(inst.dir, "worker-"+name)
	return spawn(b, "buildbot-worker "+name, wd, filepath.Join(inst.dir, "worker-"+name+".out"), s.env(),
		"twistd3", "--nodaemon", "--no_save", "--pidfile=", "-y", "buildbot.tac")
}

// postForm posts a form (the base change hook) and checks the status.
func (i *instance) postForm(b *testing.B, path string, v url.Values) {
	b.Helper()
	resp, err := i.client.PostForm(i.url(path), v)
	if err != nil {
		b.Fatalf("%s POST %s: %v", i.sys.name(), path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("%s POST %s: %s: %.300s", i.sys.name(), path, resp.Status, body)
	}
}
