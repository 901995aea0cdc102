package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
)

// promServer is the package's Prometheus (Debian's prometheus), started
// by the first test that needs it and stopped by TestMain: it scrapes
// every second the targets the tests write to its file_sd file.
var promServer struct {
	once    sync.Once
	err     error
	url     string    // http://127.0.0.1:PORT
	targets string    // the file_sd file; tests add their targets to it
	dir     string    // its config, data and output
	cmd     *exec.Cmd // nil until started
	log     *os.File  // its output
	done    chan struct{}
	waitErr error // its exit, once done is closed

	mu   sync.Mutex
	jobs []map[string]any // guarded by mu; the groups of the targets file
}

// prometheus returns the URL of the package's Prometheus, starting it
// the first time.
func prometheus(t *testing.T) string {
	t.Helper()
	bin := testdeb.Need(t, "prometheus", "prometheus")
	promServer.once.Do(func() {
		promServer.err = startPrometheus(bin)
	})
	if promServer.err != nil {
		t.Fatalf("start prometheus: %v", promServer.err)
	}
	return promServer.url
}

func startPrometheus(bin string) error {
	dir, err := os.MkdirTemp("", "gbb-e2e-prometheus")
	if err != nil {
		return err
	}
	promServer.dir = dir
	promServer.targets = filepath.Join(dir, "targets.json")
	if err := os.WriteFile(promServer.targets, []byte("[]"), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: gbb
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
`, promServer.targets)
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	port, err := freePortNoT()
	if err != nil {
		return err
	}
	promServer.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	promServer.log, err = os.Create(filepath.Join(dir, "prometheus.out"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	cmd.Stdout, cmd.Stderr = promServer.log, promServer.log
	if err := cmd.Start(); err != nil {
		return err
	}
	promServer.cmd = cmd
	promServer.done = make(chan struct{})
	go func() {
		promServer.waitErr = cmd.Wait()
		close(promServer.done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(promServer.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-promServer.done:
			out, _ := os.ReadFile(filepath.Join(dir, "prometheus.out"))
			return fmt.Errorf("prometheus exited: %v\n%s", promServer.waitErr, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus not ready on %s after 60s", promServer.url)
		}
	}
}

// stopPrometheus stops the package's Prometheus, if it was started;
// TestMain calls it after the tests.
func stopPrometheus() {
	if promServer.cmd == nil {
		return
	}
	promServer.cmd.Process.Signal(os.Interrupt)
	select {
	case <-promServer.done:
	case <-time.After(30 * time.Second):
		promServer.cmd.Process.Kill()
		<-promServer.done
	}
	promServer.log.Close()
	os.RemoveAll(promServer.dir)
}

// addPromTarget makes Prometheus scrape target (host:port) at path,
// labelled test=name.
func addPromTarget(t *testing.T, name, target, path string) {
	promServer.mu.Lock()
	defer promServer.mu.Unlock()
	promServer.jobs = append(promServer.jobs, map[string]any{
		"targets": []string{target},
		"labels":  map[string]string{"test": name, "__metrics_path__": path},
	})
	data, err := json.Marshal(promServer.jobs)
	if err != nil {
		t.Fatal(err)
	}
	// Written whole, then renamed: Prometheus never reads half a file.
	tmp := promServer.targets + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, promServer.targets); err != nil {
		t.Fatal(err)
	}
}

// promQuery asks Prometheus's HTTP API for the instant value of query;
// ok is false while it has none.
func promQuery(t *testing.T, base, query string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatalf("query prometheus: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %s %v", query, body, err)
	}
	if len(r.Data.Result) != 1 {
		return 0, false
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// TestPrometheusScrapesMaster: a real Prometheus scrapes the master's
// /metrics through the shipped nginx configuration's /buildbot/ prefix;
// after forced builds (some for a worker that never connects, so they
// stay pending) its HTTP API gives the builds counter and the pending
// gauge the values the REST API shows. The master logs JSON
// (log_format = "json"), and every line about a build names its builder,
// build and worker.
func TestPrometheusScrapesMaster(t *testing.T) {
	t.Parallel()
	prom := prometheus(t)
	nginx := testdeb.Need(t, "nginx", "nginx")
	e := newEnv(t)
	e.writeConfig(`log_format = "json"
` + loopback + workerW1 + `
[[workers]]
name = "w2"
password = "secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["runtests", "offline"]

[[builders]]
name = "runtests"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = ["true"]

[[builders]]
name = "offline"
worker_names = ["w2"]
  [[builders.steps]]
  type = "shell"
  command = ["true"]
`)
	port := freePort(t)
	startNginx(t, nginx, e.Dir, port, fmt.Sprintf("127.0.0.1:%d", e.WebPort))
	e.startMaster()
	e.startWorker("w1", "secret")
	// Ready through the proxy once the master runs.
	waitFor(t, "/buildbot/readyz through nginx", 30*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/buildbot/readyz", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// gbb-master status (the rc.d script's status, systemd's
	// ExecStartPost) asks the same.
	if out := mustRun(t, e.master, "status", e.masterDir); !strings.Contains(out, "ready") {
		t.Errorf("gbb-master status: %q", out)
	}
	addPromTarget(t, t.Name(), fmt.Sprintf("127.0.0.1:%d", port), "/buildbot/metrics")

	var builders struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
			Name      string
		} `json:"builders"`
	}
	e.get("/api/v2/builders", &builders)
	ids := map[string]int64{}
	for _, b := range builders.Builders {
		ids[b.Name] = b.BuilderID
	}
	var brids []int64
	for range 3 {
		brids = append(brids, e.force("force", ids["runtests"], "metrics"))
	}
	for range 2 {
		e.force("force", ids["offline"], "metrics")
	}
	for _, brid := range brids {
		e.waitBuild(brid, 60*time.Second)
	}

	// What the REST API shows.
	var builds struct {
		Builds []apiBuild `json:"builds"`
	}
	e.get(fmt.Sprintf("/api/v2/builders/%d/builds?complete=true", ids["runtests"]), &builds)
	successes := 0
	for _, b := range builds.Builds {
		if b.Results != nil && *b.Results == 0 {
			successes++
		}
	}
	var pending struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	e.get("/api/v2/buildrequests?claimed=false&complete=false", &pending)
	if successes != 3 || pending.Meta.Total != 2 {
		t.Fatalf("REST API: %d successful builds, %d pending requests; want 3 and 2", successes, pending.Meta.Total)
	}

	sel := fmt.Sprintf(`test=%q`, t.Name())
	for _, q := range []struct {
		query string
		want  float64
	}{
		{fmt.Sprintf(`gbb_builds_finished_total{%s,builder="runtests",result="success"}`, sel), float64(successes)},
		{fmt.Sprintf(`gbb_buildrequests_pending{%s}`, sel), float64(pending.Meta.Total)},
		{fmt.Sprintf(`gbb_worker_connected{%s,worker="w1"}`, sel), 1},
		{fmt.Sprintf(`gbb_worker_connected{%s,worker="w2"}`, sel), 0},
	} {
		var got float64
		var ok bool
		waitFor(t, fmt.Sprintf("prometheus: %s = %v", q.query, q.want), 60*time.Second, func() bool {
			got, ok = promQuery(t, prom, q.query)
			return ok && got == q.want
		})
	}

	// master.log: JSON lines; each line about a build names builder,
	// build and worker.
	f, err := os.Open(filepath.Join(e.masterDir, "master.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	started := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("master.log line is not JSON: %q", sc.Text())
			continue
		}
		if _, ok := line["build"]; !ok {
			continue
		}
		if line["builder"] == nil || line["worker"] == nil {
			t.Errorf("master.log: a build's line without builder or worker: %s", sc.Text())
		}
		if line["msg"] == "build started" && line["builder"] == "runtests" && line["worker"] == "w1" {
			started++
		}
	}
	if started != 3 {
		t.Errorf("master.log: %d JSON \"build started\" lines of runtests on w1, want 3", started)
	}

	e.stopMaster()
	if out, err := run(t, e.master, "status", e.masterDir); err == nil || !strings.Contains(out, "not running") {
		t.Errorf("gbb-master status of a stopped master: %v %q, want exit 1 and \"not running\"", err, out)
	}
}
