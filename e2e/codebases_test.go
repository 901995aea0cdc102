package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const codebasesConfig = loopback + workerW1 + `
[www.change_hook.base]
codebase = "lib"

[[schedulers]]
type = "any_branch"
name = "both"
builder_names = ["up"]
  [schedulers.codebases.app]
  repository = "{{.App}}"
  branch = "master"
  [schedulers.codebases.lib]
  repository = "{{.Lib}}"
  branch = "master"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["down"]
  [schedulers.codebases.app]
  repository = "{{.App}}"
  branch = "master"
  [schedulers.codebases.lib]
  repository = "{{.Lib}}"
  branch = "master"

[[schedulers]]
type = "triggerable"
name = "down"
builder_names = ["down"]
  [schedulers.codebases.app]
  repository = "{{.App}}"
  branch = "master"
  [schedulers.codebases.lib]
  repository = "{{.Lib}}"
  branch = "master"

[[builders]]
name = "up"
worker_names = ["w1"]
  [[builders.steps]]
  type = "git"
  name = "app"
  repourl = "{{.App}}"
  codebase = "app"
  workdir = "app"
  [[builders.steps]]
  type = "git"
  name = "lib"
  repourl = "{{.Lib}}"
  codebase = "lib"
  workdir = "lib"
  [[builders.steps]]
  type = "shell"
  name = "cat"
  command = "cat ../app/hello.txt ../lib/hello.txt"
  [[builders.steps]]
  type = "trigger"
  name = "same"
  scheduler_names = ["down"]
  wait_for_finish = true
  [[builders.steps]]
  type = "trigger"
  name = "latest"
  scheduler_names = ["down"]
  wait_for_finish = true
  always_use_latest = true
  [[builders.steps]]
  type = "trigger"
  name = "pinned"
  scheduler_names = ["down"]
  wait_for_finish = true
    [[builders.steps.source_stamps]]
    codebase = "lib"
    repository = "{{.Lib}}"
    branch = "master"
    revision = "%(prop:pin)s"

[[builders]]
name = "down"
worker_names = ["w1"]
  [[builders.steps]]
  type = "git"
  name = "app"
  repourl = "{{.App}}"
  codebase = "app"
  workdir = "app"
  [[builders.steps]]
  type = "git"
  name = "lib"
  repourl = "{{.Lib}}"
  codebase = "lib"
  workdir = "lib"
  [[builders.steps]]
  type = "shell"
  name = "cat"
  command = "cat ../app/hello.txt ../lib/hello.txt"
`

// apiStamp is a source stamp as the API gives it.
type apiStamp struct {
	SSID       int64   `json:"ssid"`
	Codebase   string  `json:"codebase"`
	Branch     *string `json:"branch"`
	Revision   *string `json:"revision"`
	Repository string  `json:"repository"`
	Project    string  `json:"project"`
	CreatedAt  int64   `json:"created_at"`
	Patch      any     `json:"patch"`
}

type apiBuildset struct {
	BSID          int64      `json:"bsid"`
	ParentBuildID *int64     `json:"parent_buildid"`
	SourceStamps  []apiStamp `json:"sourcestamps"`
}

// TestCodebases: two local git repositories as two codebases. A change of
// lib (from a hook configured with codebase lib) builds lib at its
// revision and app at its latest, each checked out by its own git step in
// its own workdir on a real worker; got_revision is a table by codebase;
// the trigger steps pass the build's stamps on (the revisions it got), the
// latest of each codebase (always_use_latest), or the step's
// source_stamps; a force with codebase fields builds them; the API lists
// every stamp of a buildset in buildbot's shape and the build page shows
// one row per codebase.
func TestCodebases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	app := newRepo(t, e.Dir+"/app")
	lib := newRepo(t, e.Dir+"/lib")
	a1 := app.git("rev-parse", "HEAD")
	l1 := lib.git("rev-parse", "HEAD")
	a2 := app.commit("app two")
	l2 := lib.commit("lib two")
	lib.commit("lib three")
	e.writeConfigData(codebasesConfig, struct {
		*env
		App, Lib string
	}{e, app.dir, lib.dir})
	e.startMaster()
	e.startWorker("w1", "secret")

	// A change of lib at l2, from the hook: its codebase from the hook's
	// option. The build also carries a property pin = l1.
	mustRun(t, e.master, "sendchange", "--master", e.url("/"), "--who", "Me <me@example.com>",
		"--branch", "master", "--revision", l2, "--repository", lib.dir, "--property", "pin:"+l1, "hello.txt")
	all := e.waitBuilds(4) // up, and three triggered builds of down
	var up apiBuild
	var down []apiBuild
	for _, b := range all {
		if b.Number == 1 && slices.ContainsFunc(e.steps(b.BuildID), func(s apiStep) bool { return s.Name == "same" }) {
			up = b
		} else {
			down = append(down, b)
		}
		if b.Results == nil || *b.Results != 0 {
			t.Errorf("build %d: results %v, want success; steps %+v", b.BuildID, b.Results, e.steps(b.BuildID))
		}
	}
	if up.BuildID == 0 || len(down) != 3 {
		t.Fatalf("builds %+v: want the upstream one and three triggered", all)
	}

	// Each git step checked out its codebase into its own workdir: the
	// app at its latest (a2), lib at the change's revision (l2).
	if got := e.catOutput(up.BuildID); got != "oapp two\nolib two\n" {
		t.Errorf("upstream cat printed %q, want app two and lib two", got)
	}
	if diff := cmp.Diff(map[string]any{"app": a2, "lib": l2}, e.property(up.BuildID, "got_revision")); diff != "" {
		t.Errorf("got_revision (-want +got):\n%s", diff)
	}

	// The API lists the upstream buildset's two stamps in buildbot's shape.
	upBS := e.buildsetOf(up)
	str := func(s string) *string { return &s }
	want := []apiStamp{
		{Codebase: "app", Branch: str("master"), Revision: nil, Repository: app.dir},
		{Codebase: "lib", Branch: str("master"), Revision: str(l2), Repository: lib.dir},
	}
	if diff := cmp.Diff(want, withoutIDs(upBS.SourceStamps)); diff != "" {
		t.Errorf("upstream buildset's sourcestamps (-want +got):\n%s", diff)
	}
	for _, ss := range upBS.SourceStamps {
		var one struct{ Sourcestamps []apiStamp }
		e.get(fmt.Sprintf("/api/v2/sourcestamps/%d", ss.SSID), &one)
		if len(one.Sourcestamps) != 1 || one.Sourcestamps[0].Codebase != ss.Codebase {
			t.Errorf("/sourcestamps/%d: %+v, want the stamp of codebase %q", ss.SSID, one.Sourcestamps, ss.Codebase)
		}
	}

	// What each trigger passed on, and what the triggered build checked out.
	wantDown := map[string]struct {
		stamps []apiStamp
		cat    string
	}{
		"same": {[]apiStamp{
			{Codebase: "app", Branch: str("master"), Revision: str(a2), Repository: app.dir},
			{Codebase: "lib", Branch: str("master"), Revision: str(l2), Repository: lib.dir},
		}, "oapp two\nolib two\n"},
		"latest": {[]apiStamp{
			{Codebase: "app", Branch: str("master"), Repository: app.dir},
			{Codebase: "lib", Branch: str("master"), Repository: lib.dir},
		}, "oapp two\nolib three\n"},
		"pinned": {[]apiStamp{
			{Codebase: "app", Branch: str("master"), Repository: app.dir},
			{Codebase: "lib", Branch: str("master"), Revision: str(l1), Repository: lib.dir},
		}, "oapp two\nofirst\n"},
	}
	byTrigger := map[string]apiBuild{}
	for _, b := range down {
		bs := e.buildsetOf(b)
		for name, w := range wantDown {
			if cmp.Equal(w.stamps, withoutIDs(bs.SourceStamps)) {
				byTrigger[name] = b
			}
		}
		if bs.ParentBuildID == nil || *bs.ParentBuildID != up.BuildID {
			t.Errorf("triggered buildset %d: parent %v, want %d", bs.BSID, bs.ParentBuildID, up.BuildID)
		}
	}
	for name, w := range wantDown {
		b, ok := byTrigger[name]
		if !ok {
			var got [][]apiStamp
			for _, b := range down {
				got = append(got, withoutIDs(e.buildsetOf(b).SourceStamps))
			}
			t.Errorf("trigger %s: no triggered buildset has stamps %v; they have %v", name, w.stamps, got)
			continue
		}
		if got := e.catOutput(b.BuildID); got != w.cat {
			t.Errorf("trigger %s: the triggered build printed %q, want %q", name, got, w.cat)
		}
	}

	// The build page shows one row per codebase.
	page := e.getText(fmt.Sprintf("/builders/%d/builds/%d", up.BuilderID, up.Number))
	for _, row := range []string{"<th>source app</th><td>" + app.dir + " master </td>", "<th>source lib</th><td>" + lib.dir + " master " + l2 + "</td>"} {
		if !strings.Contains(page, row) {
			t.Errorf("build page lacks the row %q", row)
		}
	}

	// A force with codebase fields: the spec has lib's fields by buildbot's
	// full names; lib_revision pins lib, app takes its default branch.
	var fs struct {
		Forceschedulers []struct {
			AllFields []struct {
				Name   string `json:"name"`
				Label  string `json:"label"`
				Fields []struct {
					FullName string `json:"fullName"`
					Default  string `json:"default"`
				} `json:"fields"`
			} `json:"all_fields"`
		}
	}
	e.get("/api/v2/forceschedulers/force", &fs)
	var names []string
	for _, f := range fs.Forceschedulers[0].AllFields[1:] {
		names = append(names, f.Name+"="+f.Label)
		for _, x := range f.Fields {
			names = append(names, x.FullName+"="+x.Default)
		}
	}
	if diff := cmp.Diff([]string{
		"app=Codebase: app", "app_branch=master", "app_project=", "app_repository=" + app.dir, "app_revision=",
		"lib=Codebase: lib", "lib_branch=master", "lib_project=", "lib_repository=" + lib.dir, "lib_revision=",
	}, names); diff != "" {
		t.Errorf("force fields (-want +got):\n%s", diff)
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"lib_revision":%q,"app_revision":%q}}`, down[0].BuilderID, l1, a1)
	resp, err := http.Post(e.url("/api/v2/forceschedulers/force"), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var r struct{ Result []json.RawMessage }
	if resp.StatusCode != 200 || json.Unmarshal(raw, &r) != nil || len(r.Result) != 2 {
		t.Fatalf("force: %s %s", resp.Status, raw)
	}
	var brids map[string]int64
	if err := json.Unmarshal(r.Result[1], &brids); err != nil {
		t.Fatal(err)
	}
	forced := e.waitBuild(brids[fmt.Sprint(down[0].BuilderID)], 60*time.Second)
	if got := e.catOutput(forced.BuildID); got != "ofirst\nofirst\n" {
		t.Errorf("forced build printed %q, want both repositories' first commits", got)
	}
	// The page's form has the codebases' fields.
	form := e.getText(fmt.Sprintf("/builders/%d", down[0].BuilderID))
	for _, in := range []string{`name="lib_revision"`, `name="app_branch" size="10" value="master"`} {
		if !strings.Contains(form, in) {
			t.Errorf("builder page's force form lacks %s", in)
		}
	}
}

// buildsetOf returns the buildset of a build's request.
func (e *env) buildsetOf(b apiBuild) apiBuildset {
	e.t.Helper()
	var br struct {
		Buildrequests []struct {
			BuildsetID int64 `json:"buildsetid"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d", b.BuildRequestID), &br)
	if len(br.Buildrequests) != 1 {
		e.t.Fatalf("build request %d: %+v", b.BuildRequestID, br)
	}
	var bs struct{ Buildsets []apiBuildset }
	e.get(fmt.Sprintf("/api/v2/buildsets/%d", br.Buildrequests[0].BuildsetID), &bs)
	if len(bs.Buildsets) != 1 {
		e.t.Fatalf("buildset %d: %+v", br.Buildrequests[0].BuildsetID, bs)
	}
	return bs.Buildsets[0]
}

// withoutIDs returns stamps without their ids and times, checking that
// each has them.
func withoutIDs(stamps []apiStamp) []apiStamp {
	out := make([]apiStamp, len(stamps))
	for i, ss := range stamps {
		if ss.SSID == 0 || ss.CreatedAt == 0 {
			ss.Project = "missing id or created_at"
		}
		ss.SSID, ss.CreatedAt = 0, 0
		out[i] = ss
	}
	return out
}

// catOutput is the stdout of a build's step "cat".
func (e *env) catOutput(buildid int64) string {
	e.t.Helper()
	steps := e.steps(buildid)
	i := slices.IndexFunc(steps, func(s apiStep) bool { return s.Name == "cat" })
	if i < 0 {
		e.t.Fatalf("build %d has no step cat: %+v", buildid, steps)
	}
	return channelLines(e.stdio(steps[i].StepID), "o")
}

// String is the stamp for failure messages.
func (s apiStamp) String() string {
	deref := func(p *string) string {
		if p == nil {
			return "null"
		}
		return *p
	}
	return fmt.Sprintf("%s:%s@%s(%s)", s.Codebase, deref(s.Branch), deref(s.Revision), s.Repository)
}
