package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const interpolateBase = `
[[workers]]
name = "w"
password = "p"

[[schedulers]]
type = "triggerable"
name = "t"
builder_names = ["b"]

[[builders]]
name = "b"
worker_names = ["w"]
`

func TestInterpolationErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps string // line 1 is the line after the backquote; the steps start at line 13
		want  []string
	}{
		{
			name: "good templates everywhere",
			steps: `
  [[builders.steps]]
  type = "shell"
  name = "test %(prop:branch)s"
  description = "100%% of %(src::branch:-main)s"
  command = ["make", "REV=%(prop:got_revision:-%(src::revision:-unknown)s)s", "TOKEN=%(secret:token)s"]
  workdir = "build/%(kw:dir:-x)s"
  env = { OS = "%(worker:os)s", MODE = "%(prop:mode:?|on|off)s", FLAG = "%(prop:f:#?|1|0)s" }

  [[builders.steps]]
  type = "git"
  repourl = "https://%(secret:user)s@example.org/r.git"
  branch = "%(prop:branch:~main)s"
  ssh_private_key_file = "%(worker:home)s/.ssh/id"

  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["t"]
  set_properties = { a = "%(prop:a)s", n = 3, list = ["%(prop:b)s", true], sub = { c = "%(prop:c:+yes)s" } }
`,
		},
		{
			name: "script command",
			steps: `
  [[builders.steps]]
  type = "shell"
  command = "echo 50%"
`,
			want: []string{`master.toml:15: builders[0].steps[0].command: bad interpolation: column 8: "%" at the end: write "%%" for a literal %`},
		},
		{
			name: "argv elements",
			steps: `
  [[builders.steps]]
  type = "shell"
  command = [
    "make",
    "REV=%(prop:got_revision)",
    "%(prop:x:?|a)s",
  ]
`,
			want: []string{
				`master.toml:17: builders[0].steps[0].command[1]: bad interpolation: column 25: missing "s" after "%(prop:got_revision)": got the end`,
				`master.toml:18: builders[0].steps[0].command[2]: bad interpolation: column 11: ":?|a" has no second '|': want :?|YES|NO`,
			},
		},
		{
			name: "name description workdir",
			steps: `
  [[builders.steps]]
  type = "shell"
  name = "%(prop:branch"
  description = "%(property:x)s"
  command = "make"
  workdir = "%(src:revision)s"
`,
			want: []string{
				`master.toml:15: builders[0].steps[0].name: bad interpolation: column 1: unterminated "%(": no matching ")"`,
				`master.toml:16: builders[0].steps[0].description: bad interpolation: column 3: unknown selector "property": want prop, src, secret, kw or worker`,
				`master.toml:18: builders[0].steps[0].workdir: bad interpolation: column 3: "src:revision" needs a codebase and an attribute: %(src:CODEBASE:ATTR)s, CODEBASE often empty as in %(src::revision)s`,
			},
		},
		{
			name: "env values",
			steps: `
  [[builders.steps]]
  type = "shell"
  command = "make"
  [builders.steps.env]
  GOOD = "%(prop:x)s"
  BAD = "%(prop:x:=y)s"
  PCT = "%d"
`,
			want: []string{
				`master.toml:18: builders[0].steps[0].env.BAD: bad interpolation: column 10: unknown operator ":=": want ":-", ":~", ":+", ":?" or ":#?"`,
				`master.toml:19: builders[0].steps[0].env.PCT: bad interpolation: column 1: "%" followed by 'd': want "%(" or "%%" (for a literal %)`,
			},
		},
		{
			name: "git keys",
			steps: `
  [[builders.steps]]
  type = "git"
  repourl = "%(secret:)s"
  branch = "%(src::rev)s"
  ssh_private_key_file = "%(prop:x:#y)s"
`,
			want: []string{
				`master.toml:15: builders[0].steps[0].repourl: bad interpolation: column 10: empty secret name`,
				`master.toml:16: builders[0].steps[0].branch: bad interpolation: column 8: unknown source stamp attribute "rev": want branch, revision, repository, project, codebase`,
				`master.toml:17: builders[0].steps[0].ssh_private_key_file: bad interpolation: column 10: ":#" must be followed by "?": ":#?|YES|NO"`,
			},
		},
		{
			name: "set_properties, nested",
			steps: `
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["t"]
  [builders.steps.set_properties]
  a = "%(prop:)s"
  n = 1
  list = ["ok", "%(kw:a b)s"]
  [builders.steps.set_properties.sub]
  deep = "50%"
`,
			want: []string{
				`master.toml:17: builders[0].steps[0].set_properties.a: bad interpolation: column 8: empty property name`,
				`master.toml:19: builders[0].steps[0].set_properties.list[1]: bad interpolation: column 6: keyword name "a b" must be letters, digits, _, . or -`,
				`master.toml:21: builders[0].steps[0].set_properties.sub.deep: bad interpolation: column 3: "%" at the end: write "%%" for a literal %`,
			},
		},
		{
			name: "keys not allowed or of the wrong type are not checked again",
			steps: `
  [[builders.steps]]
  type = "shell"
  command = "make"
  repourl = "%(bad"
  description = 5
`,
			want: []string{
				`master.toml:16: builders[0].steps[0].repourl: not allowed in a shell step`,
				`master.toml:17: builders[0].steps[0].description: expected a string, got integer`,
			},
		},
		{
			name: "literal keys are not templates",
			steps: `
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["t"]

  [[builders.steps]]
  type = "git"
  repourl = "r"
  mode = "%"
`,
			want: []string{
				`master.toml:20: builders[0].steps[1].mode: unknown git mode "%" (want "incremental", "full")`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := strings.TrimPrefix(interpolateBase, "\n") + strings.TrimPrefix(tt.steps, "\n")
			cfg, err := Parse("master.toml", []byte(src))
			if (cfg == nil) != (len(tt.want) > 0) {
				t.Errorf("Parse returned config %v with error %v", cfg != nil, err)
			}
			if diff := cmp.Diff(tt.want, messages(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStepFieldsClassified makes every string-holding field of Step either
// rendered (and checked by checkInterpolations) or literal.
func TestStepFieldsClassified(t *testing.T) {
	t.Parallel()
	stringy := []reflect.Type{
		reflect.TypeFor[string](),
		reflect.TypeFor[[]string](),
		reflect.TypeFor[map[string]string](),
		reflect.TypeFor[map[string][]string](),
		reflect.TypeFor[map[string]any](),
		reflect.TypeFor[[]any](),
		reflect.TypeFor[Command](),
	}
	rendered := map[string]bool{}
	step := reflect.TypeFor[Step]()
	for _, f := range renderedStepFields {
		rendered[f.field] = true
		if _, ok := step.FieldByName(f.field); !ok {
			t.Errorf("renderedStepFields names Step.%s, which does not exist", f.field)
		}
	}
	for _, name := range literalStepFields {
		if _, ok := step.FieldByName(name); !ok {
			t.Errorf("literalStepFields names Step.%s, which does not exist", name)
		}
	}
	for f := range step.Fields() {
		if !slices.Contains(stringy, f.Type) {
			continue
		}
		if !rendered[f.Name] && !slices.Contains(literalStepFields, f.Name) {
			t.Errorf("Step.%s holds strings: add it to renderedStepFields (if it is rendered when the step runs) or to literalStepFields, in interpolate.go", f.Name)
		}
	}
}
