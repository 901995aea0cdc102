package web

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestForceFormsAsBuildbot: the username and worker_choice params have
// buildbot's labels when they have none of their own ("Your name:",
// "Worker"); a builder page's worker_choice lists that builder's workers
// only; a multiple_choice can be sent with no option chosen (an empty
// marker, as a bool's); a disabled scheduler's form is shown disabled.
func TestForceFormsAsBuildbot(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	idle := must(f.db.WorkerByName("idle-worker"))(t)
	check(t, f.db.SetWorkerConfiguredOn(idle.ID, []store.BuilderMaster{{BuilderID: f.noop.ID, MasterID: f.master.ID}}))
	scheds := scheduler.New([]config.Scheduler{
		{Type: "force", Name: "f", BuilderNames: []string{"runtests", "noop"}, Params: []config.ForceParam{
			{Name: "username", Type: "username"},
			{Name: "workername", Type: "worker_choice"},
			{Name: "suites", Label: "Suites", Type: "multiple_choice", Choices: []string{"unit", "race"}, Default: []string{"unit"}},
		}},
		{Type: "force", Name: "off", BuilderNames: []string{"runtests"}},
	}, f.db, nil, nil)
	check(t, scheds.SetEnabled("off", false))
	s := New(Config{Store: f.db, Forcer: scheds, MasterID: f.master.ID})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	jar := must(cookiejar.New(nil))(t)
	client := &http.Client{Jar: jar}
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(srv.URL + path)
		check(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	fs := apiElement(t, srv.URL, "/forceschedulers/f", "forceschedulers")
	labels := map[string]any{}
	var walk func(l []any)
	walk = func(l []any) {
		for _, x := range l {
			m := x.(map[string]any)
			if sub, ok := m["fields"].([]any); ok {
				walk(sub)
				continue
			}
			labels[m["name"].(string)] = m["label"]
		}
	}
	walk(fs["all_fields"].([]any))
	if labels["username"] != "Your name:" || labels["workername"] != "Worker" {
		t.Errorf("labels %v, want buildbot's \"Your name:\" and \"Worker\"", labels)
	}

	home := get("/")
	builder := get("/builders/" + strconv.FormatInt(f.runtests.ID, 10))
	for _, c := range []struct{ page, name, want string }{
		{home, "home", `<select name="workername"><option>-any-</option><option>bench-worker</option><option>idle-worker</option></select>`},
		{builder, "builder", `<select name="workername"><option>-any-</option><option>bench-worker</option></select>`},
		{home, "home", `<label>Your name: <input name="username"`},
		{home, "home", `<label>Worker:`},
		{home, "home", `</select><input type="hidden" name="suites" value="">`},
		{builder, "builder", `<fieldset class="disabled" disabled>`},
	} {
		if !strings.Contains(c.page, c.want) {
			t.Errorf("the %s page has no %s", c.name, c.want)
		}
	}
	if i := strings.Index(builder, `id="force-f"`); i < 0 || strings.Contains(builder[i:i+strings.Index(builder[i:], "</form>")], "disabled") {
		t.Errorf("the enabled scheduler's form is disabled or missing")
	}

	// No option chosen: the marker alone, the property an empty list (not
	// the default).
	m := csrfRE.FindStringSubmatch(home)
	if m == nil {
		t.Fatalf("no CSRF field on the home page")
	}
	form := url.Values{"csrf_token": {m[1]}, "builderid": {strconv.FormatInt(f.runtests.ID, 10)}, "suites": {""}}
	req := must(http.NewRequest("POST", srv.URL+"/force/f", strings.NewReader(form.Encode())))(t)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", srv.URL)
	resp, err := client.Do(req)
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		t.Fatalf("POST /force/f: %d", resp.StatusCode)
	}
	sets := must(f.db.Buildsets(nil))(t)
	if got := string(sets[len(sets)-1].Properties["suites"].Value); got != "[]" {
		t.Errorf("suites with no option chosen = %s, want []", got)
	}
}
