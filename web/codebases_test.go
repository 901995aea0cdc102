package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// The force form of a scheduler with codebases has a branch, revision,
// repository and project per codebase (buildbot's CodebaseParameter, with
// its full names), and posting it builds one stamp per codebase, through
// the real schedulers and store.
func TestForceFormCodebases(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	set := scheduler.New([]config.Scheduler{{Type: "force", Name: "cb", BuilderNames: []string{"runtests"}, Codebases: map[string]config.Codebase{
		"":    {Branch: "main"},
		"lib": {Branch: "stable", Repository: "lib.git"},
	}}}, f.db, nil, nil)
	srv := httptest.NewServer(New(Config{Store: f.db, Forcer: set}).Handler())
	defer srv.Close()
	f.srv = srv
	status, page := f.page(t, "/")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	for _, want := range []string{
		`<input name="branch" size="10" value="main">`, `<input name="revision" size="10" value="">`,
		`<legend>Codebase: lib</legend>`,
		`<input name="lib_branch" size="10" value="stable">`, `<input name="lib_revision" size="10" value="">`,
		`<input name="repository" size="10" value="">`, `<input name="project" size="10" value="">`,
		`<input name="lib_repository" size="10" value="lib.git">`, `<input name="lib_project" size="10" value="">`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	form := url.Values{"reason": {"r"}, "revision": {"r1"}, "lib_revision": {"l7"}, "lib_project": {"p"}, "builderid": {strconv.FormatInt(f.runtests.ID, 10)}}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(formRequest(t, srv.URL+"/force/cb", form))
	check(t, err)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	bss, err := f.db.Buildsets(nil)
	check(t, err)
	bs := bss[len(bss)-1]
	if bs.SchedulerName != "cb" {
		t.Fatalf("newest buildset %+v, want the forced one", bs)
	}
	var got []store.SourceStamp
	for _, ss := range bs.SourceStamps {
		ss.ID, ss.CreatedAt = 0, time.Time{}
		got = append(got, ss)
	}
	if diff := cmp.Diff([]store.SourceStamp{
		{Branch: "main", Revision: "r1"},
		{Codebase: "lib", Branch: "stable", Revision: "l7", Repository: "lib.git", Project: "p"},
	}, got); diff != "" {
		t.Errorf("stamps (-want +got):\n%s", diff)
	}
	if _, ok := bs.Properties["lib_revision"]; ok {
		t.Errorf("lib_revision became a property")
	}
}

// The force form of a scheduler without codebases has the four fields of
// buildbot's default codebase "": branch, revision, repository, project.
func TestForceFormFourFields(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	set := scheduler.New([]config.Scheduler{{Type: "force", Name: "plain", BuilderNames: []string{"runtests"}}}, f.db, nil, nil)
	srv := httptest.NewServer(New(Config{Store: f.db, Forcer: set}).Handler())
	defer srv.Close()
	f.srv = srv
	_, page := f.page(t, "/")
	for _, name := range []string{"branch", "revision", "repository", "project"} {
		if !strings.Contains(page, `<input name="`+name+`" size="10">`) {
			t.Errorf("the form has no %s field", name)
		}
	}
}
