package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// theSecret is the value of the secret "token": no stored log line, state
// string or property may hold it.
const theSecret = "tok-3x4mpl3-s3cr3t"

const scenariosConfig = loopback + `
[[workers]]
name = "w1"
password = "secret"
properties = { wprop = "fromworker" }

[[secrets_providers]]
type = "file"
dirname = "{{.Dir}}/secrets"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["props", "fromcmd", "master", "logmsg", "warnings", "conditions", "sources", "secrets", "badsecret"]

[[schedulers]]
type = "triggerable"
name = "downstream"
builder_names = ["downstream"]

[[builders]]
name = "props"
worker_names = ["w1"]
properties = { suite = "full", wprop = "overridden by the worker's" }

  [[builders.steps]]
  type = "set_property"
  property = "x"
  value = "hello-%(prop:buildername)s"

  [[builders.steps]]
  type = "shell"
  name = "use"
  command = "echo %(prop:x)s %(prop:suite)s %(prop:wprop)s %(worker:os)s"

[[builders]]
name = "fromcmd"
worker_names = ["w1"]

  [[builders.steps]]
  type = "set_property_from_command"
  name = "version"
  command = "echo version: v1.2.3"
  property = "ver"
  regex = 'v(\d+\.\d+)'

  [[builders.steps]]
  type = "set_property_from_command"
  name = "spaced"
  command = "printf '  spaced out  \\n'"
  property = "sp"

  [[builders.steps]]
  type = "shell"
  name = "use"
  command = ["echo", "%(prop:ver)s|%(prop:sp)s"]

  [[builders.steps]]
  type = "set_property_from_command"
  name = "nomatch"
  command = "echo nothing"
  property = "none"
  regex = '(\d+)'
  flunk_on_failure = false

[[builders]]
name = "master"
worker_names = ["w1"]

  [[builders.steps]]
  type = "master_shell_command"
  command = "echo on the master in $(basename $(pwd)) with $GREETING"
  env = { GREETING = "%(prop:buildername)s" }

  [[builders.steps]]
  type = "master_shell_command"
  name = "fails"
  command = ["false"]
  flunk_on_failure = false

[[builders]]
name = "logmsg"
worker_names = ["w1"]

  [[builders.steps]]
  type = "log_message"
  log_name = "notes"
  message = "hello %(prop:buildername)s\nsecond line"

[[builders]]
name = "warnings"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "quiet"
  command = "printf 'a.c:1: warning: one\nb.c:2: warning: deprecated two\nok\n'"
  warning_pattern = "warning:"
  suppress = [{ regex = "deprecated" }]
  warn_on_warnings = false

  [[builders.steps]]
  type = "shell"
  name = "toomany"
  command = "echo 'c.c:3: warning: three'"
  max_warn_count = 0
  flunk_on_failure = false

  [[builders.steps]]
  type = "shell"
  name = "flunk"
  command = "echo 'd.c:4: warning: four' >&2"
  warning_pattern = "warning:"
  flunk_on_warnings = true

[[builders]]
name = "conditions"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "never"
  command = "echo no"
  do_step_if = false

  [[builders.steps]]
  type = "shell"
  name = "mine"
  command = "echo yes"
  do_step_if = "%(prop:buildername)s == conditions"

  [[builders.steps]]
  type = "shell"
  name = "notmine"
  command = "echo no"
  do_step_if = "%(prop:buildername)s != conditions"

  [[builders.steps]]
  type = "shell"
  name = "hidden"
  command = "echo hidden"
  hide_step_if = "%(kw:results)s == success"

  [[builders.steps]]
  type = "shell"
  name = "shown"
  command = "exit 1"
  flunk_on_failure = false
  hide_step_if = "%(kw:results)s == success"

[[builders]]
name = "sources"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "defaults"
  command = "echo %(src::branch:-nobranch)s %(kw:missing:-kwdefault)s %(prop:nope:-dflt)s %(prop:reason:+has-reason)s"

[[builders]]
name = "secrets"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "echo %(secret:token)s"
  command = "echo %(secret:token)s; echo \"$TOKEN\"; printf 'tok-3x4'; sleep 0.5; printf 'mpl3-s3cr3t\\n'; echo $TOKEN >&2"
  env = { TOKEN = "%(secret:token)s" }

  [[builders.steps]]
  type = "set_property"
  property = "leak"
  value = ["%(secret:token)s", { nested = "x%(secret:token)sx" }]

  [[builders.steps]]
  type = "log_message"
  message = "token is %(secret:token)s"

  [[builders.steps]]
  type = "master_shell_command"
  command = "echo $TOKEN"
  env = { TOKEN = "%(secret:token)s" }

  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["downstream"]
  wait_for_finish = true
  set_properties = { passed = "%(secret:token)s" }

[[builders]]
name = "downstream"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  command = ["echo", "%(prop:passed)s"]

[[builders]]
name = "badsecret"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "missing"
  command = "echo %(secret:nope)s"

  [[builders.steps]]
  type = "shell"
  name = "after"
  command = "echo never"
`

type scenarioStep struct {
	name    string
	results int
	out     string            // the stdio log's stdout lines; "-" means not checked (nor err)
	err     string            // its stderr lines
	hidden  bool              // the step's hidden in the API
	logs    map[string]string // log name -> text its contents hold
}

// TestScenarios runs one builder per feature of properties, interpolation,
// secrets, the master steps, warning counting and step conditions, and
// checks each build's result, steps and logs.
func TestScenarios(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secrets := filepath.Join(e.Dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "token"), []byte(theSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(scenariosConfig)
	mustRun(t, e.master, "checkconfig", e.masterDir)
	e.startMaster()
	e.startWorker("w1", "secret")

	var builders struct {
		Builders []struct {
			BuilderID int64  `json:"builderid"`
			Name      string `json:"name"`
		}
	}
	e.get("/api/v2/builders", &builders)
	ids := map[string]int64{}
	for _, b := range builders.Builders {
		ids[b.Name] = b.BuilderID
	}
	prep := scenarioStep{name: "worker_preparation", out: "-"}
	tests := []struct {
		builder string
		results int
		steps   []scenarioStep
		props   map[string]any
	}{
		{"props", 0, []scenarioStep{prep,
			{name: "set_property", out: "-"},
			{name: "use", out: "ohello-props full fromworker " + runtime.GOOS + "\n"},
		}, map[string]any{"x": "hello-props", "suite": "full", "wprop": "fromworker"}},
		{"fromcmd", 0, []scenarioStep{prep,
			{name: "version", out: "oversion: v1.2.3\n"},
			{name: "spaced", out: "o  spaced out  \n"},
			{name: "use", out: "o1.2|spaced out\n"},
			{name: "nomatch", results: 2, out: "onothing\n", logs: map[string]string{"err.text": `regex "(\\d+)" does not match`}},
		}, map[string]any{"ver": "1.2", "sp": "spaced out"}},
		{"master", 0, []scenarioStep{prep,
			{name: "master_shell_command", out: "oon the master in master with master\n"},
			{name: "fails", results: 2, out: ""},
		}, nil},
		{"logmsg", 0, []scenarioStep{prep,
			{name: "log_message", out: "-", logs: map[string]string{"notes": "hello logmsg\nsecond line\n"}},
		}, nil},
		{"warnings", 2, []scenarioStep{prep,
			{name: "quiet", results: 1, out: "-", logs: map[string]string{"warnings (1)": "a.c:1: warning: one\n"}},
			{name: "toomany", results: 2, out: "-", logs: map[string]string{"warnings (1)": "c.c:3: warning: three\n"}},
			{name: "flunk", results: 1, err: "ed.c:4: warning: four\n"},
		}, map[string]any{"warnings-count": float64(3)}},
		{"conditions", 0, []scenarioStep{prep,
			{name: "never", results: 3, out: "-"},
			{name: "mine", out: "oyes\n"},
			{name: "notmine", results: 3, out: "-"},
			{name: "hidden", out: "ohidden\n", hidden: true},
			{name: "shown", results: 2, out: ""},
		}, nil},
		{"sources", 0, []scenarioStep{prep,
			{name: "defaults", out: "onobranch kwdefault dflt has-reason\n"},
		}, nil},
		{"secrets", 0, []scenarioStep{prep,
			{name: "echo <token>", out: "o<token>\no<token>\no<token>\n", err: "e<token>\n"},
			{name: "set_property", out: "-"},
			{name: "log_message", out: "-", logs: map[string]string{"message": "token is <token>\n"}},
			{name: "master_shell_command", out: "o<token>\n"},
			{name: "trigger", out: "-"},
		}, map[string]any{"leak": []any{"<token>", map[string]any{"nested": "x<token>x"}}}},
		{"badsecret", 4, []scenarioStep{prep,
			{name: "missing", results: 4, out: "-", logs: map[string]string{"err.text": `secret "nope"`}},
		}, nil},
	}
	brids := map[string]int64{}
	for _, tt := range tests {
		brids[tt.builder] = e.force("force", ids[tt.builder], "scenario")
	}
	for _, tt := range tests {
		t.Run(tt.builder, func(t *testing.T) {
			b := e.waitBuild(brids[tt.builder], 90*time.Second)
			if b.Results == nil || *b.Results != tt.results {
				t.Errorf("build results %v, want %d (%q)", b.Results, tt.results, b.StateString)
			}
			var r struct {
				Steps []struct {
					apiStep
					Hidden bool `json:"hidden"`
				}
			}
			e.get(fmt.Sprintf("/api/v2/builds/%d/steps", b.BuildID), &r)
			if len(r.Steps) != len(tt.steps) {
				t.Fatalf("steps %+v, want %d", r.Steps, len(tt.steps))
			}
			for i, want := range tt.steps {
				got := r.Steps[i]
				if got.Name != want.name || got.Results == nil || *got.Results != want.results || got.Hidden != want.hidden {
					t.Errorf("step %d: %q results %v hidden %v (%q); want %q %d hidden %v",
						i, got.Name, got.Results, got.Hidden, got.StateString, want.name, want.results, want.hidden)
				}
				if want.out != "-" {
					log := e.stdio(got.StepID)
					if out := channelLines(log, "o"); out != want.out {
						t.Errorf("step %q stdout %q, want %q", want.name, out, want.out)
					}
					if out := channelLines(log, "e"); out != want.err {
						t.Errorf("step %q stderr %q, want %q", want.name, out, want.err)
					}
				}
				for name, text := range want.logs {
					if got := logText(e, got.StepID, name); !strings.Contains(got, text) {
						t.Errorf("step %q log %q: %q, want it to hold %q", want.name, name, got, text)
					}
				}
			}
			for name, want := range tt.props {
				if got := e.property(b.BuildID, name); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("property %s = %#v, want %#v", name, got, want)
				}
			}
		})
	}

	// The secret's value is nowhere in what the API serves: no log, state
	// string or property of any build, the triggered one included, nor of
	// any buildset.
	all := e.waitBuilds(len(tests) + 1)
	if s := e.getText("/api/v2/buildsets"); strings.Contains(s, theSecret) {
		t.Errorf("the secret's value is in a buildset:\n%s", s)
	}
	for _, b := range all {
		var text strings.Builder
		text.WriteString(e.getText(fmt.Sprintf("/api/v2/builds/%d", b.BuildID)))
		text.WriteString(e.getText(fmt.Sprintf("/api/v2/builds/%d/properties", b.BuildID)))
		text.WriteString(e.getText(fmt.Sprintf("/api/v2/builds/%d/steps", b.BuildID)))
		for _, s := range e.steps(b.BuildID) {
			var r struct{ Logs []apiLog }
			e.get(fmt.Sprintf("/api/v2/steps/%d/logs", s.StepID), &r)
			for _, l := range r.Logs {
				text.WriteString(e.getText(fmt.Sprintf("/api/v2/logs/%d/contents", l.LogID)))
				text.WriteString(e.getText(fmt.Sprintf("/api/v2/logs/%d/raw", l.LogID)))
			}
		}
		if strings.Contains(text.String(), theSecret) {
			t.Errorf("build %d: the secret's value is in the API:\n%s", b.BuildID, text.String())
		}
	}
}

// logText returns the contents of a step's log, by name.
func logText(e *env, stepid int64, name string) string {
	e.t.Helper()
	var r struct{ Logs []apiLog }
	e.get(fmt.Sprintf("/api/v2/steps/%d/logs", stepid), &r)
	for _, l := range r.Logs {
		if l.Name != name {
			continue
		}
		var c struct {
			Logchunks []struct {
				Content string `json:"content"`
			}
		}
		e.get(fmt.Sprintf("/api/v2/logs/%d/contents", l.LogID), &c)
		var b strings.Builder
		for _, ch := range c.Logchunks {
			b.WriteString(ch.Content)
		}
		return b.String()
	}
	return fmt.Sprintf("(no log %q)", name)
}
