package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEnvLists: an env value may be a string or an array of strings (as
// buildbot's, joined with os.pathsep where the command runs), in a
// builder's env and a step's; the builder's goes under shell,
// set_property_from_command and shell_sequence steps, a step's own name
// winning whichever form either has.
func TestEnvLists(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", `[[workers]]
name = "w"
password = "p"
[[builders]]
name = "b"
worker_names = ["w"]
  [builders.env]
  PATH = ["/opt/bin", "${PATH}"]
  CC = "gcc"
  [[builders.steps]]
  type = "shell_sequence"
  commands = [{ command = "make" }]
  [[builders.steps]]
  type = "shell"
  command = "make"
  env = { PATH = "/only", CC = ["%(prop:cc)s"] }
  [[builders.steps]]
  type = "master_shell_command"
  command = "true"
`)
	b := cfg.Builders[0]
	type env struct {
		Env   map[string]string
		Lists map[string][]string
	}
	var got []env
	for _, s := range b.Steps {
		got = append(got, env{s.Env, s.EnvLists})
	}
	want := []env{
		{map[string]string{"CC": "gcc"}, map[string][]string{"PATH": {"/opt/bin", "${PATH}"}}},
		{map[string]string{"PATH": "/only"}, map[string][]string{"CC": {"%(prop:cc)s"}}},
		{nil, nil},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps' env (-want +got):\n%s", diff)
	}
	r, err := b.Steps[1].Render(func(s string) (string, error) { return strings.ReplaceAll(s, "%(prop:cc)s", "clang"), nil })
	if err != nil || !cmp.Equal(r.EnvLists, map[string][]string{"CC": {"clang"}}) {
		t.Errorf("rendered EnvLists %v, %v", r.EnvLists, err)
	}

	errs := parseErrors(t, `  [builders.env]
  A = 1
  B = ["x", 2]
  C = ["%(prop:x"]
`)
	for _, w := range []string{
		"builders[0].env.A: expected a string or an array of strings",
		"builders[0].env.B[1]: expected a string, got integer",
		"builders[0].env.C[0]: bad interpolation",
	} {
		if !containsPrefix(errs, w) {
			t.Errorf("no error %q in %q", w, errs)
		}
	}
}

// TestShellSequenceOptions: a shell_sequence takes decode_rc, and each of
// its commands warn_on_warnings and flunk_on_warnings, as buildbot's
// ShellSequence (a ShellMixin step) and ShellArg.
func TestShellSequenceOptions(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", schedulerHeader+`  [[builders.steps]]
  type = "shell_sequence"
  decode_rc = { "0" = "success", "3" = "warnings" }
  commands = [{ command = "a", warn_on_warnings = true }, { command = "b", flunk_on_warnings = true }]
`)
	s := cfg.Builders[0].Steps[0]
	if !cmp.Equal(s.DecodeRC, map[int]string{0: "success", 3: "warnings"}) {
		t.Errorf("decode_rc %v", s.DecodeRC)
	}
	if a, b := s.Commands[0], s.Commands[1]; !a.WarnOnWarnings || a.FlunkOnWarnings || b.WarnOnWarnings || !b.FlunkOnWarnings {
		t.Errorf("commands %+v", s.Commands)
	}
}

// TestMultipleUploadDotSources: a workersrc whose base name is "." or ".."
// would upload into masterdest itself or its parent: refused.
func TestMultipleUploadDotSources(t *testing.T) {
	t.Parallel()
	errs := parseErrors(t, `  [[builders.steps]]
  type = "multiple_file_upload"
  workersrcs = ["docs/..", ".", "ok", "docs/../"]
  masterdest = "up"
`)
	for _, w := range []string{
		`builders[0].steps[0].workersrcs: path "docs/..": its base name ".."`,
		`builders[0].steps[0].workersrcs: path ".": its base name "."`,
		`builders[0].steps[0].workersrcs: path "docs/../": its base name ".."`,
	} {
		if !containsPrefix(errs, w) {
			t.Errorf("no error %q in %q", w, errs)
		}
	}
	if containsPrefix(errs, `path "ok"`) {
		t.Errorf("ok refused: %q", errs)
	}
}

func containsPrefix(msgs []string, prefix string) bool {
	for _, m := range msgs {
		if strings.Contains(m, prefix) {
			return true
		}
	}
	return false
}

// A timed scheduler's skip_ci looks at changes only with only_if_changed:
// checkconfig says so.
func TestSkipCIWithoutOnlyIfChangedWarns(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", schedulerHeader+`[[schedulers]]
type = "periodic"
name = "p"
period = "1h"
builder_names = ["b"]
skip_ci = ["NOBUILD"]
[[schedulers]]
type = "periodic"
name = "q"
period = "1h"
builder_names = ["b"]
only_if_changed = true
skip_ci = ["NOBUILD"]
`)
	var got []string
	for _, w := range cfg.Warnings() {
		if strings.Contains(w, "skip_ci") {
			got = append(got, w)
		}
	}
	want := []string{"master.toml:7: schedulers[0].skip_ci: has no effect without only_if_changed = true: the scheduler builds at its times whatever the commit messages say"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("skip_ci warnings (-want +got):\n%s", diff)
	}
}
