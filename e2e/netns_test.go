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
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
tls = "auto"

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

// seedNginxConf is the seed's nginx recipe for buildbot, its three
// location blocks as buildbot documents them (no Host header set, so the
// master sees Host 10.1.1.2:8010), in a minimal nginx.conf.
const seedNginxConf = `worker_processes 1;
events {
    worker_connections 1024;
}
http {
    server {
        listen 80;

        location /buildbot/ {
            proxy_pass http://10.1.1.2:8010/;
        }
        location /buildbot/sse/ {
            # proxy buffering will prevent sse to work
            proxy_buffering off;
            proxy_pass http://10.1.1.2:8010/sse/;
        }
        # required for websocket
        location /buildbot/ws {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_pass http://10.1.1.2:8010/ws;
            # raise the proxy timeout for the websocket
            proxy_read_timeout 6000s;
        }
    }
}
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
// build forced and followed through nginx under /buildbot/. Then Chromium
// forces builds from gbb's own page (its form, and a JSON-RPC call of the
// page) and follows them over /ws, twice: through
// deploy/freebsd/nginx.conf, and through the seed's recipe (seedNginxConf)
// on a port that is not buildbot_url's, as the seed's Vagrant forwards
// 8999 to 80.
func TestNetnsTopology(t *testing.T) {
	ns := netnsJails(t)
	nginx := testdeb.Need(t, "nginx", "nginx")
	master, worker := buildBinaries(t)
	mns, wns := ns.master, ns.worker

	dir := t.TempDir()
	port := freePort(t)
	// The master, in its namespace, listening on 10.1.1.2 only.
	mdir := filepath.Join(dir, "master")
	// The worker port over TLS (tls = "auto"): the worker pins the CA
	// whose fingerprint create-master printed; the certificate the master
	// serves names its interface, 10.1.1.2, which the worker dials.
	created := mustRun(t, master, "create-master", mdir)
	fingerprint := regexp.MustCompile(`-tls-fingerprint (sha256:[0-9a-f]{64}) `).FindStringSubmatch(created)
	if fingerprint == nil {
		t.Fatalf("create-master printed no fingerprint:\n%s", created)
	}
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
		"-basedir", filepath.Join(dir, "worker"), "-tls-fingerprint", fingerprint[1])

	// nginx on the host, with deploy/freebsd/nginx.conf; a second one with
	// the seed's recipe.
	ntls := startNginx(t, nginx, dir, port, "")
	seedPort := freePort(t)
	startNginxConf(t, nginx, dir, "seed-nginx", seedPort, seedNginxConf)

	dump := func() {
		for _, f := range []string{"master.out", "master/master.log", "worker.out", "nginx.out", "nginx/error.log", "nginx/access.log", "seed-nginx.out", "seed-nginx/error.log", "seed-nginx/access.log"} {
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
	// Over TLS, from 10.1.1.3: no warning of a plaintext link.
	if mlog, _ := os.ReadFile(filepath.Join(mdir, "master.log")); !strings.Contains(string(mlog), "worker attached") ||
		!strings.Contains(string(mlog), "tls=true") || strings.Contains(string(mlog), "without TLS") {
		dump()
		t.Errorf("master.log does not show worker0 attached over TLS")
	}

	// Follow the builds live through nginx, over /buildbot/sse/ and
	// /buildbot/ws, as the seed's nginx.conf passes them.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sse, _ := listenSSE(ctx, t, base+"/sse/listen/builds/*/*")
	ws := consumeWS(ctx, t, "ws"+strings.TrimPrefix(base, "http")+"/ws", "builds/*/*")

	// Force a build through nginx's TLS server (HTTP/2), and wait for it
	// through nginx.
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"reason":"netns"}}`, builders.Builders[0].BuilderID)
	resp, err := ntls.Client(t).Post(fmt.Sprintf("https://127.0.0.1:%d/buildbot/api/v2/forceschedulers/force", ntls.Port), "application/json", strings.NewReader(body))
	if err == nil && (resp.ProtoMajor != 2 || resp.Header.Get("Strict-Transport-Security") == "") {
		t.Errorf("force through nginx's TLS server: %s, HSTS %q: want HTTP/2 with HSTS", resp.Proto, resp.Header.Get("Strict-Transport-Security"))
	}
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
	// alone, or the site's root, redirects to /buildbot/ on the host and
	// port the browser used (a relative Location).
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, r := range []struct {
		path string
		code int
	}{{"/buildbot", http.StatusMovedPermanently}, {"/", http.StatusFound}} {
		resp, err := noRedirect.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, r.path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.code || resp.Header.Get("Location") != "/buildbot/" {
			t.Errorf("GET %s: %s Location %q, want %d to /buildbot/", r.path, resp.Status, resp.Header.Get("Location"), r.code)
		}
	}

	browser := newBrowser(t)
	builderID := builders.Builders[0].BuilderID
	for _, p := range []struct{ name, base string }{
		{"deploy/freebsd/nginx.conf", base},
		{"the seed's recipe on another port than buildbot_url's", fmt.Sprintf("http://127.0.0.1:%d/buildbot", seedPort)},
	} {
		t.Run(p.name, func(t *testing.T) {
			defer func() {
				if t.Failed() {
					dump()
				}
			}()
			netnsBrowserForce(t, browser, p.base, builderID)
		})
	}
}

// netnsWatchJS opens the page's WebSocket (the site's /ws beside the
// page, with the page's CSRF token: behind the seed's recipe the master
// cannot tell the page's origin from the request) and consumes the builds'
// events into window.gbbWS.
const netnsWatchJS = `(() => {
  const st = window.gbbWS = {ready: false, closed: "", events: []};
  const meta = document.querySelector('meta[name="csrf-token"]');
  const query = meta ? "?csrf_token=" + encodeURIComponent(meta.content) : "";
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + location.pathname.replace(/[^/]*$/, "") + "ws" + query);
  ws.onopen = () => ws.send(JSON.stringify({cmd: "startConsuming", path: "builds/*/*", _id: 1}));
  ws.onmessage = (m) => {
    const d = JSON.parse(m.data);
    if (d._id === 1) { st.ready = d.code === 200; if (!st.ready) st.closed = m.data; }
    else if (d.k) st.events.push(d);
  };
  ws.onclose = (e) => { st.closed = "closed " + e.code + " " + e.reason; };
  return true;
})()`

// netnsBrowserForce has Chromium watch the builds over the page's /ws in
// one tab while it forces two builds in another, from the builder's page
// at base: with its force form, and with a JSON-RPC call the page makes;
// both must finish, SUCCESS, as /ws tells the first tab.
func netnsBrowserForce(t *testing.T, browser context.Context, base string, builderID int64) {
	// Each tab is opened with its own context, which it lives as long as:
	// not browse's, which ends with each step.
	watch, cancelWatch := chromedp.NewContext(browser)
	defer cancelWatch()
	tab, cancelTab := chromedp.NewContext(browser)
	defer cancelTab()
	for _, ctx := range []context.Context{watch, tab} {
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("open a tab: %v", err)
		}
	}
	var ready bool
	var closed string
	// The grid page: it follows one path over /sse/, which leaves the
	// other tab's page and its JSON-RPC call enough of HTTP/1.1's six
	// connections per host.
	browse(t, watch, "open /ws from the grid page",
		chromedp.Navigate(base+"/grid"),
		chromedp.WaitVisible(chromedp.CSS("main")),
		into(new(bool), chromedp.Evaluate[bool](netnsWatchJS)),
		into(new(bool), chromedp.Poll[bool](`window.gbbWS.ready || window.gbbWS.closed !== ""`, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))),
		into(&ready, chromedp.Evaluate[bool](`window.gbbWS.ready`)),
		into(&closed, chromedp.Evaluate[string](`window.gbbWS.closed`)),
	)
	if !ready {
		t.Fatalf("the page's WebSocket through %s: %s", base, closed)
	}

	builderPage := fmt.Sprintf("%s/builders/%d", base, builderID)
	var loc, errMsg string
	var status string
	browse(t, tab, "force with the builder page's form",
		chromedp.Navigate(builderPage),
		chromedp.WaitVisible(chromedp.CSS("#force-force")),
		chromedp.SetValue(chromedp.CSS(`#force-force input[name="reason"]`), "the form through "+base),
		loaded(chromedp.Submit(chromedp.CSS("#force-force"))),
		chromedp.WaitVisible(chromedp.CSS("main")),
		into(&loc, chromedp.Location()),
		into(&errMsg, chromedp.Evaluate[string](`(document.getElementById("error-message") || {}).textContent || ""`)),
	)
	if loc != builderPage || errMsg != "" {
		t.Fatalf("the force form led to %s (%q), want %s", loc, errMsg, builderPage)
	}
	call := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"reason":"the page's JSON-RPC"}}`, builderID)
	browse(t, tab, "force with the page's JSON-RPC call",
		into(&status, chromedp.Evaluate[string](`fetch("../api/v2/forceschedulers/force", {method: "POST", headers: {"Content-Type": "application/json"}, body: `+"`"+call+"`"+`}).then(r => r.text().then(b => r.status + " " + b))`, chromedp.EvalAwaitPromise)),
	)
	if !strings.HasPrefix(status, "200 ") {
		t.Fatalf("the page's JSON-RPC force: %s", status)
	}

	var finished []map[string]any
	browse(t, watch, "follow both builds over /ws",
		into(new(bool), chromedp.Poll[bool](`window.gbbWS.events.filter(e => /^builds\/\d+\/finished$/.test(e.k)).length >= 2 || window.gbbWS.closed !== ""`, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second))),
		into(&finished, chromedp.Evaluate[[]map[string]any](`window.gbbWS.events.filter(e => /^builds\/\d+\/finished$/.test(e.k)).map(e => e.m)`)),
		into(&closed, chromedp.Evaluate[string](`window.gbbWS.closed`)),
	)
	if len(finished) < 2 {
		t.Fatalf("/ws closed (%s) after %d finished builds", closed, len(finished))
	}
	for _, m := range finished {
		if m["results"] != 0.0 {
			t.Errorf("build %v finished with results %v, want SUCCESS", m["buildid"], m["results"])
		}
	}
	t.Logf("through %s: Chromium forced builds %v and %v, and followed them over /ws", base, finished[0]["buildid"], finished[1]["buildid"])
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
	netnsLockClean(t)

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

// netnsLockClean takes the host-wide netns lock (held until the test
// ends) and removes what a killed run left. It needs root and ip(8)
// (installed when missing).
func netnsLockClean(t *testing.T) {
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
}

// netnsAlias makes a namespace laid out as the FreeBSD jail host's lo1: a
// loopback interface with the host's 10.1.1.1/24 and the master jail's
// 10.1.1.2 as a /32 alias. It is removed when the test ends.
func netnsAlias(t *testing.T) string {
	t.Helper()
	netnsLockClean(t)
	var rb [3]byte
	rand.Read(rb[:])
	ns := "gbbm-" + hex.EncodeToString(rb[:]) // netnsLeftovers knows gbbm-
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", ns).Run()
		if l, n := netnsLeftovers(); len(l)+len(n) > 0 {
			t.Errorf("left behind: links %v, namespaces %v", l, n)
		}
	})
	netnsIP(t, "netns", "add", ns)
	// The namespace's own loopback stands in for lo1 (a second loopback
	// needs the dummy module, which not every kernel has).
	netnsIP(t, "-n", ns, "addr", "add", netnsHostAddr, "dev", "lo")
	netnsIP(t, "-n", ns, "addr", "add", netnsMasterAddr+"/32", "dev", "lo")
	netnsIP(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

const netnsAliasConfig = `
buildbot_url = "http://127.0.0.1:8080/buildbot/"

[protocols.grpc]
port = 9989
interface = "10.1.1.2"
tls = "auto"

[www]
port = 8010
interface = "10.1.1.2"
trusted_proxies = ["10.1.1.1"]

[www.auth]
type = "users"
[[www.auth.users]]
username = "admin"
password_hash = "{{.Hash}}"
groups = ["admins"]
`

// TestNetnsProxyAlias runs deploy/freebsd/nginx.conf and the master as on
// the jail host, in one namespace whose lo1 has the host's 10.1.1.1/24 and
// the master jail's 10.1.1.2/32, with trusted_proxies = ["10.1.1.1"]. A
// guesser (from 127.0.0.1) sends wrong passwords through /buildbot/sse/,
// each with a forged X-Forwarded-For, and is braked (429): every location
// sets X-Forwarded-For. Then another client (127.0.0.2) logs in through
// /buildbot/api/ and gets 200: nginx connects from 10.1.1.1 (proxy_bind),
// not from the alias 10.1.1.2 a connection to the alias takes by default,
// so the master tells the clients apart.
func TestNetnsProxyAlias(t *testing.T) {
	ns := netnsAlias(t)
	nginx := testdeb.Need(t, "nginx", "nginx")
	curl := testdeb.Need(t, "curl", "curl")
	master, _ := buildBinaries(t)
	dir := t.TempDir()

	hashCmd := exec.Command(master, "hashpw", "-cost", "4")
	hashCmd.Stdin = strings.NewReader("right-pw\n")
	hash, err := hashCmd.Output()
	if err != nil {
		t.Fatalf("gbb-master hashpw: %v", err)
	}
	mdir := filepath.Join(dir, "master")
	mustRun(t, master, "create-master", mdir)
	cfg := strings.ReplaceAll(netnsAliasConfig, "{{.Hash}}", strings.TrimSpace(string(hash)))
	if err := os.WriteFile(filepath.Join(mdir, "master.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, master, "checkconfig", mdir)
	netnsProc(t, filepath.Join(dir, "master.out"), "ip", "netns", "exec", ns, master, "start", "--nodaemon", mdir)
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/freebsd/nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	startNginxConfIn(t, ns, nginx, dir, "nginx", 8080, string(src))
	dump := func() {
		for _, f := range []string{"master.out", "master/master.log", "nginx/error.log", "nginx/access.log"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			t.Logf("--- %s:\n%s", f, b)
		}
	}

	// get runs curl in the namespace from the address from, and returns
	// the HTTP status (0 when curl failed).
	get := func(from, path string, args ...string) int {
		a := append([]string{"netns", "exec", ns, curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--interface", from}, args...)
		out, _ := exec.Command("ip", append(a, "http://127.0.0.1:8080/buildbot"+path)...).Output()
		var code int
		fmt.Sscan(string(out), &code)
		return code
	}
	waitFor(t, "the master through nginx", 30*time.Second, func() bool { return get("127.0.0.2", "/api/v2/builders") == 200 })

	braked := false
	for i := range 30 {
		code := get("127.0.0.1", "/sse/listen/builds", "-u", "admin:wrong", "-H", fmt.Sprintf("X-Forwarded-For: 192.0.2.%d", i+1))
		if code == http.StatusTooManyRequests {
			braked = true
			t.Logf("the guesser is braked after %d wrong passwords", i)
			break
		}
		if code != http.StatusUnauthorized {
			dump()
			t.Fatalf("wrong password %d through /buildbot/sse/: %d, want 401 or 429", i+1, code)
		}
	}
	if !braked {
		dump()
		t.Fatal("30 wrong passwords through /buildbot/sse/, each with a forged X-Forwarded-For, and no 429: each forged address had its own budget")
	}
	if code := get("127.0.0.2", "/api/v2/builders", "-u", "admin:right-pw"); code != http.StatusOK {
		dump()
		t.Fatalf("another client's login while the guesser is braked: %d, want 200 (the master sees everyone behind nginx as one address)", code)
	}
}
