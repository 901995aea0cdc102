package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
)

// The seed's topology on Linux: network namespaces stand in for the jails
// of deploy/freebsd. A bridge on the host (10.1.1.1, as lo1 on the jail
// host) joins the master's namespace (10.1.1.2) and the worker's
// (10.1.1.3) through veth pairs; nginx on the host serves the master under
// /buildbot/ with deploy/freebsd/nginx.conf, only its listen address and
// file paths changed.
const (
	netnsHostAddr   = "10.1.1.1/24"
	netnsMasterAddr = "10.1.1.2"
	netnsWorkerAddr = "10.1.1.3"
	// netnsLock serializes the test across processes on this host: two runs
	// would both put 10.1.1.1 on a bridge.
	netnsLock = "/run/gbb-netns-test.lock"
)

const netnsMasterConfig = `
title = "netns"
buildbot_url = "http://127.0.0.1:{{.Port}}/buildbot/"

[protocols.grpc]
port = 9989
interface = "10.1.1.2"

[www]
port = 8010
interface = "10.1.1.2"

[[workers]]
name = "worker0"
password_file = "worker0.pass"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["runtests"]

[[builders]]
name = "runtests"
worker_names = ["worker0"]

  [[builders.steps]]
  type = "shell"
  name = "where"
  command = ["ip", "-o", "-4", "addr", "show"]
`

// netnsIP runs ip with args and fails the test if it fails.
func netnsIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// netnsLeftovers lists the host's links and namespaces that this test
// names (gbbb-, gbbv*, gbbm-, gbbw-).
func netnsLeftovers() (links, namespaces []string) {
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, "gbbb-") || strings.HasPrefix(name, "gbbv") {
			links = append(links, name)
		}
	}
	out, _ = exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && (strings.HasPrefix(f[0], "gbbm-") || strings.HasPrefix(f[0], "gbbw-")) {
			namespaces = append(namespaces, f[0])
		}
	}
	return links, namespaces
}

// netnsProc starts a process that runs until the test ends (SIGTERM, then
// SIGKILL after 20s), its output in logPath.
func netnsProc(t *testing.T, logPath string, name string, args ...string) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// TestNetnsTopology runs the seed's jails as network namespaces: the
// master in one, the worker in another, nginx on the host in front, and a
// build forced and followed through nginx under /buildbot/.
func TestNetnsTopology(t *testing.T) {
	ns := netnsJails(t)
	nginx := testdeb.Need(t, "nginx", "nginx")
	master, worker := buildBinaries(t)
	mns, wns := ns.master, ns.worker

	dir := t.TempDir()
	port := freePort(t)
	// The master, in its namespace, listening on 10.1.1.2 only.
	mdir := filepath.Join(dir, "master")
	mustRun(t, master, "create-master", mdir)
	cfg := strings.ReplaceAll(netnsMasterConfig, "{{.Port}}", fmt.Sprint(port))
	if err := os.WriteFile(filepath.Join(mdir, "master.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mdir, "worker0.pass"), []byte("s3cret-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, master, "checkconfig", mdir)
	netnsProc(t, filepath.Join(dir, "master.out"), "ip", "netns", "exec", mns, master, "start", "--nodaemon", mdir)

	// The worker, in its namespace, dialing the master's address.
	netnsProc(t, filepath.Join(dir, "worker.out"), "ip", "netns", "exec", wns, worker,
		"-master", netnsMasterAddr+":9989", "-name", "worker0", "-password", "s3cret-pass",
		"-basedir", filepath.Join(dir, "worker"))

	// nginx on the host, with deploy/freebsd/nginx.conf.
	startNginx(t, nginx, dir, port, "")

	dump := func() {
		for _, f := range []string{"master.out", "worker.out", "nginx.out", "nginx/error.log"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			t.Logf("--- %s:\n%s", f, b)
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/buildbot", port)
	get := func(path string, v any) int {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if v != nil && resp.StatusCode == 200 {
			if err := json.Unmarshal(body, v); err != nil {
				t.Errorf("GET %s: %v: %s", path, err, body)
			}
		}
		return resp.StatusCode
	}

	// The master is up behind nginx, and the worker connected to it.
	var builders struct {
		Builders []struct {
			BuilderID int64  `json:"builderid"`
			Name      string `json:"name"`
		}
	}
	waitFor(t, "the master through nginx", 30*time.Second, func() bool { return get("/api/v2/builders", &builders) == 200 })
	if len(builders.Builders) != 1 || builders.Builders[0].Name != "runtests" {
		dump()
		t.Fatalf("builders through nginx: %+v", builders.Builders)
	}
	waitFor(t, "worker0 connected", 30*time.Second, func() bool {
		var w struct {
			Workers []struct {
				Name        string            `json:"name"`
				ConnectedTo []json.RawMessage `json:"connected_to"`
			}
		}
		get("/api/v2/workers", &w)
		return len(w.Workers) == 1 && len(w.Workers[0].ConnectedTo) > 0
	})

	// Follow the builds live through nginx, over /buildbot/sse/ and
	// /buildbot/ws, as the seed's nginx.conf passes them.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sse, _ := listenSSE(ctx, t, base+"/sse/listen/builds/*/*")
	ws := consumeWS(ctx, t, "ws"+strings.TrimPrefix(base, "http")+"/ws", "builds/*/*")

	// Force a build through nginx, and wait for it through nginx.
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"reason":"netns"}}`, builders.Builders[0].BuilderID)
	resp, err := http.Post(base+"/api/v2/forceschedulers/force", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"result"`) {
		dump()
		t.Fatalf("force through nginx: %s: %s", resp.Status, raw)
	}
	var build apiBuild
	waitFor(t, "the forced build through nginx", 60*time.Second, func() bool {
		var r struct{ Builds []apiBuild }
		get("/api/v2/builds", &r)
		for _, b := range r.Builds {
			if b.Complete {
				build = b
				return true
			}
		}
		return false
	})
	if build.Results == nil || *build.Results != 0 {
		dump()
		t.Fatalf("build %d: results %v (%s), want SUCCESS", build.BuildID, build.Results, build.StateString)
	}
	for name, ch := range map[string]<-chan liveEvent{"sse": sse, "ws": ws} {
		m := waitEvent(ctx, t, name+" through nginx", ch, fmt.Sprintf("builds/%d/finished", build.BuildID))
		if m["results"] != 0.0 {
			t.Errorf("%s through nginx: finished build %v", name, m)
		}
	}

	// Its log, through nginx: the step ran in the worker's namespace.
	var steps struct{ Steps []apiStep }
	get(fmt.Sprintf("/api/v2/builds/%d/steps", build.BuildID), &steps)
	var log strings.Builder
	for _, s := range steps.Steps {
		var r struct {
			Logchunks []struct {
				Content string `json:"content"`
			}
		}
		get(fmt.Sprintf("/api/v2/steps/%d/logs/stdio/contents", s.StepID), &r)
		for _, c := range r.Logchunks {
			log.WriteString(c.Content)
		}
	}
	if !strings.Contains(log.String(), "inet "+netnsWorkerAddr+"/24") || strings.Contains(log.String(), "inet "+netnsMasterAddr+"/") {
		dump()
		t.Fatalf("the step's log does not show the worker's namespace (%s only):\n%s", netnsWorkerAddr, log.String())
	}
	t.Logf("build %d ran on worker0 in %s; its log through nginx:\n%s", build.BuildID, wns, log.String())
	// nginx strips the prefix: the master saw /api/v2/..., and /buildbot
	// alone redirects to /buildbot/.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noRedirect.Get(base); err != nil || resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") == "" {
		t.Errorf("GET /buildbot: %v %v, want a redirect to /buildbot/", resp, err)
	} else {
		resp.Body.Close()
	}
}

// netnsPair is the jail topology in network namespaces: a bridge on the
// host (netnsHostAddr), the master's namespace (netnsMasterAddr) and the
// worker's (netnsWorkerAddr), each joined to the bridge by a veth link.
type netnsPair struct {
	master, worker string // the namespaces' names
	workerVeth     string // the host's end of the worker's link
}

// netnsJails takes the host-wide netns lock (held until the test ends),
// removes what a killed run left, and builds a netnsPair, removed when the
// test ends. It needs root and ip(8) (installed when missing).
func netnsJails(t *testing.T) netnsPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("%s needs root (network namespaces); make test runs as root in CI", t.Name())
	}
	testdeb.Need(t, "ip", "iproute2")
	lock, err := os.OpenFile(netnsLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", netnsLock, err)
	}
	// With the lock held, any gbb bridge or namespace is a killed run's.
	links, namespaces := netnsLeftovers()
	for _, l := range links {
		exec.Command("ip", "link", "del", l).Run()
	}
	for _, n := range namespaces {
		exec.Command("ip", "netns", "del", n).Run()
	}

	var rb [3]byte
	rand.Read(rb[:])
	id := hex.EncodeToString(rb[:])
	br, mveth := "gbbb-"+id, "gbbvm-"+id
	p := netnsPair{master: "gbbm-" + id, worker: "gbbw-" + id, workerVeth: "gbbvw-" + id}
	// Cleanups run last-in first-out: the processes in the namespaces stop
	// before the namespaces and links go.
	t.Cleanup(func() {
		for _, args := range [][]string{{"netns", "del", p.master}, {"netns", "del", p.worker}, {"link", "del", mveth}, {"link", "del", p.workerVeth}, {"link", "del", br}} {
			exec.Command("ip", args...).Run()
		}
		if l, n := netnsLeftovers(); len(l)+len(n) > 0 {
			t.Errorf("left behind: links %v, namespaces %v", l, n)
		}
	})
	netnsIP(t, "link", "add", br, "type", "bridge")
	netnsIP(t, "addr", "add", netnsHostAddr, "dev", br)
	netnsIP(t, "link", "set", br, "up")
	for _, ns := range []struct{ name, veth, addr string }{
		{p.master, mveth, netnsMasterAddr},
		{p.worker, p.workerVeth, netnsWorkerAddr},
	} {
		netnsIP(t, "netns", "add", ns.name)
		netnsIP(t, "link", "add", ns.veth, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
		netnsIP(t, "link", "set", ns.veth, "master", br)
		netnsIP(t, "link", "set", ns.veth, "up")
		netnsIP(t, "-n", ns.name, "addr", "add", ns.addr+"/24", "dev", "eth0")
		netnsIP(t, "-n", ns.name, "link", "set", "eth0", "up")
		netnsIP(t, "-n", ns.name, "link", "set", "lo", "up")
	}
	return p
}
