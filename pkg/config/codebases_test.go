package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/interpolate"
)

// codebasesConfig has two pollers, a hook, schedulers and builders with
// codebases: what a two-repository installation writes.
const codebasesConfig = `[[workers]]
name = "w"
password = "p"

[www.change_hook.github]
codebase = "app"

[[change_source]]
type = "git_poller"
repourl = "https://example.org/app.git"
codebase = "app"

[[change_source]]
type = "git_poller"
repourl = "https://example.org/lib.git"
codebase = "lib"

[[schedulers]]
type = "any_branch"
name = "all"
builder_names = ["b"]
  [schedulers.codebases.app]
  repository = "https://example.org/app.git"
  branch = "main"
  [schedulers.codebases.lib]
  repository = "https://example.org/lib.git"
  branch = "stable"
  revision = "v1"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["b"]
codebases = ["app", "lib"]

[[schedulers]]
type = "triggerable"
name = "down"
builder_names = ["b"]
codebases = { "" = {} }

[[builders]]
name = "b"
worker_names = ["w"]
  [[builders.steps]]
  type = "git"
  repourl = "https://example.org/app.git"
  codebase = "app"
  workdir = "app"
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["down"]
  always_use_latest = true
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["down"]
    [[builders.steps.source_stamps]]
    codebase = "lib"
    branch = "%(prop:branch)s"
    revision = "v2"
`

func TestCodebasesConfig(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("master.toml", []byte(codebasesConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{cfg.ChangeSources[0].Codebase, cfg.ChangeSources[1].Codebase}; !cmp.Equal(got, []string{"app", "lib"}) {
		t.Errorf("pollers' codebases %q", got)
	}
	if got := cfg.WWW.ChangeHooks["github"].Codebase; got != "app" {
		t.Errorf("hook codebase %q, want app", got)
	}
	want := []map[string]Codebase{
		{"app": {Repository: "https://example.org/app.git", Branch: "main"}, "lib": {Repository: "https://example.org/lib.git", Branch: "stable", Revision: "v1"}},
		{"app": {}, "lib": {}},
		{"": {}},
	}
	for i, w := range want {
		if diff := cmp.Diff(w, cfg.Schedulers[i].Codebases); diff != "" {
			t.Errorf("schedulers[%d].codebases (-want +got):\n%s", i, diff)
		}
	}
	steps := cfg.Builders[0].Steps
	if steps[0].Codebase != "app" || steps[0].Workdir != "app" {
		t.Errorf("git step codebase %q workdir %q", steps[0].Codebase, steps[0].Workdir)
	}
	if !steps[1].AlwaysUseLatest || steps[1].UpdateSourceStamp {
		t.Errorf("always_use_latest step: AlwaysUseLatest %v UpdateSourceStamp %v, want true false", steps[1].AlwaysUseLatest, steps[1].UpdateSourceStamp)
	}
	if diff := cmp.Diff([]TriggerSourceStamp{{Codebase: "lib", Branch: "%(prop:branch)s", Revision: "v2"}}, steps[2].SourceStamps); diff != "" {
		t.Errorf("source_stamps (-want +got):\n%s", diff)
	}
	// source_stamps are rendered when the step runs.
	r, err := steps[2].Render(func(s string) (string, error) { return strings.ReplaceAll(s, "%(prop:branch)s", "dev"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if r.SourceStamps[0].Branch != "dev" || steps[2].SourceStamps[0].Branch != "%(prop:branch)s" {
		t.Errorf("rendered %q, original %q", r.SourceStamps[0].Branch, steps[2].SourceStamps[0].Branch)
	}
}

func TestCodebasesConfigErrors(t *testing.T) {
	t.Parallel()
	src := strings.TrimPrefix(triggerBase, "\n") + `
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["down"]
  always_use_latest = true
  update_source_stamp = false
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["down"]
  always_use_latest = true
    [[builders.steps.source_stamps]]
    codebase = "a"
    tag = "x"
    [[builders.steps.source_stamps]]
    codebase = "a"
    branch = "%(prop:oops"
  [[builders.steps]]
  type = "shell"
  command = "make"
  codebase = "a"

[[schedulers]]
type = "triggerable"
name = "down"
builder_names = ["up"]
  [schedulers.codebases.a]
  branch = 3
  tag = "v1"

[[schedulers]]
type = "single_branch"
name = "sb"
branch = "main"
builder_names = ["up"]
codebases = ["a", "a", 1]

[[schedulers]]
type = "force"
name = "f2"
builder_names = ["up"]
codebases = []

[[schedulers]]
type = "periodic"
name = "p"
period = "1h"
builder_names = ["up"]
codebases = "a"
`
	cfg, err := Parse("master.toml", []byte(src))
	if cfg != nil {
		t.Errorf("Parse returned a config with an error")
	}
	want := []string{
		`master.toml:17: builders[0].steps[0].always_use_latest: set either always_use_latest or update_source_stamp, not both`,
		`master.toml:22: builders[0].steps[1].always_use_latest: set either always_use_latest or source_stamps, not both`,
		`master.toml:25: builders[0].steps[1].source_stamps[0].tag: unknown key`,
		`master.toml:27: builders[0].steps[1].source_stamps[1].codebase: codebase "a" given twice`,
		`master.toml:28: builders[0].steps[1].source_stamps[1].branch: bad interpolation: ` + interpolationError(t, "%(prop:oops"),
		`master.toml:32: builders[0].steps[2].codebase: not allowed in a shell step`,
		`master.toml:39: schedulers[1].codebases.a.branch: expected a string, got integer`,
		`master.toml:40: schedulers[1].codebases.a.tag: unknown codebase key (want branch, repository or revision)`,
		`master.toml:47: schedulers[2].codebases[1]: codebase "a" named twice`,
		`master.toml:47: schedulers[2].codebases[2]: expected a codebase name (a string), got integer`,
		`master.toml:53: schedulers[3].codebases: must name at least one codebase (leave it out for the one codebase "")`,
		`master.toml:60: schedulers[4].codebases: expected a table of codebases or an array of codebase names, got string`,
	}
	got := messages(t, err)
	if diff := cmp.Diff(sortedCopy(want), sortedCopy(got)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// interpolationError is the error interpolate.Parse gives s.
func interpolationError(t *testing.T, s string) string {
	t.Helper()
	_, err := interpolate.Parse(s)
	if err == nil {
		t.Fatalf("%q parses", s)
	}
	return err.Error()
}
