package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/web"
)

// The browser tests drive Debian's Chromium with chromedp against real
// gbb-master and gbb-worker processes: the pages, their forms without
// JavaScript, and the live updates of web/ui/static/live.js. One Chromium
// serves every subtest. Screenshots of the main pages are written under
// $GBB_SCREENSHOTS, or under the test's temp dir, and the test logs where.

// authUsers are the users of the auth tests: admin (group admins) and
// viewer, with the templates' AdminHash and ViewerHash.
const authUsers = `
[www.auth]
type = "users"

[[www.auth.users]]
username = "admin"
password_hash = "{{.AdminHash}}"
groups = ["admins"]

[[www.auth.users]]
username = "viewer"
password_hash = "{{.ViewerHash}}"
`

const browserConfig = `title = "Browser CI"
` + loopback + workerW1 + authUsers + `
[[www.authz.rules]]
actions = ["*"]
roles = ["admins"]

[[schedulers]]
type = "force"
name = "force"
builder_names = ["slow", "quick"]

[[builders]]
name = "slow"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "count"
  command = "i=1; while [ $i -le 600 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done"

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "hello"
  command = "printf '\\033[32mgreen\\033[0m and plain\\n\\033[38;5;196mred256\\033[0m \\033[48;2;0;0;250mblue-rgb\\033[0m\\n'; echo done"
`

// chromiumPath finds Debian's Chromium; the tests fail without it (.ci/run
// installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("GBB_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium at /usr/bin/chromium (apt-get install -y chromium, or set GBB_CHROMIUM): the browser tests need it")
	return ""
}

// newBrowser starts one headless Chromium for the test and returns a tab's
// context; extra are more options (flags).
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// hashpw runs `gbb-master hashpw` with the password on stdin.
func (e *env) hashpw(password string) string {
	e.t.Helper()
	cmd := exec.Command(e.master, "hashpw", "-cost", "4")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("gbb-master hashpw: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// getAs fetches an API path with basic auth and decodes its JSON into v.
func (e *env) getAs(user, password, path string, v any) {
	e.t.Helper()
	if status, body := e.tryGetAs(user, password, path, v); status != 200 {
		e.t.Fatalf("GET %s: %d: %s", path, status, body)
	}
}

// tryGetAs is getAs for what may not be there yet: it returns the status
// and the body instead of failing on a status other than 200.
func (e *env) tryGetAs(user, password, path string, v any) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url(path), nil)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, string(body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		e.t.Fatalf("GET %s: decode %q: %v", path, body, err)
	}
	return resp.StatusCode, string(body)
}

// forceAs forces a build of builder through the force scheduler "force"
// as user (basic auth) and returns the status and the reply.
func (e *env) forceAs(user, password, builder, reason string) (int, string) {
	e.t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":[%q],"reason":%q}}`, builder, reason)
	req, _ := http.NewRequest("POST", e.url("/api/v2/forceschedulers/force"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("force as %s: %v", user, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(reply)
}

// browse runs browser actions with a timeout, failing the test on error
// with the page it was on.
func browse(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(qctx, chromedp.Location())
		body, _ := chromedp.Run(qctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, body)
	}
}

// loaded runs a, which makes the page navigate, and waits for the new
// page's load event.
func loaded(a chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.WaitEvent(page.LoadEventFired, nil, a)(ctx, t)
		return err
	})
}

// into is an action that runs a and stores its value in dst.
func into[T any](dst *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		v, err := a(ctx, t)
		*dst = v
		return err
	})
}

func TestBrowser(t *testing.T) { runBrowser(t, false) }

// TestBrowserBehindNginx runs the same flows through Debian's nginx with
// deploy/freebsd/nginx.conf: the site under /buildbot/ with the prefix
// stripped, live updates over /buildbot/sse/ included.
func TestBrowserBehindNginx(t *testing.T) { runBrowser(t, true) }

func runBrowser(t *testing.T, behindNginx bool) {
	e := newEnv(t)
	e.writeConfigData(browserConfig, struct {
		*env
		AdminHash, ViewerHash string
	}{e, e.hashpw("admin-pw"), e.hashpw("viewer-pw")})
	base := e.url("/")
	var nginxTLSSrv nginxTLS
	if behindNginx {
		port := freePort(t)
		public := fmt.Sprintf("http://127.0.0.1:%d/buildbot/", port)
		cfg := filepath.Join(e.masterDir, "master.toml")
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		old := fmt.Sprintf("buildbot_url = %q", base)
		if !strings.Contains(string(data), old) {
			t.Fatalf("the browser config has no %s", old)
		}
		data = []byte(strings.Replace(string(data), old, fmt.Sprintf("buildbot_url = %q", public), 1))
		if err := os.WriteFile(cfg, data, 0o644); err != nil {
			t.Fatal(err)
		}
		nginxTLSSrv = startNginx(t, testdeb.Need(t, "nginx", "nginx"), e.Dir, port, fmt.Sprintf("127.0.0.1:%d", e.WebPort))
		base = public
	}
	e.startMaster()
	e.startWorker("w1", "secret")
	waitFor(t, "w1 connected", 30*time.Second, func() bool {
		var r struct {
			Workers []struct {
				ConnectedTo []any `json:"connected_to"`
			} `json:"workers"`
		}
		e.getAs("admin", "admin-pw", "/api/v2/workers/w1", &r)
		return len(r.Workers) == 1 && len(r.Workers[0].ConnectedTo) > 0
	})
	ctx := newBrowser(t)
	csp := watchCSP(t, ctx)
	if behindNginx {
		// The TLS server of nginx.conf: HTTP/2, HSTS, and the master's CSP
		// passed on.
		resp, err := nginxTLSSrv.Client(t).Get(fmt.Sprintf("https://127.0.0.1:%d/buildbot/builders", nginxTLSSrv.Port))
		if err != nil {
			t.Fatalf("nginx over TLS: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("Strict-Transport-Security") == "" || resp.Header.Get("Content-Security-Policy") != web.ContentSecurityPolicy {
			t.Errorf("nginx over TLS: %s %s, headers %v: want 200 over HTTP/2 with HSTS and the master's CSP", resp.Proto, resp.Status, resp.Header)
		}
	}

	login := func(t *testing.T, user, password string) {
		t.Helper()
		browse(t, ctx, "log in as "+user,
			chromedp.Navigate(base+"login"),
			chromedp.WaitVisible(chromedp.CSS("#login-form")),
			chromedp.SendKeys(chromedp.CSS(`#login-form input[name="username"]`), user),
			chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), password),
			loaded(chromedp.Submit(chromedp.CSS("#login-form"))),
			chromedp.WaitVisible(chromedp.CSS("#auth-user")),
		)
	}
	logout := func(t *testing.T) {
		t.Helper()
		browse(t, ctx, "log out",
			loaded(chromedp.Click(chromedp.CSS("#logout"))),
			chromedp.WaitVisible(chromedp.CSS("#login")),
		)
	}

	t.Run("builders page", func(t *testing.T) {
		var table, auth string
		browse(t, ctx, "open the builders page",
			chromedp.Navigate(base+"builders"),
			chromedp.WaitVisible(chromedp.CSS("#builders-table")),
			into(&table, chromedp.Text(chromedp.CSS("#builders-table"))),
			into(&auth, chromedp.Text(chromedp.CSS("header .auth"))),
		)
		if !strings.Contains(table, "slow") || !strings.Contains(table, "quick") || !strings.Contains(table, "w1") {
			t.Errorf("builders table: %q", table)
		}
		if strings.TrimSpace(auth) != "log in" {
			t.Errorf("header of an anonymous visitor: %q, want a login link", auth)
		}
	})

	t.Run("log in and out", func(t *testing.T) {
		login(t, "admin", "admin-pw")
		var user string
		browse(t, ctx, "read the user name", into(&user, chromedp.Text(chromedp.CSS("#auth-user"))))
		if user != "admin" {
			t.Errorf("header names %q, want admin", user)
		}
		logout(t)
		var bad string
		browse(t, ctx, "log in with a wrong password",
			chromedp.Navigate(base+"login"),
			chromedp.SendKeys(chromedp.CSS(`#login-form input[name="username"]`), "admin"),
			chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), "nope"),
			loaded(chromedp.Submit(chromedp.CSS("#login-form"))),
			chromedp.WaitVisible(chromedp.CSS("#login-error")),
			into(&bad, chromedp.Text(chromedp.CSS("#login-error"))),
		)
		if !strings.Contains(bad, "Wrong user name or password") {
			t.Errorf("wrong password: %q", bad)
		}
	})

	t.Run("no force form without the role", func(t *testing.T) {
		login(t, "viewer", "viewer-pw")
		defer logout(t)
		forms := -1
		browse(t, ctx, "builder page as viewer",
			chromedp.Navigate(base+"builders/quick"),
			chromedp.WaitVisible(chromedp.CSS("h1")),
			into(&forms, chromedp.Evaluate[int](`document.querySelectorAll("form.force").length`)),
		)
		if forms != 0 {
			t.Errorf("the viewer's builder page shows %d force forms", forms)
		}
		// The server refuses the force all the same.
		if code, msg := e.forceAs("viewer", "viewer-pw", "quick", "not allowed"); code != 403 || !strings.Contains(msg, "viewer may not force on builder quick") {
			t.Errorf("force as viewer: %d %s", code, msg)
		}
		var r struct {
			Buildrequests []any `json:"buildrequests"`
		}
		e.getAs("admin", "admin-pw", "/api/v2/buildrequests", &r)
		if len(r.Buildrequests) != 0 {
			t.Errorf("a refused force made %d build requests", len(r.Buildrequests))
		}
	})

	var slowBuild apiBuild
	t.Run("force through the form", func(t *testing.T) {
		login(t, "admin", "admin-pw")
		browse(t, ctx, "force slow",
			chromedp.Navigate(base+"builders/slow"),
			chromedp.WaitVisible(chromedp.CSS("#force-force")),
			chromedp.SetValue(chromedp.CSS(`#force-force input[name="reason"]`), "from the browser"),
			loaded(chromedp.Submit(chromedp.CSS("#force-force"))),
			// Back on the builder's page, whose build list shows the new
			// build without a reload: live.js catches up when it first
			// connects, and follows the build's events.
			chromedp.WaitVisible(chromedp.CSS("#builds #build-1")),
		)
		waitFor(t, "the forced build", 30*time.Second, func() bool {
			var r struct{ Builds []apiBuild }
			e.getAs("admin", "admin-pw", "/api/v2/builders/slow/builds", &r)
			if len(r.Builds) == 1 {
				slowBuild = r.Builds[0]
			}
			return len(r.Builds) == 1
		})
		var props struct {
			Properties []map[string][]any `json:"properties"`
		}
		e.getAs("admin", "admin-pw", fmt.Sprintf("/api/v2/builds/%d/properties", slowBuild.BuildID), &props)
		if len(props.Properties) != 1 || len(props.Properties[0]["owner"]) == 0 || props.Properties[0]["owner"][0] != "admin" {
			t.Errorf("owner of the forced build: %v", props.Properties)
		}
	})
	if slowBuild.BuildID == 0 {
		t.Fatal("no build to follow")
	}
	buildPage := fmt.Sprintf("%sbuilders/%d/builds/%d", base, slowBuild.BuilderID, slowBuild.Number)
	logPage := buildPage + "/steps/1/logs/stdio"

	t.Run("log lines appear without reloading", func(t *testing.T) {
		waitFor(t, "the first lines of the log", 30*time.Second, func() bool {
			var r struct {
				Logs []struct {
					NumLines int `json:"num_lines"`
				} `json:"logs"`
			}
			// The step and its log may not be there yet: 404 until they are.
			status, _ := e.tryGetAs("admin", "admin-pw", fmt.Sprintf("/api/v2/builds/%d/steps/1/logs/stdio", slowBuild.BuildID), &r)
			return status == 200 && len(r.Logs) == 1 && r.Logs[0].NumLines >= 3
		})
		var before, after int
		var marker bool
		browse(t, ctx, "open the log",
			chromedp.Navigate(logPage),
			chromedp.WaitVisible(chromedp.CSS("#log .log-line")),
			into(&before, chromedp.Evaluate[int](`window.gbbNoReload = true; window.gbbBefore = document.querySelectorAll("#log .log-line").length`)),
			// The threshold is read in the page: before is only known once
			// the action above has run.
			into(new(bool), chromedp.Poll[bool](`document.querySelectorAll("#log .log-line").length >= window.gbbBefore + 20`, chromedp.WithPollingTimeout(30*time.Second))),
			into(&after, chromedp.Evaluate[int](`document.querySelectorAll("#log .log-line").length`)),
			into(&marker, chromedp.Evaluate[bool](`window.gbbNoReload === true`)),
		)
		if !marker {
			t.Error("the page reloaded")
		}
		// The log starts with the step's command; its last line is the
		// newest line of output.
		var last string
		browse(t, ctx, "read the last line", into(&last, chromedp.Text(chromedp.CSS("#log .log-line:last-child .lt"))))
		var n int
		if _, err := fmt.Sscanf(last, "line %d", &n); err != nil || n < before+20-5 || n > after {
			t.Errorf("last line %q after %d lines (from %d)", last, after, before)
		}
	})

	t.Run("screenshots", func(t *testing.T) {
		dir := os.Getenv("GBB_SCREENSHOTS")
		if dir == "" {
			dir = filepath.Join(t.TempDir(), "screenshots")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The quick build gives the console and the grid a finished build.
		body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"reason":"for the screenshots"}}`, builderID(t, e, "quick"))
		req, _ := http.NewRequest("POST", e.url("/api/v2/forceschedulers/force"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("admin", "admin-pw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("force quick with basic auth: %s", resp.Status)
		}
		waitFor(t, "the quick build", 30*time.Second, func() bool {
			var r struct{ Builds []apiBuild }
			e.getAs("admin", "admin-pw", "/api/v2/builders/quick/builds?complete=true", &r)
			return len(r.Builds) == 1
		})
		for _, p := range []struct{ name, url, sel string }{
			{"home", base, "main"},
			{"builders", base + "builders", "#builders-table"},
			{"builder", base + "builders/slow", "#force-force"},
			{"build", buildPage, "#steps"},
			{"log", logPage, "#log .log-line"},
			{"workers", base + "workers", "main"},
			{"console", base + "console", "main"},
			{"grid", base + "grid", "main"},
			{"waterfall", base + "waterfall", "#waterfall"},
		} {
			var png []byte
			browse(t, ctx, "screenshot "+p.name,
				chromedp.Navigate(p.url),
				chromedp.WaitVisible(chromedp.CSS(p.sel)),
				into(&png, chromedp.FullScreenshot(100)),
			)
			if err := os.WriteFile(filepath.Join(dir, p.name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("screenshots in %s", dir)
	})

	t.Run("log colours under the CSP", func(t *testing.T) {
		var colours []string
		browse(t, ctx, "open the quick build's log",
			chromedp.Navigate(fmt.Sprintf("%sbuilders/%d/builds/1/steps/1/logs/stdio", base, builderID(t, e, "quick"))),
			chromedp.WaitVisible(chromedp.CSS("#log .log-line")),
			into(&colours, chromedp.Evaluate[[]string](`["ansi-fg-2", "ansi-fg-196", "ansi-bg-21"].map(function (c) {
				var el = document.querySelector("#log ." + c);
				if (!el) { return c + " missing"; }
				var st = getComputedStyle(el);
				return c === "ansi-bg-21" ? st.backgroundColor : st.color;
			})`)),
		)
		want := []string{"rgb(78, 154, 6)", "rgb(255, 0, 0)", "rgb(0, 0, 255)"}
		if strings.Join(colours, "|") != strings.Join(want, "|") {
			t.Errorf("log colours %q, want %q (style sheets applied under the CSP)", colours, want)
		}
	})

	t.Run("stop a running build", func(t *testing.T) {
		var state string
		browse(t, ctx, "stop",
			chromedp.Navigate(buildPage),
			chromedp.WaitVisible(chromedp.CSS("#stop-build")),
			// Typed as a person would: live.js leaves the region the user
			// is typing in alone while the build's events come.
			chromedp.SendKeys(chromedp.CSS(`#stop-build input[name="reason"]`), "stopped from the browser"),
			loaded(chromedp.Submit(chromedp.CSS("#stop-build"))),
			chromedp.WaitVisible(chromedp.CSS("#build-result")),
		)
		b := e.waitBuild(slowBuild.BuildRequestID, 30*time.Second)
		if b.Results == nil || *b.Results != 6 {
			t.Errorf("stopped build's results %v, want 6 (CANCELLED)", b.Results)
		}
		// The page that the form led to may have been rendered just
		// before the build ended; live.js does not catch up on events
		// sent before it subscribed, so read the page again.
		browse(t, ctx, "read the stopped build",
			chromedp.Navigate(buildPage),
			chromedp.WaitVisible(chromedp.CSS("#build-result.cancelled")),
			into(&state, chromedp.Text(chromedp.CSS("#build-state"))),
		)
		if !strings.Contains(state, "cancelled") || !strings.Contains(state, "stopped from the browser") {
			t.Errorf("build state %q, want cancelled with the typed reason", state)
		}
		logout(t)
	})

	t.Run("no CSP violations", func(t *testing.T) {
		if v := csp.violations(); len(v) > 0 {
			t.Errorf("the pages broke their Content-Security-Policy:\n%s", strings.Join(v, "\n"))
		}
		// The watch sees a violation: an inline script is refused.
		var ran bool
		browse(t, ctx, "inject an inline script",
			chromedp.Navigate(base+"builders"),
			chromedp.WaitVisible(chromedp.CSS("#builders-table")),
			into(new(bool), chromedp.Evaluate[bool](`(function () { var s = document.createElement("script"); s.textContent = "window.gbbInline = true"; document.body.appendChild(s); return true; })()`)),
			into(&ran, chromedp.Evaluate[bool](`window.gbbInline === true`)),
		)
		if ran {
			t.Error("an inline script ran: the CSP does not forbid them")
		}
		waitFor(t, "the injected script's CSP violation in the console", 10*time.Second, func() bool { return len(csp.violations()) > 0 })
	})
}

// cspWatch collects the Content-Security-Policy violations that Chromium
// reports in a tab's console.
type cspWatch struct {
	mu   sync.Mutex
	seen []string // guarded by mu
}

func (w *cspWatch) violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

// watchCSP starts collecting the CSP violations of ctx's tab.
func watchCSP(t *testing.T, ctx context.Context) *cspWatch {
	t.Helper()
	w := &cspWatch{}
	note := func(text, where string) {
		if strings.Contains(text, "Content Security Policy") {
			w.mu.Lock()
			w.seen = append(w.seen, where+": "+text)
			w.mu.Unlock()
		}
	}
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			note(ev.Entry.Text, ev.Entry.URL)
		case *runtime.EventExceptionThrown:
			note(ev.ExceptionDetails.Text, ev.ExceptionDetails.URL)
		case *runtime.EventConsoleAPICalled:
			for _, a := range ev.Args {
				note(string(a.Value), string(ev.Type))
			}
		}
	})
	if err != nil {
		t.Fatalf("watch the console: %v", err)
	}
	return w
}

// builderID returns the id of the builder called name.
func builderID(t *testing.T, e *env, name string) int64 {
	t.Helper()
	var r struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
		} `json:"builders"`
	}
	e.getAs("admin", "admin-pw", "/api/v2/builders/"+name, &r)
	if len(r.Builders) != 1 {
		t.Fatalf("builder %s: %v", name, r)
	}
	return r.Builders[0].BuilderID
}
