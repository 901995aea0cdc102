package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// TestForceParamKindsWeb: the fixed, username, multiple_choice and
// worker_choice params through the API (buildbot's field shapes), the
// JSON-RPC force (400 with the reason on a bad value) and the page's form.
func TestForceParamKindsWeb(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	scheds := scheduler.New([]config.Scheduler{{Type: "force", Name: "f", BuilderNames: []string{"runtests"},
		Params: []config.ForceParam{
			{Name: "release", Label: "release", Type: "fixed", Default: "yes"},
			{Name: "username", Label: "Who:", Type: "username", NeedEmail: true, Default: ""},
			{Name: "suites", Label: "Suites", Type: "multiple_choice", Choices: []string{"unit", "race"}, Default: []string{"unit"}},
			{Name: "workername", Label: "Worker", Type: "worker_choice", Default: ""},
		}}}, f.db, nil, nil)
	s := New(Config{Store: f.db, Forcer: scheds, MasterID: f.master.ID})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	fs := apiElement(t, srv.URL, "/forceschedulers/f", "forceschedulers")
	fields := map[string]map[string]any{}
	var walk func(l []any)
	walk = func(l []any) {
		for _, x := range l {
			m := x.(map[string]any)
			if sub, ok := m["fields"].([]any); ok {
				walk(sub)
				continue
			}
			fields[m["name"].(string)] = m
		}
	}
	walk(fs["all_fields"].([]any))
	pick := func(name string, keys ...string) map[string]any {
		out := map[string]any{}
		for _, k := range keys {
			out[k] = fields[name][k]
		}
		return out
	}
	for _, c := range []struct {
		name string
		got  map[string]any
		want map[string]any
	}{
		{"release", pick("release", "type", "hide", "default"), map[string]any{"type": "fixed", "hide": true, "default": "yes"}},
		{"username", pick("username", "type", "label", "need_email"), map[string]any{"type": "username", "label": "Who:", "need_email": true}},
		{"suites", pick("suites", "type", "multiple", "strict", "choices", "default"), map[string]any{"type": "list", "multiple": true, "strict": true, "choices": []any{"unit", "race"}, "default": []any{"unit"}}},
		{"workername", pick("workername", "type", "multiple", "strict", "choices"), map[string]any{"type": "list", "multiple": false, "strict": false, "choices": []any{"-any-", "bench-worker"}}},
	} {
		if d := cmp.Diff(c.want, c.got); d != "" {
			t.Errorf("field %s (-want +got):\n%s", c.name, d)
		}
	}
	if n := strings.Count(mustJSON(t, fs["all_fields"]), `"name":"username"`); n != 1 {
		t.Errorf("%d username fields, want 1 (the param replaces the default one)", n)
	}

	rpc := func(params string) (int, string) {
		body := `{"jsonrpc":"2.0","method":"force","id":1,"params":` + params + `}`
		resp, err := http.Post(srv.URL+"/api/v2/forceschedulers/f", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct{ params, reason string }{
		{`{"username":"Jo <jo@example.org>","release":"no"}`, "release: fixed to yes"},
		{`{"username":"jo"}`, "username: please fill in email address"},
		{`{"username":"Jo <jo@example.org>","suites":["unit","fuzz"]}`, `suites: \"fuzz\" is not one of`},
		{`{"username":"Jo <jo@example.org>","workername":"idle-worker"}`, `workername: worker \"idle-worker\" is not a worker of builder \"runtests\"`},
	} {
		code, body := rpc(c.params)
		if code != http.StatusBadRequest || !strings.Contains(body, c.reason) {
			t.Errorf("force %s: %d %s, want 400 with %q", c.params, code, body, c.reason)
		}
	}
	code, body := rpc(`{"username":"Jo <jo@example.org>","suites":["race","unit"],"workername":"bench-worker"}`)
	if code != http.StatusOK {
		t.Fatalf("force: %d %s", code, body)
	}
	var res struct{ Result []json.RawMessage }
	if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Result) != 2 {
		t.Fatalf("force result %s", body)
	}
	var bsid int64
	check(t, json.Unmarshal(res.Result[0], &bsid))
	bs := must(f.db.Buildset(bsid))(t)
	got := map[string]string{}
	for _, k := range []string{"release", "suites", "workername", "owner"} {
		got[k] = string(bs.Properties[k].Value)
	}
	want := map[string]string{"release": `"yes"`, "suites": `["race","unit"]`, "workername": `"bench-worker"`, "owner": `"Jo \u003cjo@example.org\u003e"`}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("properties (-want +got):\n%s", d)
	}

	// The page's form: the username field takes the param's label, the
	// fixed param is not shown, the multiple choice is a <select multiple>,
	// the worker choice a <select> of the builder's workers.
	resp, err := http.Get(srv.URL + "/")
	check(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{`<label>Who: <input name="username"`, `<select multiple name="suites"><option selected>unit</option><option>race</option></select>`,
		`<select name="workername"><option>-any-</option><option>bench-worker</option></select>`} {
		if !strings.Contains(string(page), w) {
			t.Errorf("the page has no %s", w)
		}
	}
	if strings.Contains(string(page), `name="release"`) {
		t.Errorf("the page shows the fixed param")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	check(t, err)
	return string(b)
}
