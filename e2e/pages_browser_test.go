package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gbb-ci/gbb/internal/testdeb"
)

// The pages of issue 22 in Chromium against a real master and worker:
// the builder's duration chart, the home page's trends and the waterfall
// drawn with the builds that exist (their bars and boxes counted, their
// colours and links checked), the chart growing live, and a build page's
// inline log following its running step. The same pages fetched without
// JavaScript carry their SVG and text. Directly and behind nginx's path
// prefix.

const pagesConfig = `title = "Pages CI"
` + loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["quick", "failing", "slow"]

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "one"
  command = "echo one"
  [[builders.steps]]
  type = "shell"
  name = "two"
  command = "echo two"

[[builders]]
name = "failing"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "fail"
  command = "echo failing; exit 1"

[[builders]]
name = "slow"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "warmup"
  command = "i=1; while [ $i -le 150 ]; do echo \"warm $i\"; i=$((i+1)); sleep 0.1; done"
  [[builders.steps]]
  type = "shell"
  name = "count"
  command = "i=1; while [ $i -le 900 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done"
`

func TestPagesInBrowser(t *testing.T) { runPagesBrowser(t, false) }

// TestPagesInBrowserBehindNginx: the same under /buildbot/ through
// deploy/freebsd/nginx.conf.
func TestPagesInBrowserBehindNginx(t *testing.T) { runPagesBrowser(t, true) }

// The result colours of static/style.css, as the browser computes them.
const (
	rgbSuccess = "rgb(136, 221, 68)"
	rgbFailure = "rgb(238, 136, 136)"
	rgbRunning = "rgb(231, 209, 0)"
)

func runPagesBrowser(t *testing.T, behindNginx bool) {
	e := newEnv(t)
	e.writeConfig(pagesConfig)
	base := e.url("/")
	if behindNginx {
		port := freePort(t)
		public := fmt.Sprintf("http://127.0.0.1:%d/buildbot/", port)
		cfg := filepath.Join(e.masterDir, "master.toml")
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		data = []byte(strings.Replace(string(data), fmt.Sprintf("buildbot_url = %q", base), fmt.Sprintf("buildbot_url = %q", public), 1))
		if err := os.WriteFile(cfg, data, 0o644); err != nil {
			t.Fatal(err)
		}
		startNginx(t, testdeb.Need(t, "nginx", "nginx"), e.Dir, port, fmt.Sprintf("127.0.0.1:%d", e.WebPort))
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
		e.get("/api/v2/workers/w1", &r)
		return len(r.Workers) == 1 && len(r.Workers[0].ConnectedTo) > 0
	})
	id := func(name string) int64 {
		var r struct {
			Builders []struct {
				BuilderID int64 `json:"builderid"`
			} `json:"builders"`
		}
		e.get("/api/v2/builders/"+name, &r)
		if len(r.Builders) != 1 {
			t.Fatalf("builder %s: %v", name, r)
		}
		return r.Builders[0].BuilderID
	}
	quick, failing, slow := id("quick"), id("failing"), id("slow")
	for _, b := range []int64{quick, quick, failing} {
		e.waitBuild(e.force("force", b, "for the pages"), 60*time.Second)
	}
	ctx := newBrowser(t)
	csp := watchCSP(t, ctx)

	t.Run("builder chart", func(t *testing.T) {
		var bars int
		var fills, links []string
		var rate string
		builderPage := fmt.Sprintf("%sbuilders/%d", base, quick)
		browse(t, ctx, "open the quick builder's page",
			chromedp.Navigate(builderPage),
			chromedp.WaitVisible(chromedp.CSS("#builder-chart")),
			into(&bars, chromedp.Evaluate[int](`document.querySelectorAll("#builder-chart rect.bar").length`)),
			into(&fills, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#builder-chart rect.bar")).map(function (r) { return r.getAttribute("class") + " " + getComputedStyle(r).fill; })`)),
			into(&links, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#builder-chart a")).map(function (a) { return new URL(a.getAttribute("href"), location.href).href; })`)),
			into(&rate, chromedp.Text(chromedp.CSS("#builder-stats"))),
		)
		if bars != 2 {
			t.Errorf("%d bars for quick's 2 builds", bars)
		}
		for _, f := range fills {
			if f != "bar success "+rgbSuccess {
				t.Errorf("bar %q, want class success filled %s", f, rgbSuccess)
			}
		}
		for i, l := range links {
			if want := fmt.Sprintf("%sbuilders/%d/builds/%d", base, quick, i+1); l != want {
				t.Errorf("bar %d links %s, want %s", i+1, l, want)
			}
		}
		if !strings.Contains(rate, "100% of the last 2 finished builds succeeded") || !strings.Contains(rate, "median duration") {
			t.Errorf("builder stats %q", rate)
		}
		// The failing builder's bar is coloured as a failure.
		var fill string
		browse(t, ctx, "open the failing builder's page",
			chromedp.Navigate(fmt.Sprintf("%sbuilders/%d", base, failing)),
			chromedp.WaitVisible(chromedp.CSS("#builder-chart rect.bar")),
			into(&fill, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("#builder-chart rect.bar.failure")).fill`)),
		)
		if fill != rgbFailure {
			t.Errorf("failing bar filled %q, want %s", fill, rgbFailure)
		}
		// A new build grows the chart without a reload.
		browse(t, ctx, "back to quick",
			chromedp.Navigate(builderPage),
			chromedp.WaitVisible(chromedp.CSS("#builder-chart")),
			into(new(bool), chromedp.Evaluate[bool](`window.gbbNoReload = true`)),
		)
		e.waitBuild(e.force("force", quick, "live"), 60*time.Second)
		var marker bool
		browse(t, ctx, "wait for the third bar",
			into(new(bool), chromedp.Poll[bool](`document.querySelectorAll("#builder-chart rect.bar.success").length === 3`, chromedp.WithPollingTimeout(30*time.Second))),
			into(&marker, chromedp.Evaluate[bool](`window.gbbNoReload === true`)),
		)
		if !marker {
			t.Error("the builder page reloaded")
		}
	})

	t.Run("home trends", func(t *testing.T) {
		var charts []string
		browse(t, ctx, "open the home page",
			chromedp.Navigate(base),
			chromedp.WaitVisible(chromedp.CSS("#trends svg#busy-chart")),
			into(&charts, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#trends svg")).map(function (s) {
				var line = s.querySelector("path.line");
				return s.id + " " + s.querySelector("title").textContent + " " + (line ? line.getBoundingClientRect().width > 100 : false);
			})`)),
		)
		want := []string{"queue-chart Pending build requests true", "busy-chart Busy workers true"}
		if strings.Join(charts, "|") != strings.Join(want, "|") {
			t.Errorf("home charts %q, want %q", charts, want)
		}
	})

	// The slow build runs while the waterfall and the build page are
	// looked at.
	slowReq := e.force("force", slow, "a running build")
	var slowBuild apiBuild
	waitFor(t, "the slow build's first lines", 60*time.Second, func() bool {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", slowReq), &r)
		if len(r.Builds) != 1 {
			return false
		}
		slowBuild = r.Builds[0]
		var l struct{ Logs []apiLog }
		status := e.get(fmt.Sprintf("/api/v2/builds/%d/steps/1/logs/stdio", slowBuild.BuildID), &l)
		return status == 200 && len(l.Logs) == 1 && l.Logs[0].NumLines >= 3
	})
	t.Cleanup(func() {
		// Stop it, so that the worker has nothing to finish.
		resp, err := http.Post(e.url(fmt.Sprintf("/api/v2/builds/%d", slowBuild.BuildID)), "application/json",
			strings.NewReader(`{"jsonrpc":"2.0","method":"stop","id":1,"params":{"reason":"test over"}}`))
		if err == nil {
			resp.Body.Close()
		}
	})

	t.Run("inline log follows the running step", func(t *testing.T) {
		buildPage := fmt.Sprintf("%sbuilders/%d/builds/%d", base, slow, slowBuild.Number)
		var before, after int
		var marker, kept bool
		var last, full string
		browse(t, ctx, "open the slow build's log under its step",
			chromedp.Navigate(buildPage),
			chromedp.WaitVisible(chromedp.CSS("#step-logs-1 details.inline-log[data-follow] summary")),
			into(&full, chromedp.Evaluate[string](`new URL(document.querySelector("#step-1 a.log-link").getAttribute("href"), location.href).href`)),
			chromedp.Click(chromedp.CSS("#step-logs-1 details.inline-log summary")),
			chromedp.WaitVisible(chromedp.CSS("#step-logs-1 details.inline-log[open] .log-line")),
			into(&before, chromedp.Evaluate[int](`window.gbbNoReload = true; window.gbbBefore = document.querySelectorAll("#step-logs-1 .log-line").length`)),
			// 20 more lines, while step events refresh the steps' table
			// around it: the open log stays open and keeps its lines.
			into(new(bool), chromedp.Poll[bool](`document.querySelectorAll("#step-logs-1 details.inline-log[open] .log-line").length >= window.gbbBefore + 20`, chromedp.WithPollingTimeout(30*time.Second))),
			into(&after, chromedp.Evaluate[int](`document.querySelectorAll("#step-logs-1 .log-line").length`)),
			into(&last, chromedp.Text(chromedp.CSS("#step-logs-1 .log-line:last-child .lt"))),
			into(&marker, chromedp.Evaluate[bool](`window.gbbNoReload === true`)),
			// The step ends and the next starts: the steps' table is
			// made anew, and the open log in it is the same element,
			// open, with the whole end of its log.
			into(new(bool), chromedp.Evaluate[bool](`document.querySelector("#step-logs-1 details.inline-log").gbbMine = true`)),
			into(new(bool), chromedp.Poll[bool](`document.querySelector("#step-2.running") !== null`, chromedp.WithPollingTimeout(60*time.Second))),
			into(new(bool), chromedp.Poll[bool](`(function () {
				var d = document.querySelector("#step-logs-1 details.inline-log");
				return /warm 150(?!\d)/.test(d.textContent) && /exit code 0/.test(d.textContent);
			})()`, chromedp.WithPollingTimeout(30*time.Second))),
			into(&kept, chromedp.Evaluate[bool](`(function () {
				var d = document.querySelector("#step-logs-1 details.inline-log");
				return d.open && d.gbbMine === true && window.gbbNoReload === true;
			})()`)),
		)
		if !marker {
			t.Error("the build page reloaded")
		}
		if !kept {
			t.Error("the open inline log was closed or made anew when the steps were refreshed")
		}
		var n int
		if _, err := fmt.Sscanf(last, "warm %d", &n); err != nil || n < 3 {
			t.Errorf("last inline line %q after %d lines (from %d)", last, after, before)
		}
		if want := buildPage + "/steps/1/logs/stdio"; full != want {
			t.Errorf("the step's full log link is %q, want %q", full, want)
		}
	})

	t.Run("waterfall", func(t *testing.T) {
		var boxes []string
		var cols []string
		browse(t, ctx, "open the waterfall from the navigation",
			chromedp.Navigate(base),
			chromedp.WaitVisible(chromedp.CSS("header nav")),
			loaded(chromedp.Click(chromedp.CSS(`header nav a[href$="waterfall"]`))),
			chromedp.WaitVisible(chromedp.CSS("#waterfall")),
			into(&cols, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#waterfall .wf-builder-name")).map(function (t) { return t.firstChild.nodeValue; })`)),
			into(&boxes, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#waterfall a.wf-build")).map(function (a) {
				var box = a.querySelector("rect.wf-box");
				return new URL(a.getAttribute("href"), location.href).href + " " + box.getAttribute("class").replace("wf-box ", "") + " " +
					getComputedStyle(box).fill + " " + a.querySelectorAll("rect.wf-step").length + " " + (box.height.baseVal.value >= 18);
			})`)),
		)
		if strings.Join(cols, "|") != "failing|quick|slow" {
			t.Errorf("columns %q, want the builders by name", cols)
		}
		// Newest on top: slow's running build, then quick #3, failing #1,
		// quick #2 and #1; each with its steps, worker_preparation
		// included.
		b := func(builder int64, n int, class, rgb string, steps int) string {
			return fmt.Sprintf("%sbuilders/%d/builds/%d %s %s %d true", base, builder, n, class, rgb, steps)
		}
		want := []string{
			b(slow, 1, "running", rgbRunning, 3), b(quick, 3, "success", rgbSuccess, 3),
			b(failing, 1, "failure", rgbFailure, 2), b(quick, 2, "success", rgbSuccess, 3), b(quick, 1, "success", rgbSuccess, 3),
		}
		for i, got := range boxes {
			if i < len(want) && got != want[i] {
				t.Errorf("box %d: %q, want %q", i, got, want[i])
			}
		}
		if len(boxes) != len(want) {
			t.Errorf("%d boxes %q, want %d", len(boxes), boxes, len(want))
		}
		// A new build's box comes without a reload.
		browse(t, ctx, "mark the page", into(new(bool), chromedp.Evaluate[bool](`window.gbbNoReload = true`)))
		e.waitBuild(e.force("force", failing, "for the waterfall"), 60*time.Second)
		var live bool
		browse(t, ctx, "wait for the new box",
			into(new(bool), chromedp.Poll[bool](`document.querySelectorAll("#waterfall a.wf-build rect.wf-box.failure").length === 2`, chromedp.WithPollingTimeout(30*time.Second))),
			into(&live, chromedp.Evaluate[bool](`window.gbbNoReload === true && document.querySelectorAll("#waterfall a.wf-build").length === 6`)),
		)
		if !live {
			t.Error("the waterfall reloaded, or does not show the 6 builds")
		}
		var h1 string
		browse(t, ctx, "follow a box to its build",
			loaded(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#waterfall a.wf-build[href$="builders/%d/builds/1"] rect.wf-box`, failing)))),
			chromedp.WaitVisible(chromedp.CSS("#build-result")),
			into(&h1, chromedp.Text(chromedp.CSS("h1"))),
		)
		if h1 != "failing #1" {
			t.Errorf("the box led to %q, want failing #1", h1)
		}
	})

	t.Run("without JavaScript", func(t *testing.T) {
		for path, wants := range map[string][]string{
			fmt.Sprintf("builders/%d", quick): {`<svg id="builder-chart"`, `<title id="builder-chart-title">Durations of the last 3 builds of quick</title>`, `<span id="success-rate">100%</span>`},
			"":                                {`<svg id="queue-chart"`, `<svg id="busy-chart"`, "Busy workers: now"},
			"waterfall":                       {`<svg id="waterfall"`, `<desc id="waterfall-desc">6 builds of 3 builders`, fmt.Sprintf(`href="./builders/%d/builds/2"`, failing)},
			fmt.Sprintf("builders/%d/builds/%d", slow, slowBuild.Number): {`<details class="inline-log"`, `<span class="lt">warm 150</span>`},
		} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("GET %s: %s", base+path, resp.Status)
			}
			for _, w := range wants {
				if !strings.Contains(string(body), w) {
					t.Errorf("GET %s lacks %q", base+path, w)
				}
			}
		}
		resp, err := http.Get(base + "waterfall?before=soon")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), "before must be a build id") {
			t.Errorf("GET waterfall?before=soon: %s %.200s", resp.Status, body)
		}
	})

	t.Run("no CSP violations", func(t *testing.T) {
		if v := csp.violations(); len(v) > 0 {
			t.Errorf("the pages broke their Content-Security-Policy:\n%s", strings.Join(v, "\n"))
		}
	})
}
