package web

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func (f *fixture) page(t *testing.T, path string) (int, string) {
	t.Helper()
	resp := must(http.Get(f.srv.URL + path))(t)
	defer resp.Body.Close()
	return resp.StatusCode, string(must(io.ReadAll(resp.Body))(t))
}

var linkRE = regexp.MustCompile(`(?:href|action|src)="([^"]*)"`)

func TestIndexPage(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	status, page := f.page(t, "/")
	if status != 200 {
		t.Fatalf("GET /: %d", status)
	}
	for _, want := range []string{
		"<title>Hello &lt;CI&gt;</title>",
		fmt.Sprintf(`<a href="api/v2/builders/%d">runtests</a>`, f.runtests.ID),
		">noop<",
		`<td class="failure">failure</td>`,
		`<td class="success">success</td>`,
		`<td class="running">running</td>`,
		"build done",
		"building",
		"2026-11-28 ", // t0, in UTC
		`<form method="post" action="force/force-runtests">`,
		`<form method="post" action="force/force-all">`,
		fmt.Sprintf(`<option value="%d">noop</option>`, f.noop.ID),
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET / lacks %q:\n%s", want, page)
		}
	}
	links := linkRE.FindAllStringSubmatch(page, -1)
	if len(links) < 5 {
		t.Fatalf("only %d links in:\n%s", len(links), page)
	}
	for _, l := range links {
		u := l[1]
		if u == "https://example.org/hello/" { // the configured title_url
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "" || pu.Host != "" || strings.HasPrefix(u, "/") {
			t.Errorf("link %q is not relative", u)
		}
	}
}

func TestForceForm(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path, origin string, form url.Values) (*http.Response, string) {
		t.Helper()
		req := must(http.NewRequest("POST", f.srv.URL+path, strings.NewReader(form.Encode())))(t)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
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

	// The public URL's origin is accepted too.
	if resp, _ := post("/force/force-runtests", "http://ci.example.org", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("force from buildbot_url's origin: %d", resp.StatusCode)
	}
	tests := []struct {
		name, path, origin string
		form               url.Values
		status             int
	}{
		{"other site", "/force/force-runtests", "http://evil.example", nil, http.StatusForbidden},
		{"unknown scheduler", "/force/nope", "", nil, http.StatusNotFound},
		{"bad builderid", "/force/force-runtests", "", url.Values{"builderid": {"x"}}, http.StatusBadRequest},
		{"param error", "/force/force-runtests", "", url.Values{"reason": {"forbidden"}}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		resp, body := post(tt.path, tt.origin, tt.form)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d: %s", tt.name, resp.StatusCode, tt.status, body)
		}
	}
	if got := len(must(f.db.Buildsets(nil))(t)); got != before+2 {
		t.Errorf("%d buildsets after refused forces, want %d", got, before+2)
	}
}
