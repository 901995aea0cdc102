package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// masterBase is a config whose builder's steps start at line 13.
const masterBase = `
[[workers]]
name = "w"
password = "p"
properties = { os = "linux", cores = 8 }

[[builders]]
name = "b"
worker_names = ["w"]
properties = { suite = "full" }

`

func TestMasterStepsAndConditions(t *testing.T) {
	t.Parallel()
	src := strings.TrimPrefix(masterBase, "\n") + `
  [[builders.steps]]
  type = "set_property"
  property = "x"
  value = ["%(prop:branch)s", 3]
  do_step_if = "%(prop:branch)s == main"
  hide_step_if = true

  [[builders.steps]]
  type = "set_property_from_command"
  command = "git describe"
  property = "version"
  regex = 'v(\d+)'
  strip = false

  [[builders.steps]]
  type = "master_shell_command"
  command = ["touch", "x"]

  [[builders.steps]]
  type = "log_message"
  message = "built %(prop:x)s"

  [[builders.steps]]
  type = "shell"
  command = "make"
  warning_pattern = "^warn"
  suppress = [{ regex = "ignored" }, { file = "vendor/", regex = "." }]
  max_warn_count = 2
  warn_on_warnings = false
  flunk_on_warnings = true
`
	cfg := mustParse(t, "master.toml", src)
	b := cfg.Builders[0]
	if diff := cmp.Diff(map[string]any{"suite": "full"}, b.Properties); diff != "" {
		t.Errorf("builder properties (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"os": "linux", "cores": int64(8)}, cfg.Workers[0].Properties); diff != "" {
		t.Errorf("worker properties (-want +got):\n%s", diff)
	}
	s := b.Steps
	if s[0].Property != "x" || s[0].DoStepIf.String() != "%(prop:branch)s == main" || s[0].HideStepIf.String() != "true" {
		t.Errorf("set_property: %+v", s[0])
	}
	if s[1].Regex != `v(\d+)` || s[1].Strip || s[1].Command.Script != "git describe" {
		t.Errorf("set_property_from_command: %+v", s[1])
	}
	if s[2].Workdir != "" || s[2].Command.Argv[0] != "touch" {
		t.Errorf("master_shell_command: %+v", s[2])
	}
	if s[3].LogName != DefaultLogMessageName || s[3].Message != "built %(prop:x)s" {
		t.Errorf("log_message: %+v", s[3])
	}
	sh := s[4]
	if sh.WarningPattern != "^warn" || len(sh.Suppress) != 2 || sh.Suppress[1].File != "vendor/" ||
		sh.MaxWarnCount == nil || *sh.MaxWarnCount != 2 || !sh.QuietWarnings || !sh.FlunkOnWarnings {
		t.Errorf("shell warnings: %+v", sh)
	}
}

func TestMasterStepErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, steps string
		want        []string
	}{
		{
			name: "conditions",
			steps: `
  [[builders.steps]]
  type = "shell"
  command = "make"
  do_step_if = "%(prop:a)s =="
  hide_step_if = 3
`,
			want: []string{
				`master.toml:14: builders[0].steps[0].do_step_if: bad condition: column 14: expected an operand after "==", got end of condition`,
				`master.toml:15: builders[0].steps[0].hide_step_if: expected a condition string or a boolean, got integer`,
			},
		},
		{
			name: "missing keys and bad regexes",
			steps: `
  [[builders.steps]]
  type = "set_property"

  [[builders.steps]]
  type = "set_property_from_command"
  command = "x"
  property = "p"
  regex = "nogroup"

  [[builders.steps]]
  type = "shell"
  command = "make"
  warning_pattern = "("
  max_warn_count = -1

  [[builders.steps]]
  type = "log_message"
  message = "%(prop:x"
  command = "no"
`,
			want: []string{
				`master.toml:11: builders[0].steps[0].property: required`,
				`master.toml:11: builders[0].steps[0].value: required for a set_property step`,
				`master.toml:18: builders[0].steps[1].regex: needs a capture group: the property is the first group's match`,
				`master.toml:23: builders[0].steps[2].warning_pattern: bad regular expression: error parsing regexp: missing closing ): ` + "`(`",
				`master.toml:24: builders[0].steps[2].max_warn_count: must not be negative`,
				`master.toml:28: builders[0].steps[3].message: bad interpolation: column 1: unterminated "%(": no matching ")"`,
				`master.toml:29: builders[0].steps[3].command: not allowed in a log_message step`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := strings.TrimPrefix(masterBase, "\n") + strings.TrimPrefix(tt.steps, "\n")
			_, err := Parse("master.toml", []byte(src))
			if diff := cmp.Diff(tt.want, messages(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecretsProviders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	open := filepath.Join(dir, "open")
	for p, mode := range map[string]os.FileMode{good: 0o700, open: 0o755} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	base := strings.TrimPrefix(masterBase, "\n")
	cfg := mustParse(t, filepath.Join(dir, "master.toml"), base+`
[[secrets_providers]]
type = "file"
dirname = "good"

[[secrets_providers]]
type = "env"
prefix = "GBB_"
`)
	want := []SecretsProvider{{Type: "file", Dirname: good, Line: 12}, {Type: "env", Prefix: "GBB_", Line: 16}}
	if diff := cmp.Diff(want, cfg.SecretsProviders); diff != "" {
		t.Errorf("providers (-want +got):\n%s", diff)
	}
	_, err := Parse(filepath.Join(dir, "master.toml"), []byte(base+`
[[secrets_providers]]
type = "file"
dirname = "open"
`))
	msgs := messages(t, err)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "secrets_providers[0].dirname: secrets directory") || !strings.Contains(msgs[0], "too open") {
		t.Errorf("open directory: %q", msgs)
	}
}
