package web

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// The charts, the waterfall and the inline logs as a client without
// JavaScript gets them (plain GETs): SVG with its title, description and
// values as text, links relative to the page, bad queries refused. The
// browser tests (e2e/pages_browser_test.go) check them drawn and live.

var (
	barRE   = regexp.MustCompile(`<a href="([^"]*)"><rect class="bar (\w+)" data-number="(\d+)"`)
	wfBoxRE = regexp.MustCompile(`<a class="wf-build" id="wf-build-(\d+)" href="([^"]*)">`)
)

func TestBuilderChartWithoutJS(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	// runtests has #1 success, #2 failure, #3 running; two more, 0.3 s
	// and 12.34 s long.
	_, brids := must2(f.db.AddBuildset(store.NewBuildset{Reason: "more", BuilderIDs: []int64{f.runtests.ID}}))(t)
	for _, d := range []time.Duration{300 * time.Millisecond, 12340 * time.Millisecond} {
		b := must(f.db.AddBuild(store.NewBuild{BuilderID: f.runtests.ID, BuildRequestID: brids[f.runtests.ID], WorkerID: f.worker.ID, MasterID: f.master.ID, StartedAt: t0}))(t)
		check(t, f.db.FinishBuild(b.ID, store.Success, t0.Add(d)))
	}
	path := fmt.Sprintf("/builders/%d", f.runtests.ID)
	status, page := f.page(t, path)
	if status != 200 {
		t.Fatalf("GET %s: %d", path, status)
	}
	for _, want := range []string{
		`<svg id="builder-chart" class="chart duration-chart"`, `role="img"`,
		`<title id="builder-chart-title">Durations of the last 5 builds of runtests</title>`,
		`<desc id="builder-chart-desc">3 of 4 finished builds succeeded (75%); median duration 1.0s;`,
		`<span id="success-rate">75%</span>`, `<span id="median-duration">1.0s</span>`,
		`<title>#4: success, 0.3s</title>`, `<title>#5: success, 12.3s</title>`,
		`<td>2026-11-28 `, `<td>0.3s</td>`, `<td>12.3s</td>`,
		`data-live-region`, `id="chart-section"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET %s lacks %q", path, want)
		}
	}
	bars := barRE.FindAllStringSubmatch(page, -1)
	var got []string
	for _, b := range bars {
		got = append(got, b[3]+" "+b[2]+" "+b[1])
	}
	want := []string{"1 success ../builders/1/builds/1", "2 failure ../builders/1/builds/2", "3 running ../builders/1/builds/3",
		"4 success ../builders/1/builds/4", "5 success ../builders/1/builds/5"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("bars %q, want %q", got, want)
	}
	checkRelative(t, path, page)
}

func TestHomeTrendsWithoutJS(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	now := time.Now()
	// In the last hours: a request that waited 10 minutes, then built on
	// the worker for 20; another still waiting.
	sub := now.Add(-time.Hour)
	_, brids := must2(f.db.AddBuildset(store.NewBuildset{Reason: "recent", BuilderIDs: []int64{f.noop.ID}, SubmittedAt: sub}))(t)
	check(t, f.db.ClaimBuildRequest(brids[f.noop.ID], f.master.ID, sub.Add(10*time.Minute)))
	b := must(f.db.AddBuild(store.NewBuild{BuilderID: f.noop.ID, BuildRequestID: brids[f.noop.ID], WorkerID: f.worker.ID, MasterID: f.master.ID, StartedAt: sub.Add(10 * time.Minute)}))(t)
	check(t, f.db.FinishBuild(b.ID, store.Success, sub.Add(30*time.Minute)))
	check(t, f.db.CompleteBuildRequest(brids[f.noop.ID], store.Success, sub.Add(30*time.Minute)))
	_, _ = must2(f.db.AddBuildset(store.NewBuildset{Reason: "waiting", BuilderIDs: []int64{f.noop.ID}, SubmittedAt: now.Add(-5 * time.Minute)}))(t)

	status, page := f.page(t, "/")
	if status != 200 {
		t.Fatalf("GET /: %d", status)
	}
	for _, want := range []string{
		`<section id="trends" data-live-region>`, `<h2>The last 6 hours</h2>`,
		`<svg id="queue-chart" class="chart series-chart"`, `<title id="queue-chart-title">Pending build requests</title>`,
		`<svg id="busy-chart" class="chart series-chart"`, `<title id="busy-chart-title">Busy workers</title>`,
		// Waiting now: the new request. Busy now: the fixture's running build.
		`Pending build requests: now <span class="series-now" id="queue-chart-now">1</span>, highest <span class="series-peak">1</span>`,
		`Busy workers: now <span class="series-now" id="busy-chart-now">1</span>, highest <span class="series-peak">1</span>`,
		`<path class="line queue" d="M`, `<path class="line busy" d="M`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET / lacks %q", want)
		}
	}
	if strings.Contains(page, "older builds and requests were not read") {
		t.Error("the home page says its window was cut short")
	}
}

// TestWaterfallDensePage: 60 builds within a second, each with a step of
// a few ms, draw no negative or NaN width or height on /waterfall.
func TestWaterfallDensePage(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	_, brids := must2(f.db.AddBuildset(store.NewBuildset{Reason: "dense", BuilderIDs: []int64{f.noop.ID}}))(t)
	for i := range 60 {
		start := t0.Add(time.Duration(i) * 15 * time.Millisecond)
		b := must(f.db.AddBuild(store.NewBuild{BuilderID: f.noop.ID, BuildRequestID: brids[f.noop.ID], WorkerID: f.worker.ID, MasterID: f.master.ID, StartedAt: start}))(t)
		st := must(f.db.AddStep(b.ID, "shell"))(t)
		check(t, f.db.StartStep(st.ID, start.Add(time.Millisecond)))
		check(t, f.db.FinishStep(st.ID, store.Success, start.Add(13*time.Millisecond)))
		check(t, f.db.FinishBuild(b.ID, store.Success, start.Add(14*time.Millisecond)))
	}
	status, page := f.page(t, "/waterfall")
	if status != 200 {
		t.Fatalf("GET /waterfall: %d", status)
	}
	if n := len(wfBoxRE.FindAllString(page, -1)); n != 60 {
		t.Errorf("%d boxes, want 60", n)
	}
	for _, m := range regexp.MustCompile(`(?:width|height|x|y)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if strings.HasPrefix(m[1], "-") || strings.Contains(strings.ToLower(m[1]), "nan") {
			t.Errorf("GET /waterfall draws %s", m[0])
		}
	}
	for _, m := range regexp.MustCompile(`<rect class="wf-box [^"]*" x="[^"]*" y="[^"]*" width="([^"]*)" height="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if w, h := must(strconv.ParseFloat(m[1], 64))(t), must(strconv.ParseFloat(m[2], 64))(t); w < 12 || h < 18 {
			t.Errorf("a box of %.1f x %.1f px: %s", w, h, m[0])
		}
	}
}

func TestWaterfallWithoutJS(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	status, page := f.page(t, "/waterfall")
	if status != 200 {
		t.Fatalf("GET /waterfall: %d", status)
	}
	// The fixture's four builds: runtests #1-#3, noop #1; newest first.
	var got []string
	for _, m := range wfBoxRE.FindAllStringSubmatch(page, -1) {
		got = append(got, m[1]+" "+m[2])
	}
	want := []string{
		fmt.Sprintf("%d ./builders/%d/builds/1", f.other.ID, f.noop.ID),
		fmt.Sprintf("%d ./builders/%d/builds/3", f.running.ID, f.runtests.ID),
		fmt.Sprintf("%d ./builders/%d/builds/2", f.failed.ID, f.runtests.ID),
		fmt.Sprintf("%d ./builders/%d/builds/1", f.ok.ID, f.runtests.ID),
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("waterfall boxes %q, want %q", got, want)
	}
	for _, want := range []string{
		`<a href="./waterfall" class="current">Waterfall</a>`, `<svg id="waterfall" class="waterfall"`,
		`<title id="waterfall-title">Waterfall</title>`, `<desc id="waterfall-desc">4 builds of 2 builders`,
		`<rect class="wf-box running"`, `<rect class="wf-box failure"`, `<rect class="wf-step success"`,
		fmt.Sprintf(`<a class="wf-builder" href="./builders/%d"><text class="wf-builder-name"`, f.noop.ID),
		`data-live="builds/*/* steps/*/*"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET /waterfall lacks %q", want)
		}
	}
	if strings.Contains(page, `id="waterfall-older"`) {
		t.Error("a page of all the builds links to older ones")
	}
	checkRelative(t, "/waterfall", page)

	// Paged back: 70 more builds; the first page shows 60, its older
	// link the rest.
	_, brids := must2(f.db.AddBuildset(store.NewBuildset{Reason: "many", BuilderIDs: []int64{f.noop.ID}}))(t)
	var last store.Build
	for i := range 70 {
		last = must(f.db.AddBuild(store.NewBuild{BuilderID: f.noop.ID, BuildRequestID: brids[f.noop.ID], WorkerID: f.worker.ID, MasterID: f.master.ID, StartedAt: t0.Add(time.Duration(i) * time.Minute)}))(t)
		check(t, f.db.FinishBuild(last.ID, store.Success, t0.Add(time.Duration(i)*time.Minute+30*time.Second)))
	}
	_, page = f.page(t, "/waterfall")
	boxes := wfBoxRE.FindAllStringSubmatch(page, -1)
	if len(boxes) != 60 || boxes[0][1] != fmt.Sprint(last.ID) {
		t.Fatalf("first page: %d boxes from %v, want 60 from %d", len(boxes), boxes[0][1], last.ID)
	}
	older := fmt.Sprintf(`<a id="waterfall-older" rel="next" href="?before=%s">older →</a>`, boxes[59][1])
	if !strings.Contains(page, older) {
		t.Fatalf("first page lacks %q", older)
	}
	status, page = f.page(t, "/waterfall?before="+boxes[59][1])
	boxes = wfBoxRE.FindAllStringSubmatch(page, -1)
	if status != 200 || len(boxes) != 14 || !strings.Contains(page, `<a id="waterfall-newest" href="./waterfall">`) || strings.Contains(page, "waterfall-older") {
		t.Errorf("older page: %d, %d boxes (want 14), newest link and no older one", status, len(boxes))
	}
	if strings.Contains(page, "data-live=") {
		t.Error("an older page follows live events")
	}
	for _, bad := range []string{"x", "0", "-3", "1.5", "99999999999999999999"} {
		status, page := f.page(t, "/waterfall?before="+bad)
		if status != 400 || !strings.Contains(page, "before must be a build id (a positive integer), not &#34;"+bad) {
			t.Errorf("GET /waterfall?before=%s: %d, want 400 saying why", bad, status)
		}
	}
}

func TestInlineLogsWithoutJS(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	// A big log: only its tail is on the build page, and a long line is
	// cut.
	l := must(f.db.AddLog(f.testStep.ID, "big", "s"))(t)
	var sb strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&sb, "oline %d\n", i)
	}
	sb.WriteString("o" + strings.Repeat("x", 100000) + "\n")
	sb.WriteString("eworst line\n")
	must(f.db.AppendLog(l.ID, sb.String()))(t)
	path := fmt.Sprintf("/builders/%d/builds/%d", f.runtests.ID, f.ok.Number)
	status, page := f.page(t, path)
	if status != 200 {
		t.Fatalf("GET %s: %d", path, status)
	}
	logHref := fmt.Sprintf("../../../builders/%d/builds/%d/steps/1/logs/", f.runtests.ID, f.ok.Number)
	for _, want := range []string{
		fmt.Sprintf(`<tr class="step-logs" id="step-logs-1">`),
		fmt.Sprintf(`<details class="inline-log" id="inline-log-%d" data-logid="%d" data-href="%sstdio" data-next="14" data-count="50">`, f.stdio.ID, f.stdio.ID, logHref),
		fmt.Sprintf(`<details class="inline-log" id="inline-log-%d" data-logid="%d" data-href="%sbig" data-next="5002" data-count="50" data-follow>`, l.ID, l.ID, logHref),
		`<summary>big <small>(5002 lines, still running)</small></summary>`,
		`<div class="log-line stdout"><span class="ln">12</span><span class="lt">PASS: hello</span></div>`,
		`<div class="log-line stdout"><span class="ln">4953</span><span class="lt">line 4953</span></div>`,
		`<div class="log-line stderr"><span class="ln">5002</span><span class="lt">worst line</span></div>`,
		fmt.Sprintf(`Only the last lines are shown here: <a href="%sbig">the whole log</a>.`, logHref),
		fmt.Sprintf(`<a class="log-link" href="%sbig">big</a>`, logHref),
		// 2 KiB of the stored line, its channel letter included.
		strings.Repeat("x", 2047) + "…</span>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET %s lacks %q", path, want)
		}
	}
	if strings.Contains(page, "line 4952<") || strings.Contains(page, strings.Repeat("x", 2048)) || len(page) > 64<<10 {
		t.Errorf("the build page inlines more than the tail (%d bytes)", len(page))
	}
	// What the page's script appends: the next lines, cut the same way,
	// without the log page's anchors.
	status, frag := f.page(t, fmt.Sprintf("/builders/%d/builds/%d/steps/1/logs/big?first=5001&count=50&fragment=inline", f.runtests.ID, f.ok.Number))
	if status != 200 || !strings.HasPrefix(frag, `<div class="log-line stdout"><span class="ln">5001</span><span class="lt">`+strings.Repeat("x", 2047)+"…</span></div>") ||
		!strings.Contains(frag, `<span class="ln">5002</span>`) || strings.Contains(frag, "id=\"L") {
		t.Errorf("inline fragment: %d %.300q", status, frag)
	}
}

// TestHomeTrendsCapped: a window with more builds than the home page
// reads is charted from the oldest build read, and the page says so.
func TestHomeTrendsCapped(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	_, brids := must2(f.db.AddBuildset(store.NewBuildset{Reason: "many", BuilderIDs: []int64{f.noop.ID}, SubmittedAt: time.Now().Add(-3 * time.Hour)}))(t)
	start := time.Now().Add(-2 * time.Hour)
	for i := range 1001 {
		must(f.db.AddBuild(store.NewBuild{BuilderID: f.noop.ID, BuildRequestID: brids[f.noop.ID], WorkerID: f.worker.ID, MasterID: f.master.ID, StartedAt: start.Add(time.Duration(i) * time.Second)}))(t)
	}
	_, page := f.page(t, "/")
	// Read: the newest 1,000, started from start+1s on.
	from := start.Add(time.Second).UTC().Format(time.DateTime)
	if want := "<p class=\"note\">From " + from + " UTC only: older builds and requests were not read"; !strings.Contains(page, want) {
		t.Errorf("GET / lacks %q", want)
	}
	// All 1,003 running builds are on the one worker: one busy worker.
	if want := `Busy workers: now <span class="series-now" id="busy-chart-now">1</span>`; !strings.Contains(page, want) {
		t.Errorf("GET / lacks %q", want)
	}
}

// TestHomeTrendsFollowChanges: the charts drawn for one render are not
// shown again once a build ends or a request comes.
func TestHomeTrendsFollowChanges(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	now := func(page, chart string) string {
		m := regexp.MustCompile(`id="` + chart + `-now">(\d+)<`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no %s in the page", chart)
		}
		return m[1]
	}
	_, page := f.page(t, "/")
	if q, b := now(page, "queue-chart"), now(page, "busy-chart"); q != "0" || b != "1" {
		t.Fatalf("at first: queue %s, busy %s; want 0, 1", q, b)
	}
	check(t, f.db.FinishBuild(f.running.ID, store.Success, time.Now()))
	_, page = f.page(t, "/")
	if b := now(page, "busy-chart"); b != "0" {
		t.Errorf("after the running build ended: busy %s, want 0", b)
	}
	must2(f.db.AddBuildset(store.NewBuildset{Reason: "queued", BuilderIDs: []int64{f.noop.ID}}))(t)
	_, page = f.page(t, "/")
	if q := now(page, "queue-chart"); q != "1" {
		t.Errorf("after a request came: queue %s, want 1", q)
	}
}
