package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// paramForcer declares custom parameters and refuses a count that is not
// "3", as a scheduler's validation would.
type paramForcer struct{ got scheduler.ForceRequest }

var testParams = []scheduler.ForceParam{
	{Name: "note", Label: "Note", Type: "string", Default: "hi", Regex: "^[a-z]*$"},
	{Name: "log", Type: "text", Default: ""},
	{Name: "count", Label: "Count", Type: "int", Default: int64(2), Required: true},
	{Name: "dry", Type: "bool", Default: true},
	{Name: "os", Type: "choice", Default: "linux", Choices: []string{"linux", "freebsd"}},
}

func (f *paramForcer) ForceSchedulers() []scheduler.ForceInfo {
	return []scheduler.ForceInfo{{Name: "custom", BuilderNames: []string{"runtests"}, Reason: "because", Params: testParams}}
}

func (f *paramForcer) Force(ctx context.Context, name string, req scheduler.ForceRequest) (int64, map[int64]int64, error) {
	f.got = req
	if req.Properties["count"] != "3" {
		return 0, nil, &scheduler.ParamError{Field: "count", Msg: "must be 3"}
	}
	return 1, nil, nil
}

func TestForceParamFields(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	srv := httptest.NewServer(New(Config{Store: f.db, Forcer: &paramForcer{}}).Handler())
	defer srv.Close()
	f.srv = srv
	objs, _ := f.getOK(t, "/api/v2/forceschedulers/custom", "forceschedulers")
	fields := objs[0]["all_fields"].([]any)
	if len(fields) != 2+len(testParams) {
		t.Fatalf("%d fields", len(fields))
	}
	reason := fields[0].(map[string]any)["fields"].([]any)[1].(map[string]any)
	if reason["default"] != "because" {
		t.Errorf("reason default %v", reason["default"])
	}
	base := []string{"autopopulate", "default", "fullName", "hide", "label", "maxsize", "multiple", "name", "regex", "required", "tablabel", "tooltip", "type"}
	want := []struct {
		typ   string
		extra []string
		def   any
	}{
		{"text", []string{"size"}, "hi"},
		{"textarea", []string{"cols", "rows", "size"}, ""},
		{"int", []string{"size"}, float64(2)},
		{"bool", nil, true},
		{"list", []string{"choices", "strict"}, "linux"},
	}
	for i, w := range want {
		fl := fields[2+i].(map[string]any)
		wantKeys := append(append([]string{}, base...), w.extra...)
		if diff := cmp.Diff(sortedStrings(wantKeys), keys(fl)); diff != "" {
			t.Errorf("field %d keys:\n%s", i, diff)
		}
		if fl["type"] != w.typ || fl["default"] != w.def || fl["name"] != testParams[i].Name {
			t.Errorf("field %d: type %v default %v name %v", i, fl["type"], fl["default"], fl["name"])
		}
	}
	if fields[2].(map[string]any)["regex"] != "^[a-z]*$" || fields[4].(map[string]any)["required"] != true {
		t.Errorf("regex/required not rendered: %v %v", fields[2], fields[4])
	}
}

func sortedStrings(s []string) []string {
	m := map[string]any{}
	for _, k := range s {
		m[k] = nil
	}
	return keys(m)
}

func TestForceParamForm(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	pf := &paramForcer{}
	srv := httptest.NewServer(New(Config{Store: f.db, Forcer: pf}).Handler())
	defer srv.Close()
	f.srv = srv
	status, page := f.page(t, "/")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	for _, want := range []string{
		`<input name="note" size="10" value="hi" pattern="^[a-z]*$">`,
		`<textarea name="log" cols="80" rows="4">`,
		`<input type="number" step="1" name="count" value="2" required>`,
		`<input type="checkbox" name="dry" checked><input type="hidden" name="dry" value="false">`,
		`<select name="os"><option selected>linux</option><option>freebsd</option></select>`,
		`value="because"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	form := url.Values{"reason": {"r"}, "note": {"abc"}, "count": {"x7"}, "dry": {"false"}, "os": {"freebsd"}}
	resp, err := http.DefaultClient.Do(formRequest(t, srv.URL+"/force/custom", form))
	check(t, err)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{
		`name="count" value="x7" required>`, `<span class="error">count: must be 3</span>`,
		`<select name="os"><option>linux</option><option selected>freebsd</option></select>`,
		`<input type="checkbox" name="dry"><input`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("refused form lacks %s", want)
		}
	}
	if diff := cmp.Diff(map[string]any{"note": "abc", "count": "x7", "dry": "false", "os": "freebsd"}, pf.got.Properties); diff != "" {
		t.Errorf("properties sent:\n%s", diff)
	}
	form.Set("count", "3")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = client.Do(formRequest(t, srv.URL+"/force/custom", form))
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("good form: status %d", resp.StatusCode)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	return string(must(io.ReadAll(resp.Body))(t))
}
