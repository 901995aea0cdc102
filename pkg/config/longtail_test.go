package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parseErrors parses schedulerHeader+src, which must fail, and returns
// its error messages.
func parseErrors(t *testing.T, src string) []string {
	t.Helper()
	cfg, err := Parse("master.toml", []byte(schedulerHeader+src))
	if cfg != nil {
		t.Errorf("Parse returned a config with an error")
	}
	return messages(t, err)
}

func TestSkipCI(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", schedulerHeader+`[[schedulers]]
type = "any_branch"
name = "default"
builder_names = ["b"]
[[schedulers]]
type = "single_branch"
name = "mine"
branch = "main"
builder_names = ["b"]
skip_ci = ["NOBUILD"]
[[schedulers]]
type = "nightly"
name = "none"
builder_names = ["b"]
only_if_changed = true
skip_ci = []
`)
	var got [][]string
	for _, s := range cfg.Schedulers {
		got = append(got, s.SkipCIPatterns())
	}
	want := [][]string{DefaultSkipCI, {"NOBUILD"}, {}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("skip_ci patterns (-want +got):\n%s", diff)
	}

	errs := parseErrors(t, `[[schedulers]]
type = "any_branch"
name = "a"
builder_names = ["b"]
skip_ci = ["ok", "(("]
[[schedulers]]
type = "force"
name = "f"
builder_names = ["b"]
skip_ci = ["x"]
[[schedulers]]
type = "any_branch"
name = "c"
builder_names = ["b"]
skip_ci = "[ci skip]"
`)
	want2 := []string{
		"master.toml:11: schedulers[0].skip_ci: bad pattern \"((\": error parsing regexp: missing closing ): `((`",
		`master.toml:16: schedulers[1].skip_ci: not for a force scheduler`,
		`master.toml:21: schedulers[2].skip_ci: expected an array of strings, got string`,
	}
	if diff := cmp.Diff(want2, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestDependentAndNightlyTriggerable(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", schedulerHeader+`[[schedulers]]
type = "single_branch"
name = "up"
branch = "main"
builder_names = ["b"]
[[schedulers]]
type = "dependent"
name = "dep"
upstream = "up"
builder_names = ["b"]
[[schedulers]]
type = "nightly_triggerable"
name = "nt"
hour = 3
minute = 15
builder_names = ["b"]
[[builders]]
name = "t"
worker_names = ["w"]
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["nt"]
`)
	got := []Scheduler{cfg.Schedulers[1], cfg.Schedulers[2]}
	want := []Scheduler{
		{Type: "dependent", Name: "dep", Upstream: "up", BuilderNames: []string{"b"}, Line: 12},
		{Type: "nightly_triggerable", Name: "nt", Cron: "15 3 * * *", BuilderNames: []string{"b"}, Line: 17},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schedulers (-want +got):\n%s", diff)
	}

	errs := parseErrors(t, `[[schedulers]]
type = "dependent"
name = "d1"
builder_names = ["b"]
[[schedulers]]
type = "dependent"
name = "d2"
upstream = "nosuch"
builder_names = ["b"]
[[schedulers]]
type = "dependent"
name = "d3"
upstream = "d3"
branch = "main"
builder_names = ["b"]
[[schedulers]]
type = "nightly_triggerable"
name = "nt"
only_if_changed = true
cron = "bad"
builder_names = ["b"]
`)
	want2 := []string{
		`master.toml:7: schedulers[0].upstream: required`,
		`master.toml:14: schedulers[1].upstream: unknown scheduler "nosuch"`,
		`master.toml:19: schedulers[2].upstream: a scheduler cannot depend on itself`,
		`master.toml:20: schedulers[2].branch: not for a dependent scheduler`,
		`master.toml:25: schedulers[3].only_if_changed: not for a nightly_triggerable scheduler`,
		`master.toml:26: schedulers[3].cron: expected exactly 5 fields, found 1: [bad]`,
	}
	if diff := cmp.Diff(want2, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestForceParamKinds(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", schedulerHeader+`[[schedulers]]
type = "force"
name = "f"
builder_names = ["b"]
  [[schedulers.params]]
  name = "release"
  type = "fixed"
  default = 1
  [[schedulers.params]]
  name = "username"
  type = "username"
  label = "Who:"
  need_email = false
  [[schedulers.params]]
  name = "suites"
  type = "multiple_choice"
  choices = ["unit", "race"]
  default = ["race"]
  [[schedulers.params]]
  name = "workername"
  type = "worker_choice"
`)
	want := []ForceParam{
		{Name: "release", Label: "release", Type: "fixed", Default: int64(1), Line: 11},
		{Name: "username", Label: "Who:", Type: "username", Default: "", Line: 15},
		{Name: "suites", Label: "suites", Type: "multiple_choice", Choices: []string{"unit", "race"}, Default: []string{"race"}, Line: 20},
		{Name: "workername", Label: "workername", Type: "worker_choice", Default: "", Line: 25},
	}
	if diff := cmp.Diff(want, cfg.Schedulers[0].Params); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}

	errs := parseErrors(t, `[[schedulers]]
type = "force"
name = "f"
builder_names = ["b"]
  [[schedulers.params]]
  name = "release"
  type = "fixed"
  [[schedulers.params]]
  name = "owner"
  type = "username"
  [[schedulers.params]]
  name = "suites"
  type = "multiple_choice"
  choices = ["unit"]
  default = ["race"]
  need_email = true
  [[schedulers.params]]
  name = "w"
  type = "worker_choice"
  [[schedulers.params]]
  name = "username"
  type = "string"
`)
	want2 := []string{
		`master.toml:11: schedulers[0].params[0].default: required for type = "fixed"`,
		`master.toml:15: schedulers[0].params[1].name: a username param must be named "username"`,
		`master.toml:21: schedulers[0].params[2].default: "race" is not one of the choices`,
		`master.toml:22: schedulers[0].params[2].need_email: only for type = "username"`,
		`master.toml:24: schedulers[0].params[3].name: a worker_choice param must be named "workername"`,
		`master.toml:27: schedulers[0].params[4].name: "username" is reserved`,
	}
	if diff := cmp.Diff(want2, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestMoreSteps(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", `[[workers]]
name = "w"
password = "p"
[[builders]]
name = "b"
worker_names = ["w"]
  [[builders.steps]]
  type = "shell_sequence"
  commands = [{ command = "make" }, { command = ["make", "check"], logname = "check", halt_on_failure = true, flunk_on_failure = false, warn_on_failure = true }, { command = "x" }]
  [[builders.steps]]
  type = "json_string_download"
  s = { a = [1, "%(prop:x)s"] }
  workerdest = "v.json"
  [[builders.steps]]
  type = "multiple_file_upload"
  workersrcs = ["dist/*.tar.[a-z]z", "README"]
  glob = true
  masterdest = "up"
`)
	steps := cfg.Builders[0].Steps
	wantCmds := []ShellArg{
		{Command: Command{Script: "make"}, LogName: "stdio", FlunkOnFailure: true, Line: 9},
		{Command: Command{Argv: []string{"make", "check"}}, LogName: "check", HaltOnFailure: true, WarnOnFailure: true, Line: 9},
		{Command: Command{Script: "x"}, LogName: "stdio-3", FlunkOnFailure: true, Line: 9},
	}
	if d := cmp.Diff(wantCmds, steps[0].Commands); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]any{"a": []any{int64(1), "%(prop:x)s"}}, steps[1].Value); d != "" || steps[1].WorkerDest != "v.json" {
		t.Errorf("json_string_download: %s %s", d, steps[1].WorkerDest)
	}
	if !steps[2].Glob || !cmp.Equal(steps[2].WorkerSrcs, []string{"dist/*.tar.[a-z]z", "README"}) || steps[2].MasterDest != "up" {
		t.Errorf("multiple_file_upload: %+v", steps[2])
	}

	errs := parseErrors(t, `[[builders.steps]]
type = "shell_sequence"
commands = [{ command = "a", logname = "l" }, { logname = "l", hello = 1 }]
[[builders.steps]]
type = "shell_sequence"
[[builders.steps]]
type = "json_string_download"
workerdest = "../x"
command = "x"
[[builders.steps]]
type = "multiple_file_upload"
workersrcs = ["/etc/passwd", "a[!;]"]
glob = true
masterdest = "up"
`)
	// schedulerHeader's builder b takes these steps (its table is the
	// last [[builders]]), from line 7.
	want2 := []string{
		`master.toml:9: builders[0].steps[0].commands[1].command: required`,
		`master.toml:9: builders[0].steps[0].commands[1].logname: log "l" is already command 1's`,
		`master.toml:9: builders[0].steps[0].commands[1].hello: unknown key`,
		`master.toml:10: builders[0].steps[1].commands: required for a shell_sequence step`,
		`master.toml:12: builders[0].steps[2].s: required for a json_string_download step`,
		`master.toml:14: builders[0].steps[2].workerdest: path "../x" is absolute or leaves its directory`,
		`master.toml:15: builders[0].steps[2].command: not allowed in a json_string_download step`,
		`master.toml:18: builders[0].steps[3].workersrcs: path "/etc/passwd" is absolute or leaves its directory`,
		`master.toml:18: builders[0].steps[3].workersrcs: bad pattern "a[!;]" (a bracket expression may hold letters, digits, '.', '_' and '-', after a ^)`,
	}
	if diff := cmp.Diff(want2, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestRenderShellSequence(t *testing.T) {
	t.Parallel()
	s := Step{Type: "shell_sequence", Commands: []ShellArg{
		{Command: Command{Argv: []string{"make", "%(prop:target)s"}}, LogName: "make %(prop:target)s"},
		{Command: Command{Script: "echo %(prop:target)s"}, LogName: "stdio-2"},
	}}
	out, err := s.Render(func(v string) (string, error) { return strings.ReplaceAll(v, "%(prop:target)s", "all"), nil })
	if err != nil {
		t.Fatal(err)
	}
	want := []ShellArg{
		{Command: Command{Argv: []string{"make", "all"}}, LogName: "make all"},
		{Command: Command{Script: "echo all"}, LogName: "stdio-2"},
	}
	if d := cmp.Diff(want, out.Commands); d != "" {
		t.Errorf("rendered (-want +got):\n%s", d)
	}
	if s.Commands[0].Command.Argv[1] != "%(prop:target)s" {
		t.Errorf("Render changed the step it was given")
	}
}
