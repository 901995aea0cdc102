package web

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

func (f *fixture) page(t *testing.T, path string) (int, string) {
	t.Helper()
	resp := must(http.Get(f.srv.URL + path))(t)
	defer resp.Body.Close()
	return resp.StatusCode, string(must(io.ReadAll(resp.Body))(t))
}

var linkRE = regexp.MustCompile(`(?:href|action|src)="([^"]*)"`)

// checkRelative fails for each link of page that is not relative: no
// scheme, no host, no leading "/". Links to the configured title_url and to
// a change's revlink are the only absolute ones.
func checkRelative(t *testing.T, path, page string) {
	t.Helper()
	links := linkRE.FindAllStringSubmatch(page, -1)
	if len(links) < 5 {
		t.Errorf("%s: only %d links in:\n%s", path, len(links), page)
	}
	for _, l := range links {
		u := l[1]
		if u == "https://example.org/hello/" || strings.HasPrefix(u, "https://forge.example/") {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "" || pu.Host != "" || strings.HasPrefix(u, "/") {
			t.Errorf("%s: link %q is not relative", path, u)
		}
	}
}

// uiFixture is newTestServer's store plus a change built by a build of
// noop, served with a testController and the title of the fixture.
type uiFixture struct {
	*fixture
	ctl    *testController
	change store.Change
	built  store.Build // noop's build of change
	queued int64       // a request of runtests not claimed
}

func newUIServer(t *testing.T) *uiFixture {
	t.Helper()
	f := &uiFixture{fixture: newTestServer(t), ctl: &testController{}}
	db := f.db
	f.change = must(db.AddChange(store.Change{
		Author: "Carol <carol@example.org>", Comments: "fix the frobnicator\n\nlong text", Branch: "main",
		Revision: "0123456789abcdef0123", Repository: "https://example.org/r.git", RevLink: "https://forge.example/r/0123",
		When: t0, Files: []string{"a.go", "b.go"},
	}))(t)
	must(db.AddChange(store.Change{Author: "mallory", Comments: "evil", RevLink: "javascript:alert(1)", Revision: "bad"}))(t)
	_, brids := must2(db.AddBuildset(store.NewBuildset{
		Reason: "change", ChangeIDs: []int64{f.change.ID}, BuilderIDs: []int64{f.noop.ID},
		SourceStamps: []store.SourceStamp{{Branch: "main", Revision: f.change.Revision}},
	}))(t)
	check(t, db.ClaimBuildRequest(brids[f.noop.ID], f.master.ID, t0))
	b := must(db.AddBuild(store.NewBuild{BuilderID: f.noop.ID, BuildRequestID: brids[f.noop.ID], WorkerID: f.worker.ID, MasterID: f.master.ID, StartedAt: t0}))(t)
	check(t, db.FinishBuild(b.ID, store.Warnings, t0.Add(time.Minute)))
	f.built = must(db.Build(b.ID))(t)
	_, brids = must2(db.AddBuildset(store.NewBuildset{Reason: "queued for later", BuilderIDs: []int64{f.runtests.ID}}))(t)
	f.queued = brids[f.runtests.ID]
	check(t, db.SetStepStateString(f.gitStep.ID, "update done"))

	forcer := &testForcer{db: db, scheds: []scheduler.ForceInfo{
		{Name: "force-runtests", Label: "force-runtests", ButtonName: "force-runtests", BuilderNames: []string{"runtests"}},
		{Name: "force-all", BuilderNames: []string{"runtests", "noop"}},
	}}
	srv := httptest.NewServer(New(Config{
		Store: db, Forcer: forcer, Controller: f.ctl, MasterID: f.master.ID, MasterName: "master-1",
		Title: "Hello <CI>", TitleURL: "https://example.org/hello/", BuildbotURL: "http://ci.example.org/buildbot/",
	}).Handler())
	t.Cleanup(srv.Close)
	f.srv = srv
	return f
}

func must2[A, B any](a A, b B, err error) func(testing.TB) (A, B) {
	return func(t testing.TB) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

func TestPages(t *testing.T) {
	t.Parallel()
	f := newUIServer(t)
	rt, noop := f.runtests.ID, f.noop.ID
	okPath := fmt.Sprintf("/builders/%d/builds/%d", rt, f.ok.Number)
	tests := []struct {
		path   string
		status int
		want   []string
		not    []string
	}{
		{"/", 200, []string{
			"<title>Home · Hello &lt;CI&gt;</title>",
			`<a href="https://example.org/hello/">Hello &lt;CI&gt;</a>`,
			`<link rel="stylesheet" href="./static/style.css?v=`,
			`<link rel="icon" href="./static/favicon.ico?v=`,
			`data-live="builds/*/* steps/*/* buildrequests/*/*"`,
			fmt.Sprintf(`<tr id="running-%d" class="build-row">`, f.running.ID),
			fmt.Sprintf(`<a href="./builders/%d/builds/%d">#%d</a>`, rt, f.running.Number, f.running.Number),
			fmt.Sprintf(`<tr id="build-%d" class="build-row">`, f.built.ID),
			`<td class="result warnings">warnings</td>`, `<td class="result failure">failure</td>`,
			"build done", "2026-11-28 ",
			fmt.Sprintf(`<tr id="builder-%d">`, noop),
			`<form method="post" class="force" id="force-force-runtests" action="./force/force-runtests">`,
			`<form method="post" class="force" id="force-force-all" action="./force/force-all">`,
			fmt.Sprintf(`<option value="%d">noop</option>`, noop),
			`<a href="./builders">Builders</a>`,
		}, nil},
		{"/builders", 200, []string{
			"<title>Builders · Hello &lt;CI&gt;</title>", `class="current">Builders</a>`,
			fmt.Sprintf(`<tr id="builder-%d" class="builder-row">`, rt),
			fmt.Sprintf(`<a class="build-box failure" href="./builders/%d/builds/2"`, rt),
			`<span class="worker online" title="connected">bench-worker</span>`,
			`<a class="tag" href="?tag=unit">unit</a>`, "runs the tests",
		}, nil},
		{"/builders?tag=slow", 200, []string{"Builders tagged slow", fmt.Sprintf(`id="builder-%d"`, rt)}, []string{fmt.Sprintf(`id="builder-%d"`, noop)}},
		{fmt.Sprintf("/builders/%d", rt), 200, []string{
			"<title>runtests · Hello &lt;CI&gt;</title>",
			`<img src="../badges/runtests.svg"`,
			`<a class="worker online" href="../workers#worker-`,
			fmt.Sprintf(`<form method="post" class="force" id="force-force-runtests" action="../builders/%d/force/force-runtests">`, rt),
			fmt.Sprintf(`<input type="hidden" name="builderid" value="%d">`, rt),
			`id="force-force-all"`,
			fmt.Sprintf(`<tr id="br-%d" class="request-row">`, f.queued), "queued for later",
			fmt.Sprintf(`<form method="post" class="cancel-request" action="../buildrequests/%d/cancel">`, f.queued),
			`<tr id="build-3" class="build-row">`, `<tr id="build-1" class="build-row">`,
		}, []string{`name="builderid" value=""`}},
		{"/builders/runtests", 200, []string{"<h1>runtests"}, nil},
		{okPath, 200, []string{
			"<title>runtests #1 · Hello &lt;CI&gt;</title>",
			fmt.Sprintf(`data-live="builds/%d/* steps/*/*" data-buildid="%d"`, f.ok.ID, f.ok.ID),
			`<p id="build-result" class="result success"><span id="build-state">success · build done</span>`,
			`<tr id="step-0" class="step success">`, `<td class="step-state">update done</td>`,
			`<tr id="step-1" class="step running">`,
			fmt.Sprintf(`<a class="log-link" href="../../../builders/%d/builds/1/steps/1/logs/stdio">stdio</a> <small>(14)</small>`, rt),
			`<form method="post" id="rebuild-build" action="../../../builders/` + fmt.Sprint(rt) + `/builds/1/rebuild">`,
			`<tr id="prop-owner"><td>owner</td><td class="prop-value">alice</td><td class="prop-source">force</td></tr>`,
			`<td class="prop-value">7</td><td class="prop-source">Build</td>`,
			"<th>reason</th><td>test</td>",
		}, []string{`id="stop-build"`}},
		{fmt.Sprintf("/builders/%d/builds/%d", rt, f.running.Number), 200, []string{`id="stop-build"`, `class="result running"`}, nil},
		{fmt.Sprintf("/builders/%d/builds/%d", noop, f.built.Number), 200, []string{
			`<p id="responsible">Responsible users: <span class="author">Carol &lt;carol@example.org&gt;</span></p>`,
			fmt.Sprintf(`<tr id="change-%d">`, f.change.ID), `<a href="https://forge.example/r/0123">0123456789ab</a>`,
			"fix the frobnicator", `<div class="file">a.go</div>`, `<th>source</th><td> main 0123456789abcdef0123</td>`,
		}, nil},
		{fmt.Sprintf("/builders/%d/builds/1/steps/1/logs/stdio", rt), 200, []string{
			"<title>runtests #1 · test · stdio · Hello &lt;CI&gt;</title>",
			`<div class="log-line header" id="L1"><a class="ln" href="?first=1&amp;count=1000#L1">1</a><span class="lt">sh ./test.sh</span></div>`,
			`<div class="log-line stdout" id="L12"><a class="ln" href="?first=1&amp;count=1000#L12">12</a><span class="lt">PASS: hello</span></div>`,
			fmt.Sprintf(`<a id="log-raw" href="../../../../../../../api/v2/logs/%d/raw" download>`, f.stdio.ID),
			fmt.Sprintf(`data-logid="%d"`, f.stdio.ID), "lines 1–14 of",
		}, []string{"data-follow", `id="log-next"`}},
		{fmt.Sprintf("/builders/%d/builds/1/steps/test/logs/summary", rt), 200, []string{
			`<div class="log-line" id="L2">`, ">two</span>", "data-follow",
		}, nil},
		{"/workers", 200, []string{
			fmt.Sprintf(`<tr id="worker-%d" class="worker-row online">`, f.worker.ID),
			"<td>Your Name Here</td><td>bench</td>", `<span class="offline">not connected</span>`,
			fmt.Sprintf(`<form method="post" class="worker-pause" action="./workers/%d/pause">`, f.worker.ID),
			fmt.Sprintf(`<form method="post" class="worker-graceful" action="./workers/%d/graceful">`, f.worker.ID),
			fmt.Sprintf(`<a class="build-box running" href="./builders/%d/builds/3">runtests #3</a>`, rt),
		}, nil},
		{"/changes", 200, []string{
			fmt.Sprintf(`<tr id="change-%d" class="change-row">`, f.change.ID), "Carol &lt;carol@example.org&gt;",
			`<td title="fix the frobnicator`, ">fix the frobnicator</td>", "<td>bad</td>",
		}, []string{"javascript:"}},
		{"/pending", 200, []string{
			fmt.Sprintf(`<tr id="br-%d" class="request-row">`, f.queued),
			fmt.Sprintf(`<form method="post" class="cancel-request" action="./buildrequests/%d/cancel"><input type="hidden" name="next" value="pending">`, f.queued),
		}, []string{fmt.Sprintf(`id="br-%d"`, f.brid)}},
		{"/console", 200, []string{
			fmt.Sprintf(`<tr id="console-change-%d">`, f.change.ID),
			fmt.Sprintf(`<td class="cell warnings"><a href="./builders/%d/builds/%d"`, noop, f.built.Number),
		}, nil},
		{"/grid", 200, []string{
			fmt.Sprintf(`<tr id="grid-%d">`, rt),
			fmt.Sprintf(`<td class="cell running"><a href="./builders/%d/builds/3"`, rt),
			fmt.Sprintf(`<td class="cell success"><a href="./builders/%d/builds/1"`, rt),
		}, nil},
		{"/builders/nope", 404, []string{"no such builder nope", "<title>Not Found · Hello &lt;CI&gt;</title>"}, nil},
		{fmt.Sprintf("/builders/%d/builds/99", rt), 404, []string{"no such build 99"}, nil},
		{fmt.Sprintf("/builders/%d/builds/1/steps/1/logs/nope", rt), 404, []string{"no such log nope"}, nil},
		{fmt.Sprintf("/builders/%d/builds/1/steps/1/logs/stdio?count=x", rt), 400, []string{"count must be"}, nil},
	}
	for _, tt := range tests {
		status, page := f.page(t, tt.path)
		if status != tt.status {
			t.Errorf("GET %s: %d, want %d", tt.path, status, tt.status)
		}
		page = csrfRE.ReplaceAllString(page, "") // tested in csrf_test.go
		for _, want := range tt.want {
			if !strings.Contains(page, want) {
				t.Errorf("GET %s lacks %q:\n%s", tt.path, want, page)
			}
		}
		for _, not := range tt.not {
			if strings.Contains(page, not) {
				t.Errorf("GET %s has %q", tt.path, not)
			}
		}
		checkRelative(t, tt.path, page)
	}
}

func TestStatic(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	for path, want := range map[string]string{
		"/static/style.css": "text/css", "/static/live.js": "text/javascript",
		// Browsers ask for /favicon.ico on every page: an icon, not a 404.
		"/favicon.ico": "image/", "/static/favicon.ico": "image/",
	} {
		resp := must(http.Get(f.srv.URL + path))(t)
		body := readAll(t, resp)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) || len(body) < 100 {
			t.Errorf("GET %s: %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
}

func TestBuilderPaging(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	_, brids := must2(f.db.AddBuildset(store.NewBuildset{Reason: "many", BuilderIDs: []int64{f.noop.ID}}))(t)
	for range 60 {
		must(f.db.AddBuild(store.NewBuild{BuilderID: f.noop.ID, BuildRequestID: brids[f.noop.ID], WorkerID: f.worker.ID, MasterID: f.master.ID}))(t)
	}
	// noop has builds 1..61: pages of 25 are 61-37, 36-12, 11-1.
	tests := []struct {
		query      string
		first, end int
		pager      []string
	}{
		{"", 61, 37, []string{"page 1 of 3", `<a rel="next" class="next" href="?page=2">`}},
		{"?page=2", 36, 12, []string{"page 2 of 3", `href="?page=1"`, `href="?page=3"`}},
		{"?page=3", 11, 1, []string{"page 3 of 3", `href="?page=2"`}},
	}
	for _, tt := range tests {
		_, page := f.page(t, fmt.Sprintf("/builders/%d%s", f.noop.ID, tt.query))
		rows := regexp.MustCompile(`<tr id="build-(\d+)"`).FindAllStringSubmatch(page, -1)
		var got []string
		for _, r := range rows {
			got = append(got, r[1])
		}
		var want []string
		for n := tt.first; n >= tt.end; n-- {
			want = append(want, fmt.Sprint(n))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("page %q builds (-want +got):\n%s", tt.query, diff)
		}
		for _, p := range tt.pager {
			if !strings.Contains(page, p) {
				t.Errorf("page %q lacks %q", tt.query, p)
			}
		}
	}
	if _, page := f.page(t, fmt.Sprintf("/builders/%d?page=3", f.noop.ID)); strings.Contains(page, `rel="next"`) {
		t.Errorf("last page links to a next one")
	}
}

// TestBadPageParam: every page taking ?page= answers a value that is not
// a positive integer, or a page past the last, with a 400 saying why, as
// ?before= and ?first= do; a good page is still served.
func TestBadPageParam(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	for _, path := range []string{fmt.Sprintf("/builders/%d", f.noop.ID), "/changes"} {
		for _, tt := range []struct{ page, want string }{
			{"abc", `page must be a positive integer, not &#34;abc&#34;`},
			{"-1", `page must be a positive integer, not &#34;-1&#34;`},
			{"0", `page must be a positive integer, not &#34;0&#34;`},
			{"1.5", `page must be a positive integer, not &#34;1.5&#34;`},
			{"99999999999999999999", `page must be a positive integer`},
			{"99999999", "page 99999999 is past the last page (1)"},
			{"2", "page 2 is past the last page (1)"},
		} {
			status, body := f.page(t, path+"?page="+tt.page)
			if status != http.StatusBadRequest || !strings.Contains(body, tt.want) {
				t.Errorf("GET %s?page=%s: %d, want 400 saying %q in:\n%s", path, tt.page, status, tt.want, body)
			}
		}
		if status, _ := f.page(t, path+"?page=1"); status != http.StatusOK {
			t.Errorf("GET %s?page=1: %d, want 200", path, status)
		}
	}
}

// recordingStore is the store, recording how logs are read.
type recordingStore struct {
	*store.DB
	mu       chan struct{}
	ranges   [][2]int64
	wholeLog int
}

func (s *recordingStore) LogLines(id, first, last int64) (string, error) {
	s.mu <- struct{}{}
	s.ranges = append(s.ranges, [2]int64{first, last})
	<-s.mu
	return s.DB.LogLines(id, first, last)
}

func (s *recordingStore) WriteLog(id int64, w io.Writer, fn func(string) string) error {
	s.mu <- struct{}{}
	s.wholeLog++
	<-s.mu
	return s.DB.WriteLog(id, w, fn)
}

func TestLogPaging(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	const total = 200000
	l := must(f.db.AddLog(f.testStep.ID, "big", "s"))(t)
	var batch strings.Builder
	for i := 1; i <= total; i++ {
		fmt.Fprintf(&batch, "oline %d \x1b[32mok\x1b[0m\n", i)
		if i%20000 == 0 {
			must(f.db.AppendLog(l.ID, batch.String()))(t)
			batch.Reset()
		}
	}
	rs := &recordingStore{DB: f.db, mu: make(chan struct{}, 1)}
	srv := httptest.NewServer(New(Config{Store: rs}).Handler())
	t.Cleanup(srv.Close)
	f.srv = srv
	base := fmt.Sprintf("/builders/%d/builds/%d/steps/%d/logs/big", f.runtests.ID, f.ok.Number, f.testStep.Number)
	lineRE := regexp.MustCompile(`<div class="log-line stdout" id="L(\d+)">`)
	tests := []struct {
		query         string
		first, last   int
		wantRange     [2]int64
		want, notWant []string
	}{
		{"", total - 999, total, [2]int64{total - 1000, total - 1}, []string{
			"data-follow", `<a id="log-first" href="?first=1&amp;count=1000">`, `<a id="log-prev" rel="prev" href="?first=198001&amp;count=1000">`,
			`<span class="lt">line 200000 <span class="ansi-fg-2">ok</span></span>`,
		}, []string{`id="log-next"`}},
		{"?first=150001&count=100", 150001, 150100, [2]int64{150000, 150099}, []string{
			`<a id="log-next" rel="next" href="?first=150101&amp;count=100">`, `<a id="log-last" href="?count=100">`,
			`<a class="ln" href="?first=150001&amp;count=100#L150050">150050</a>`,
		}, []string{"data-follow"}},
		{"?first=1", 1, 1000, [2]int64{0, 999}, []string{`id="log-next"`}, []string{`id="log-prev"`}},
		{"?first=199990", 199990, total, [2]int64{199989, total - 1}, []string{"data-follow"}, nil},
		{"?first=1&count=50000", 1, api.MaxChunkLines, [2]int64{0, api.MaxChunkLines - 1}, []string{`href="?first=10001&amp;count=10000"`}, nil},
	}
	for _, tt := range tests {
		rs.ranges = nil
		status, page := f.page(t, base+tt.query)
		if status != 200 {
			t.Fatalf("GET %s: %d\n%s", tt.query, status, page)
		}
		rows := lineRE.FindAllStringSubmatch(page, -1)
		if len(rows) != tt.last-tt.first+1 || rows[0][1] != fmt.Sprint(tt.first) || rows[len(rows)-1][1] != fmt.Sprint(tt.last) {
			t.Errorf("%s: %d lines, want %d-%d", tt.query, len(rows), tt.first, tt.last)
		}
		rs.mu <- struct{}{}
		if diff := cmp.Diff([][2]int64{tt.wantRange}, rs.ranges); diff != "" {
			t.Errorf("%s: LogLines ranges (-want +got):\n%s", tt.query, diff)
		}
		<-rs.mu
		for _, w := range tt.want {
			if !strings.Contains(page, w) {
				t.Errorf("%s lacks %q", tt.query, w)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(page, w) {
				t.Errorf("%s has %q", tt.query, w)
			}
		}
	}
	// The script's fragment: only the lines, none past the end.
	_, frag := f.page(t, base+"?first=199999&count=1000&fragment=lines")
	if !strings.HasPrefix(frag, `<div class="log-line stdout" id="L199999">`) || strings.Count(frag, "log-line") != 2 || strings.Contains(frag, "<html") {
		t.Errorf("fragment:\n%s", frag)
	}
	if _, frag := f.page(t, base+"?first=200001&fragment=lines"); strings.TrimSpace(frag) != "" {
		t.Errorf("fragment past the end: %q", frag)
	}
	if rs.wholeLog != 0 {
		t.Errorf("the log pages read a whole log %d times", rs.wholeLog)
	}
}

func TestBadges(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	want := map[int]struct{ word, color string }{
		store.Success: {"passing", "#4c1"}, store.Warnings: {"warnings", "#dfb317"}, store.Failure: {"failing", "#e05d44"},
		store.Skipped: {"skipped", "#a4a61d"}, store.Exception: {"exception", "#007ec6"}, store.Retry: {"retry", "#007ec6"},
		store.Cancelled: {"cancelled", "#9f9f9f"},
	}
	for res, w := range want {
		b := must(f.db.EnsureBuilder(fmt.Sprintf("b%d", res)))(t)
		_, brids := must2(f.db.AddBuildset(store.NewBuildset{Reason: "r", BuilderIDs: []int64{b.ID}}))(t)
		bd := must(f.db.AddBuild(store.NewBuild{BuilderID: b.ID, BuildRequestID: brids[b.ID], WorkerID: f.worker.ID, MasterID: f.master.ID}))(t)
		check(t, f.db.FinishBuild(bd.ID, res, time.Time{}))
		// A running build after it does not change the badge.
		must(f.db.AddBuild(store.NewBuild{BuilderID: b.ID, BuildRequestID: brids[b.ID], WorkerID: f.worker.ID, MasterID: f.master.ID}))(t)
		_ = w
	}
	must(f.db.EnsureBuilder("fresh"))(t)
	type badge struct {
		path, left, right, color string
		status                   int
	}
	tests := []badge{
		{"/badges/fresh.svg", "fresh", "unknown", "#9f9f9f", 200},
		{"/badges/nope.svg", "nope", "not found", "#9f9f9f", 404},
		{"/badges/b0.svg?left_text=build", "build", "passing", "#4c1", 200},
	}
	for res, w := range want {
		tests = append(tests, badge{fmt.Sprintf("/badges/b%d.svg", res), fmt.Sprintf("b%d", res), w.word, w.color, 200})
	}
	for _, tt := range tests {
		resp := must(http.Get(f.srv.URL + tt.path))(t)
		body := readAll(t, resp)
		if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "image/svg+xml" {
			t.Errorf("GET %s: %d %q", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, s := range []string{
			`<svg xmlns="http://www.w3.org/2000/svg"`, fmt.Sprintf(`<title>%s: %s</title>`, tt.left, tt.right),
			fmt.Sprintf(`fill="%s"/>`, tt.color), fmt.Sprintf(`y="14">%s</text>`, tt.right),
		} {
			if !strings.Contains(body, s) {
				t.Errorf("GET %s lacks %q:\n%s", tt.path, s, body)
			}
		}
	}
}

func TestControlForms(t *testing.T) {
	t.Parallel()
	f := newUIServer(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path, site string, form url.Values) (*http.Response, string) {
		t.Helper()
		req := formRequest(t, f.srv.URL+path, form)
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		resp := must(client.Do(req))(t)
		return resp, readAll(t, resp)
	}
	rt, w := f.runtests.ID, f.worker.ID
	tests := []struct {
		path     string
		form     url.Values
		status   int
		location string
		call     string
	}{
		{fmt.Sprintf("/builders/%d/builds/3/stop", rt), url.Values{"reason": {"enough"}}, 303, fmt.Sprintf("../../../../builders/%d/builds/3", rt), fmt.Sprintf("stop %d %q", f.running.ID, "enough")},
		{"/builders/runtests/builds/1/rebuild", nil, 303, fmt.Sprintf("../../../../builders/%d", rt), fmt.Sprintf("rebuild %d", f.ok.ID)},
		{fmt.Sprintf("/buildrequests/%d/cancel", f.queued), url.Values{"next": {fmt.Sprintf("builders/%d", rt)}}, 303, fmt.Sprintf("../../builders/%d", rt), fmt.Sprintf("cancel %d %q", f.queued, "")},
		{fmt.Sprintf("/buildrequests/%d/cancel", f.queued), url.Values{"next": {"//evil.example/"}}, 303, "../../pending", fmt.Sprintf("cancel %d %q", f.queued, "")},
		{fmt.Sprintf("/buildrequests/%d/cancel", f.queued), url.Values{"next": {"../../x"}}, 303, "../../pending", fmt.Sprintf("cancel %d %q", f.queued, "")},
		{fmt.Sprintf("/workers/%d/pause", w), url.Values{"reason": {"maintenance"}}, 303, "../../workers", fmt.Sprintf("pause %d %q", w, "maintenance")},
		{fmt.Sprintf("/workers/%d/unpause", w), nil, 303, "../../workers", fmt.Sprintf("unpause %d", w)},
		{"/workers/bench-worker/graceful", nil, 303, "../../workers", fmt.Sprintf("graceful %d", w)},
		{fmt.Sprintf("/workers/%d/explode", w), nil, 404, "", ""},
		{"/workers/nobody/pause", nil, 404, "", ""},
		{fmt.Sprintf("/builders/%d/builds/99/stop", rt), nil, 404, "", ""},
		{"/buildrequests/999/cancel", nil, 404, "", ""},
	}
	for _, tt := range tests {
		f.ctl.calls = nil
		resp, body := post(tt.path, "same-origin", tt.form)
		if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
			t.Errorf("POST %s: %d Location %q, want %d %q\n%s", tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location, body)
		}
		var want []string
		if tt.call != "" {
			want = []string{tt.call}
		}
		if diff := cmp.Diff(want, f.ctl.calls); diff != "" {
			t.Errorf("POST %s: calls (-want +got):\n%s", tt.path, diff)
		}
	}

	// Another site's page may not post; a controller's refusal is shown.
	f.ctl.calls = nil
	if resp, _ := post(fmt.Sprintf("/workers/%d/pause", w), "cross-site", nil); resp.StatusCode != http.StatusForbidden || f.ctl.calls != nil {
		t.Errorf("cross-site pause: %d, calls %v", resp.StatusCode, f.ctl.calls)
	}
	f.ctl.err = fmt.Errorf("engine: %w", store.ErrNotFound)
	if resp, body := post(fmt.Sprintf("/workers/%d/pause", w), "", nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "engine: store: not found") {
		t.Errorf("refused pause: %d\n%s", resp.StatusCode, body)
	}

	// Without a controller the buttons are gone and the endpoints say so.
	plain := newTestServer(t)
	for _, p := range []string{"/workers", fmt.Sprintf("/builders/%d/builds/3", rt), "/pending"} {
		if _, page := plain.page(t, p); strings.Contains(page, `method="post"`) {
			t.Errorf("%s without a controller has a form", p)
		}
	}
	resp := must(http.DefaultClient.Do(formRequest(t, plain.srv.URL+fmt.Sprintf("/workers/%d/pause", w), nil)))(t)
	if body := readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("pause without a controller: %d\n%s", resp.StatusCode, body)
	}
}

func TestIndexPage(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	status, page := f.page(t, "/")
	if status != 200 {
		t.Fatalf("GET /: %d", status)
	}
	checkRelative(t, "/", page)
}

func TestForceForm(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// post sends form from origin ("http..."), or with Sec-Fetch-Site
	// set to origin.
	post := func(path, origin string, form url.Values) (*http.Response, string) {
		t.Helper()
		req := formRequest(t, f.srv.URL+path, form)
		if strings.HasPrefix(origin, "http") {
			req.Header.Set("Origin", origin)
		} else if origin != "" {
			req.Header.Set("Sec-Fetch-Site", origin)
		}
		resp := must(client.Do(req))(t)
		defer resp.Body.Close()
		return resp, string(must(io.ReadAll(resp.Body))(t))
	}

	before := len(must(f.db.Buildsets(nil))(t))
	resp, _ := post("/force/force-all", f.srv.URL, url.Values{"username": {"bob"}, "reason": {"from the page"}, "builderid": {fmt.Sprint(f.noop.ID)}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "../" {
		t.Fatalf("force form: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	bss := must(f.db.Buildsets(nil))(t)
	if len(bss) != before+1 {
		t.Fatalf("%d buildsets, want %d", len(bss), before+1)
	}
	bs := bss[len(bss)-1]
	brs := must(f.db.BuildRequests(storeFilter(bs.ID)))(t)
	if bs.Reason != "from the page" || len(brs) != 1 || brs[0].BuilderID != f.noop.ID {
		t.Errorf("buildset %+v, requests %+v", bs, brs)
	}

	// The form's token is the defence, not the Origin: buildbot_url's
	// origin and a proxy's that is neither it nor the Host are accepted.
	for _, o := range []string{"http://ci.example.org", "http://localhost:8999"} {
		if resp, body := post("/force/force-runtests", o, nil); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("force from %s: %d\n%s", o, resp.StatusCode, body)
		}
	}
	// A builder page's form forces that builder, and comes back to it.
	resp, _ = post(fmt.Sprintf("/builders/%d/force/force-all", f.runtests.ID), "", url.Values{"builderid": {fmt.Sprint(f.noop.ID)}})
	if want := fmt.Sprintf("../../../builders/%d", f.runtests.ID); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Errorf("builder force form: %d Location %q, want %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	bss = must(f.db.Buildsets(nil))(t)
	if brs := must(f.db.BuildRequests(storeFilter(bss[len(bss)-1].ID)))(t); len(brs) != 1 || brs[0].BuilderID != f.runtests.ID {
		t.Errorf("builder page forced %+v", brs)
	}
	// Its refusal shows the builder page again, error beside the field.
	resp, body := post(fmt.Sprintf("/builders/%d/force/force-runtests", f.runtests.ID), "", url.Values{"reason": {"forbidden"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `value="forbidden"`) || !strings.Contains(body, `<p class="error">reason: is forbidden</p>`) || !strings.Contains(body, "<h1>runtests") {
		t.Errorf("refused builder force: %d\n%s", resp.StatusCode, body)
	}
	checkRelative(t, "refused builder force", body)
	if !strings.Contains(body, `href="../../../builders"`) {
		t.Errorf("refused builder force: links not from its own path\n%s", body)
	}
	tests := []struct {
		name, path, origin string
		form               url.Values
		status             int
	}{
		{"other site", "/force/force-runtests", "cross-site", nil, http.StatusForbidden},
		{"sibling site", "/force/force-runtests", "same-site", nil, http.StatusForbidden},
		{"unknown scheduler", "/force/nope", "", nil, http.StatusNotFound},
		{"bad builderid", "/force/force-runtests", "", url.Values{"builderid": {"x"}}, http.StatusBadRequest},
		{"param error", "/force/force-runtests", "", url.Values{"reason": {"forbidden"}}, http.StatusBadRequest},
		{"unknown builder", "/builders/nope/force/force-runtests", "", nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		resp, body := post(tt.path, tt.origin, tt.form)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d: %s", tt.name, resp.StatusCode, tt.status, body)
		}
	}
	if got := len(must(f.db.Buildsets(nil))(t)); got != before+4 {
		t.Errorf("%d buildsets after refused forces, want %d", got, before+4)
	}
}
