package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// schedulerHeader is a config with a builder b, to which the tests append
// [[schedulers]] tables from line 7.
const schedulerHeader = `[[workers]]
name = "w"
password = "p"
[[builders]]
name = "b"
worker_names = ["w"]
`

func TestSchedulers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		toml string
		want Scheduler
	}{
		{
			name: "single_branch with every filter key",
			toml: `
type = "single_branch"
name = "s"
builder_names = ["b"]
branch = "main"
branch_re = "^rel-"
project = "p"
repository = "r"
category = "c"
codebase = "cb"
files = ["src/**/*.go", "*.md"]
only_important = true
tree_stable_timer = "2m"
properties = { a = 1, b = "x" }
`,
			want: Scheduler{
				Type: "single_branch", Name: "s", BuilderNames: []string{"b"},
				Branch: "main", BranchRe: "^rel-", Project: "p", Repository: "r", Category: "c", Codebase: "cb",
				Files: []string{"src/**/*.go", "*.md"}, OnlyImportant: true,
				TreeStableTimer: Duration{2 * time.Minute},
				Properties:      map[string]any{"a": int64(1), "b": "x"},
			},
		},
		{
			name: "single_branch with a filter but no branch",
			toml: `
type = "single_branch"
name = "s"
builder_names = ["b"]
repository = "r"
`,
			want: Scheduler{Type: "single_branch", Name: "s", BuilderNames: []string{"b"}, Repository: "r"},
		},
		{
			name: "any_branch with a branch filter",
			toml: `
type = "any_branch"
name = "s"
builder_names = ["b"]
branch_re = "feature/"
`,
			want: Scheduler{Type: "any_branch", Name: "s", BuilderNames: []string{"b"}, BranchRe: "feature/"},
		},
		{
			name: "periodic",
			toml: `
type = "periodic"
name = "s"
builder_names = ["b"]
period = "1h"
only_if_changed = true
branch = "main"
`,
			want: Scheduler{Type: "periodic", Name: "s", BuilderNames: []string{"b"}, Period: Duration{time.Hour}, OnlyIfChanged: true, Branch: "main"},
		},
		{
			name: "nightly defaults",
			toml: `
type = "nightly"
name = "s"
builder_names = ["b"]
`,
			want: Scheduler{Type: "nightly", Name: "s", BuilderNames: []string{"b"}, Cron: "0 * * * *"},
		},
		{
			name: "nightly fields, day of week from Monday = 0",
			toml: `
type = "nightly"
name = "s"
builder_names = ["b"]
minute = [0, 30]
hour = 3
day_of_month = "*"
month = [1, 7]
day_of_week = [0, 6]
branch = "main"
only_if_changed = true
`,
			want: Scheduler{Type: "nightly", Name: "s", BuilderNames: []string{"b"}, Cron: "0,30 3 * 1,7 1,0", Branch: "main", OnlyIfChanged: true},
		},
		{
			name: "nightly cron",
			toml: `
type = "nightly"
name = "s"
builder_names = ["b"]
cron = "15 3 * * 1-5"
`,
			want: Scheduler{Type: "nightly", Name: "s", BuilderNames: []string{"b"}, Cron: "15 3 * * 1-5"},
		},
		{
			name: "triggerable",
			toml: `
type = "triggerable"
name = "s"
builder_names = ["b"]
properties = { deep = { x = [1, 2] } }
`,
			want: Scheduler{Type: "triggerable", Name: "s", BuilderNames: []string{"b"}, Properties: map[string]any{"deep": map[string]any{"x": []any{int64(1), int64(2)}}}},
		},
		{
			name: "force with params",
			toml: `
type = "force"
name = "s"
builder_names = ["b"]
reason = "why not"
label = "Force it"
button_name = "Go"
  [[schedulers.params]]
  name = "target"
  label = "Target"
  default = "all"
  required = true
  regex = "^[a-z]+$"
  [[schedulers.params]]
  name = "jobs"
  type = "int"
  [[schedulers.params]]
  name = "debug"
  type = "bool"
  default = true
  [[schedulers.params]]
  name = "notes"
  type = "text"
  [[schedulers.params]]
  name = "flavour"
  type = "choice"
  choices = ["release", "debug"]
`,
			want: Scheduler{
				Type: "force", Name: "s", BuilderNames: []string{"b"}, Reason: "why not", Label: "Force it", ButtonName: "Go",
				Params: []ForceParam{
					{Name: "target", Label: "Target", Type: "string", Default: "all", Required: true, Regex: "^[a-z]+$", Line: 14},
					{Name: "jobs", Label: "jobs", Type: "int", Default: int64(0), Line: 20},
					{Name: "debug", Label: "debug", Type: "bool", Default: true, Line: 23},
					{Name: "notes", Label: "notes", Type: "text", Default: "", Line: 27},
					{Name: "flavour", Label: "flavour", Type: "choice", Default: "release", Choices: []string{"release", "debug"}, Line: 30},
				},
			},
		},
		{
			name: "force defaults",
			toml: `
type = "force"
name = "s"
builder_names = ["b"]
`,
			want: Scheduler{Type: "force", Name: "s", BuilderNames: []string{"b"}, Reason: "force build"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse("master.toml", []byte(schedulerHeader+"[[schedulers]]"+tc.toml))
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Line = 7
			if diff := cmp.Diff([]Scheduler{tc.want}, cfg.Schedulers, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("schedulers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSchedulerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		toml string // appended to schedulerHeader: its first line is line 7
		want []string
	}{
		{
			name: "keys of other types",
			toml: `[[schedulers]]
type = "force"
name = "f"
builder_names = ["b"]
files = ["x"]
period = "1h"
[[schedulers]]
type = "triggerable"
name = "t"
builder_names = ["b"]
branch = "main"
reason = "r"
[[schedulers]]
type = "single_branch"
name = "s"
branch = "main"
builder_names = ["b"]
cron = "* * * * *"
only_if_changed = true
`,
			want: []string{
				`master.toml:11: schedulers[0].files: not for a force scheduler`,
				`master.toml:12: schedulers[0].period: not for a force scheduler`,
				`master.toml:17: schedulers[1].branch: not for a triggerable scheduler`,
				`master.toml:18: schedulers[1].reason: not for a triggerable scheduler`,
				`master.toml:24: schedulers[2].cron: not for a single_branch scheduler`,
				`master.toml:25: schedulers[2].only_if_changed: not for a single_branch scheduler`,
			},
		},
		{
			// probe-cfg1: the properties of a force scheduler were taken
			// and never given to its builds; buildbot's ForceScheduler has
			// none (its properties are its parameters).
			name: "properties of a force scheduler",
			toml: `[[schedulers]]
type = "force"
name = "f"
builder_names = ["b"]
properties = { a = 1 }
[[schedulers]]
type = "triggerable"
name = "t"
builder_names = ["b"]
properties = { a = 1 }
`,
			want: []string{
				`master.toml:11: schedulers[0].properties: not for a force scheduler (buildbot's ForceScheduler sets none: its properties are its parameters): a value every forced build gets is a param of type "fixed" ([[schedulers.params]] name = "NAME", type = "fixed", default = VALUE)`,
			},
		},
		{
			name: "change filter values",
			toml: `[[schedulers]]
type = "any_branch"
name = "a"
builder_names = ["b"]
branch_re = "(("
files = ["ok", "["]
only_important = "yes"
properties = 1
`,
			want: []string{
				"master.toml:11: schedulers[0].branch_re: error parsing regexp: missing closing ): `((`",
				`master.toml:12: schedulers[0].files: bad file pattern "["`,
				`master.toml:13: schedulers[0].only_important: expected a boolean, got string`,
				`master.toml:14: schedulers[0].properties: expected a table, got integer`,
			},
		},
		{
			name: "periodic",
			toml: `[[schedulers]]
type = "periodic"
name = "p"
builder_names = ["b"]
[[schedulers]]
type = "periodic"
name = "q"
builder_names = ["b"]
period = 0
`,
			want: []string{
				`master.toml:7: schedulers[0].period: required for a periodic scheduler`,
				`master.toml:15: schedulers[1].period: must be positive`,
			},
		},
		{
			name: "nightly",
			toml: `[[schedulers]]
type = "nightly"
name = "n"
builder_names = ["b"]
minute = 60
hour = "3"
day_of_month = [1, "2"]
month = []
day_of_week = 7.5
[[schedulers]]
type = "nightly"
name = "m"
builder_names = ["b"]
cron = "0 3 * *"
hour = 3
`,
			want: []string{
				`master.toml:11: schedulers[0].minute: 60 out of range (0-59)`,
				`master.toml:12: schedulers[0].hour: expected an integer, an array of integers or "*", got "3"`,
				`master.toml:13: schedulers[0].day_of_month: expected an array of integers, got an array with a string`,
				`master.toml:14: schedulers[0].month: must not be empty`,
				`master.toml:15: schedulers[0].day_of_week: expected an integer, an array of integers or "*", got float`,
				`master.toml:20: schedulers[1].cron: expected exactly 5 fields, found 4: [0 3 * *]`,
				`master.toml:21: schedulers[1].hour: set either cron or hour, not both`,
			},
		},
		{
			name: "force params",
			toml: `[[schedulers]]
type = "force"
name = "f"
builder_names = ["b"]
reason = 1
  [[schedulers.params]]
  name = "reason"
  [[schedulers.params]]
  name = "x"
  type = "float"
  [[schedulers.params]]
  name = "x"
  type = "int"
  default = "3"
  regex = "a"
  [[schedulers.params]]
  name = "c"
  type = "choice"
  default = "z"
  choices = ["a", "b"]
  [[schedulers.params]]
  name = "d"
  type = "choice"
  [[schedulers.params]]
  name = "e"
  regex = "["
  default = "x"
  choices = ["x"]
  [[schedulers.params]]
  name = "g"
  regex = "^a$"
  default = "b"
  hello = 1
`,
			want: []string{
				`master.toml:11: schedulers[0].reason: expected a string, got integer`,
				`master.toml:13: schedulers[0].params[0].name: "reason" is reserved`,
				`master.toml:16: schedulers[0].params[1].type: unknown param type "float" (want "string", "text", "int", "bool", "choice", "fixed", "username", "multiple_choice", "worker_choice")`,
				`master.toml:18: schedulers[0].params[2].name: duplicate param name "x" (first at line 15)`,
				`master.toml:20: schedulers[0].params[2].default: expected an integer, got string`,
				`master.toml:21: schedulers[0].params[2].regex: only for type = "string", "text" or "username"`,
				`master.toml:25: schedulers[0].params[3].default: "z" is not one of the choices`,
				`master.toml:27: schedulers[0].params[4].choices: required for type = "choice"`,
				"master.toml:32: schedulers[0].params[5].regex: error parsing regexp: missing closing ]: `[`",
				`master.toml:34: schedulers[0].params[5].choices: only for type = "choice" or "multiple_choice"`,
				`master.toml:38: schedulers[0].params[6].default: "b" does not match regex`,
				`master.toml:39: schedulers[0].params[6].hello: unknown key`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse("master.toml", []byte(schedulerHeader+tc.toml))
			if cfg != nil {
				t.Errorf("Parse returned a config with an error")
			}
			if diff := cmp.Diff(tc.want, messages(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMatchFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*.go", "main.go", true},
		{"*.go", "cmd/main.go", false},
		{"cmd/*.go", "cmd/main.go", true},
		{"**/*.go", "main.go", true},
		{"**/*.go", "a/b/c.go", true},
		{"src/**", "src/a/b", true},
		{"src/**", "src", true},
		{"src/**/x.c", "src/x.c", true},
		{"src/**/x.c", "lib/x.c", false},
		{"docs/*", "docs/a/b", false},
	}
	for _, tc := range tests {
		if got := MatchFile(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchFile(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}
