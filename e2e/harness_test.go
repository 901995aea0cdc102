package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/gbb-ci/gbb/internal/testbin"
)

// bins holds the gbb-master and gbb-worker binaries built once for all tests.
var bins struct {
	once   sync.Once
	dir    string
	err    error
	master string
	worker string
}

// races collects the race detector's reports of the processes the tests
// start (set up by TestMain).
var races *testbin.Races

// repoRoot is the module's root directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// buildBinaries builds both programs once, as `make build` does (its tags
// and flags), with the race detector when the tests run with it. A test
// calls it before it starts a process: at its end, after the cleanups
// registered later (which stop the processes), the race detector's reports
// fail it.
func buildBinaries(t testing.TB) (master, worker string) {
	t.Helper()
	t.Cleanup(func() { checkRaces(t) })
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "gbb-e2e-bin")
		if bins.err != nil {
			return
		}
		bins.master, bins.worker, bins.err = testbin.Build(repoRoot(t), bins.dir)
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.master, bins.worker
}

// checkRaces fails t with the race detector's reports written since the
// last check: a race in a master or worker process of this test, or of
// one running beside it (each report names its process id).
func checkRaces(t testing.TB) {
	t.Helper()
	for _, r := range races.New() {
		t.Errorf("the race detector found a data race in a gbb process of this test or one beside it: %s", r)
	}
}

func TestMain(m *testing.M) {
	raceDir, err := os.MkdirTemp("", "gbb-e2e-race")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	races = testbin.NewRaces(raceDir)
	if err := races.Setenv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	stopPrometheus() // metrics_test.go's, if a test started it
	pgServerStop()   // twomasters_pg_test.go's, if a test started it
	// Reports no test's cleanup saw (a process outliving its test).
	for _, r := range races.New() {
		fmt.Fprintf(os.Stderr, "the race detector found a data race in a gbb process: %s\n", r)
		code = 1
	}
	os.RemoveAll(raceDir)
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// freePort finds a free TCP port on loopback.
func freePort(t testing.TB) int {
	t.Helper()
	p, err := freePortNoT()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ports are the ports freePortNoT handed out in this process.
var ports struct {
	sync.Mutex
	given map[int]bool
}

// freePortNoT is freePort outside a test. It picks at random below
// Linux's ephemeral range (32768-60999), never twice in this process: a
// port the kernel gave to a listener on :0 and took back is the next
// one it gives to a client socket (a worker dialling its master), and
// may be given to another test's :0 again, before the master that was
// handed it binds it (make test at eea0f22: "port 37451 is also
// protocols.grpc.port", "bind: address already in use").
func freePortNoT() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.given == nil {
		ports.given = map[int]bool{}
	}
	for range 2000 {
		p := 20000 + rand.IntN(12000)
		if ports.given[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		ports.given[p] = true
		return p, nil
	}
	return 0, errors.New("no free port on loopback in 20000-31999")
}

// run runs a command and returns its combined output and error.
func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// mustRun runs a command and fails the test if it fails.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

// loopback starts every test config: both ports on loopback, on the free
// ports of the test's env, and buildbot_url to match.
const loopback = `
buildbot_url = "http://127.0.0.1:{{.WebPort}}/"

[protocols.grpc]
port = {{.WorkerPort}}
interface = "127.0.0.1"

[www]
port = {{.WebPort}}
interface = "127.0.0.1"
`

// workerW1 is the worker most tests run.
const workerW1 = `
[[workers]]
name = "w1"
password = "secret"
`

// env is one test's master and worker.
type env struct {
	t          *testing.T
	master     string // binary
	worker     string // binary
	Dir        string // test's temp dir
	masterDir  string
	masterEnv  []string // NAME=value added to the master's environment
	workerEnv  []string // NAME=value added to the workers' environment (gbb's and buildbot's)
	WebPort    int
	WorkerPort int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	m, w := buildBinaries(t)
	dir := t.TempDir()
	return &env{
		t: t, master: m, worker: w, Dir: dir,
		masterDir:  filepath.Join(dir, "master"),
		WebPort:    freePort(t),
		WorkerPort: freePort(t),
	}
}

// writeConfig runs create-master and writes master.toml from tmpl, a
// text/template that sees the env (WebPort, WorkerPort, Dir).
func (e *env) writeConfig(tmpl string) {
	e.t.Helper()
	e.writeConfigData(tmpl, e)
}

// writeConfigData is writeConfig with the template's data given.
func (e *env) writeConfigData(tmpl string, data any) {
	e.t.Helper()
	mustRun(e.t, e.master, "create-master", e.masterDir)
	var b bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&b, data); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.masterDir, "master.toml"), b.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// startMaster starts the master in the background with `gbb-master start`
// and stops it at cleanup.
func (e *env) startMaster() {
	e.t.Helper()
	cmd := exec.Command(e.master, "start", e.masterDir)
	cmd.Env = append(os.Environ(), e.masterEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("gbb-master start: %v\n%s", err, out)
	}
	e.t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(e.masterDir, "master.pid")); err == nil {
			run(e.t, e.master, "stop", e.masterDir)
		}
	})
}

func (e *env) stopMaster() {
	e.t.Helper()
	mustRun(e.t, e.master, "stop", e.masterDir)
}

// startWorker runs a worker in the foreground (the direct form) until the
// test ends; it returns the process.
func (e *env) startWorker(name, password string) *exec.Cmd {
	e.t.Helper()
	basedir := filepath.Join(e.Dir, "worker-"+name)
	cmd := exec.Command(e.worker, "-master", fmt.Sprintf("127.0.0.1:%d", e.WorkerPort),
		"-name", name, "-password", password, "-basedir", basedir)
	cmd.Env = append(os.Environ(), e.workerEnv...)
	logf, err := os.Create(filepath.Join(e.Dir, "worker-"+name+".stderr"))
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	e.t.Cleanup(func() { stopWorkerProcess(cmd.Process, done) })
	return cmd
}

// stopWorkerProcess stops a worker at the end of a test: a first SIGINT
// lets a running step finish, a second after 2s interrupts it, SIGKILL
// after 20s more; it returns once done is closed.
func stopWorkerProcess(p *os.Process, done <-chan struct{}) {
	for _, wait := range []time.Duration{2 * time.Second, 20 * time.Second} {
		p.Signal(os.Interrupt)
		select {
		case <-done:
			return
		case <-time.After(wait):
		}
	}
	p.Kill()
	<-done
}

func (e *env) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", e.WebPort, path)
}

// get fetches an API path and decodes its JSON into v; it returns the status.
func (e *env) get(path string, v any) int {
	e.t.Helper()
	resp, err := http.Get(e.url(path))
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			e.t.Fatalf("GET %s: decode %q: %v", path, body, err)
		}
	}
	return resp.StatusCode
}

// getText fetches a path and returns its body.
func (e *env) getText(path string) string {
	e.t.Helper()
	resp, err := http.Get(e.url(path))
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body)
}

// force asks the force scheduler for a build of builderid and returns the
// build request id.
func (e *env) force(scheduler string, builderid int64, reason string) int64 {
	e.t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"reason":%q}}`, builderid, reason)
	resp, err := http.Post(e.url("/api/v2/forceschedulers/"+scheduler), "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Result []json.RawMessage `json:"result"`
		Error  any               `json:"error"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 || len(r.Result) != 2 {
		e.t.Fatalf("force: %s: %s", resp.Status, raw)
	}
	var brids map[string]int64
	if err := json.Unmarshal(r.Result[1], &brids); err != nil {
		e.t.Fatal(err)
	}
	return brids[fmt.Sprint(builderid)]
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiBuild is the part of a build the tests read.
type apiBuild struct {
	BuildID        int64  `json:"buildid"`
	BuilderID      int64  `json:"builderid"`
	BuildRequestID int64  `json:"buildrequestid"`
	Number         int64  `json:"number"`
	Complete       bool   `json:"complete"`
	Results        *int   `json:"results"`
	StateString    string `json:"state_string"`
	StartedAt      *int64 `json:"started_at"`
	CompleteAt     *int64 `json:"complete_at"`
	WorkerID       int64  `json:"workerid"`
}

type apiStep struct {
	StepID      int64  `json:"stepid"`
	Number      int    `json:"number"`
	Name        string `json:"name"`
	Complete    bool   `json:"complete"`
	Results     *int   `json:"results"`
	StateString string `json:"state_string"`
}

type apiLog struct {
	LogID    int64  `json:"logid"`
	Name     string `json:"name"`
	Slug     string `json:"slug"`
	Type     string `json:"type"`
	NumLines int64  `json:"num_lines"`
	Complete bool   `json:"complete"`
}

// waitBuild waits for the build of a build request to complete.
func (e *env) waitBuild(brid int64, timeout time.Duration) apiBuild {
	e.t.Helper()
	var b apiBuild
	waitFor(e.t, fmt.Sprintf("build of request %d", brid), timeout, func() bool {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
		for _, x := range r.Builds {
			if x.Complete {
				b = x
				return true
			}
		}
		return false
	})
	return b
}

func (e *env) steps(buildid int64) []apiStep {
	e.t.Helper()
	var r struct{ Steps []apiStep }
	e.get(fmt.Sprintf("/api/v2/builds/%d/steps", buildid), &r)
	return r.Steps
}

// stdio returns the stdio log of a step, as its lines with channel letters.
func (e *env) stdio(stepid int64) string {
	e.t.Helper()
	var r struct {
		Logchunks []struct {
			Content string `json:"content"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/steps/%d/logs/stdio/contents", stepid), &r)
	var b strings.Builder
	for _, c := range r.Logchunks {
		b.WriteString(c.Content)
	}
	return b.String()
}

// channelLines keeps the lines of a stdio log on the given channels.
func channelLines(log, channels string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(log, "\n") {
		if l != "" && strings.ContainsRune(channels, rune(l[0])) {
			b.WriteString(l)
		}
	}
	return b.String()
}

// makeRepo makes a git repository at dir with one commit of files on
// branch master, and returns its path.
func makeRepo(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := []string{"-C", dir, "-c", "user.name=A U Thor", "-c", "user.email=a@example.com"}
	mustRun(t, "git", append(git, "init", "-q", "-b", "master")...)
	mustRun(t, "git", append(git, "add", ".")...)
	mustRun(t, "git", append(git, "commit", "-q", "-m", "first")...)
	return dir
}

// waitPids waits until file lists n process ids (one a line, written by a
// step) and returns them.
func waitPids(t testing.TB, file string, n int) []int {
	t.Helper()
	var pids []int
	waitFor(t, fmt.Sprintf("%d pids in %s", n, file), 30*time.Second, func() bool {
		data, _ := os.ReadFile(file)
		pids = nil
		for _, f := range strings.Fields(string(data)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
		return len(pids) == n
	})
	return pids
}

// waitGone waits up to within until none of pids is a live process; a
// zombie counts as gone (an orphan's init may not reap it at once).
func waitGone(t testing.TB, within time.Duration, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		waitFor(t, fmt.Sprintf("process %d gone", pid), within, func() bool {
			return procStart(pid) == 0
		})
	}
}
