package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const triggerBase = `
[[workers]]
name = "w"
password = "p"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["up"]

[[builders]]
name = "up"
worker_names = ["w"]
`

func TestTriggerStepErrors(t *testing.T) {
	t.Parallel()
	src := strings.TrimPrefix(triggerBase, "\n") + `
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["nope", "force"]
  set_properties = "x"

  [[builders.steps]]
  type = "trigger"
  command = "make"

  [[builders.steps]]
  type = "shell"
  command = "make"
  wait_for_finish = true
`
	cfg, err := Parse("master.toml", []byte(src))
	if cfg != nil {
		t.Errorf("Parse returned a config with an error")
	}
	want := []string{
		`master.toml:17: builders[0].steps[0].set_properties: expected a table, got string`,
		`master.toml:16: builders[0].steps[0].scheduler_names: unknown scheduler "nope"`,
		`master.toml:16: builders[0].steps[0].scheduler_names: scheduler "force" is a force scheduler, not a triggerable one`,
		`master.toml:19: builders[0].steps[1].scheduler_names: required for a trigger step`,
		`master.toml:21: builders[0].steps[1].command: not allowed in a trigger step`,
		`master.toml:26: builders[0].steps[2].wait_for_finish: not allowed in a shell step`,
	}
	got := messages(t, err)
	if diff := cmp.Diff(sortedCopy(want), sortedCopy(got)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
