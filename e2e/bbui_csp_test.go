package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/web"
)

// TestBuildbotUIUnderCSP serves a stand-in for buildbot's UI
// (testdata/bbui: an index.html built as buildbot's, a module that does
// what the real UI does that a Content-Security-Policy governs, and a
// plugin beside it) and loads it in Chromium: the config gbb writes
// inline runs, the UI's styles, images, API calls, WebSocket and plugin
// all work, and the console shows no CSP violation. Any other inline
// script is still refused, and gbb's own pages keep their strict policy.
// Both at /buildbot-ui/ and, with buildbot_ui_at_root, at the root, with
// gbb's pages, working, under /gbb/.
func TestBuildbotUIUnderCSP(t *testing.T) {
	t.Parallel()
	t.Run("at /buildbot-ui/", func(t *testing.T) { runBuildbotUIUnderCSP(t, false) })
	t.Run("at the root", func(t *testing.T) { runBuildbotUIUnderCSP(t, true) })
}

func runBuildbotUIUnderCSP(t *testing.T, atRoot bool) {
	uiPath, gbbPath, root := "/buildbot-ui/", "/", ""
	if atRoot {
		uiPath, gbbPath, root = "/", "/gbb/", "buildbot_ui_at_root = true\n"
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "bbui", "buildbot_www", "static"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.writeConfig(`title = "Fixture CI"` + loopback + `buildbot_ui_dir = "` + dir + `"
avatar_methods = ["identicon"]
` + root + strings.TrimPrefix(bbuiConfig, loopback))
	e.startMaster()

	ctx := newBrowser(t)
	csp := watchCSP(t, ctx)
	browse(t, ctx, "load the UI",
		chromedp.Navigate(e.url(uiPath)),
		chromedp.WaitVisible(chromedp.CSS("#root")),
	)
	type results struct {
		Config, Theme, InjectedStyle         string
		DataImage, BlobImage, Avatar, Plugin string
		API, WS                              any
	}
	var got results
	waitFor(t, "the fixture UI done", 30*time.Second, func() bool {
		var js string
		browse(t, ctx, "read the fixture's results", into(&js, chromedp.Evaluate[string](`JSON.stringify(window.fixture || {})`)))
		got = results{}
		if err := json.Unmarshal([]byte(js), &got); err != nil {
			t.Fatalf("results %q: %v", js, err)
		}
		return got.DataImage != "" && got.BlobImage != "" && got.Avatar != "" && got.API != nil && got.WS != nil && got.Plugin != ""
	})
	want := results{
		Config: "Fixture CI", Theme: "rgb(1, 2, 3)", InjectedStyle: "rgb(4, 5, 6)",
		DataImage: "loaded", BlobImage: "loaded", Avatar: "loaded", Plugin: "fixture_view",
		API: 1.0, WS: 200.0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("buildbot's UI under its policy (-want +got):\n%s", diff)
	}
	var warning bool
	var pluginStyle string
	browse(t, ctx, "read the page",
		into(&warning, chromedp.Evaluate[bool](`window.fixtureWarning === true`)),
		into(&pluginStyle, chromedp.Evaluate[string](`getComputedStyle(document.getElementById("outdated")).borderLeftColor`)),
	)
	if !warning || pluginStyle != "rgb(7, 8, 9)" {
		t.Errorf("browser-warning.js ran: %v; the plugin's styles.css: %q, want rgb(7, 8, 9)", warning, pluginStyle)
	}
	if v := csp.violations(); len(v) > 0 {
		t.Errorf("buildbot's UI broke its Content-Security-Policy:\n%s", strings.Join(v, "\n"))
	}

	// Only the config's own script is allowed inline.
	var ran bool
	browse(t, ctx, "inject an inline script",
		into(new(bool), chromedp.Evaluate[bool](`(function () { var s = document.createElement("script"); s.textContent = "window.injected = true"; document.body.appendChild(s); return true; })()`)),
		into(&ran, chromedp.Evaluate[bool](`window.injected === true`)),
	)
	if ran {
		t.Error("an injected inline script ran in buildbot's UI")
	}
	waitFor(t, "the injected script's CSP violation", 10*time.Second, func() bool { return len(csp.violations()) > 0 })

	for _, path := range []string{gbbPath, gbbPath + "builders", "/api/v2/builders"} {
		resp, err := http.Get(e.url(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Content-Security-Policy"); got != web.ContentSecurityPolicy {
			t.Errorf("GET %s: policy %q, want gbb's %q", path, got, web.ContentSecurityPolicy)
		}
	}
	if !atRoot {
		return
	}
	// gbb's pages under /gbb/: their links and style sheets work there,
	// under their own policy.
	before := len(csp.violations())
	var loc, size string
	browse(t, ctx, "gbb's builders page under /gbb/",
		chromedp.Navigate(e.url("/gbb/builders")),
		chromedp.WaitVisible(chromedp.CSS("#builders-table")),
		loaded(chromedp.Click(chromedp.CSS(`#builders-table a.builder-name`))),
		chromedp.WaitVisible(chromedp.CSS("h1")),
		into(&loc, chromedp.Location()),
		into(&size, chromedp.Evaluate[string](`getComputedStyle(document.body).fontSize`)),
	)
	if loc != e.url("/gbb/builders/1") {
		t.Errorf("the builders page's link led to %s, want %s", loc, e.url("/gbb/builders/1"))
	}
	if size != "14px" {
		t.Errorf("gbb's style sheet (static/style.css) not applied under /gbb/: body's font size %q, want 14px", size)
	}
	if v := csp.violations()[before:]; len(v) > 0 {
		t.Errorf("gbb's pages under /gbb/ broke their policy:\n%s", strings.Join(v, "\n"))
	}
}
