package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFinishSteps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		want      FinishSteps
	}{
		{"off by default", ``, FinishSteps{}},
		{"on, default wait", "finish_steps_on_restart = true\n", FinishSteps{OnRestart: true}},
		{"on, wait", "finish_steps_on_restart = true\nfinish_steps_wait = \"90s\"\n", FinishSteps{OnRestart: true, Wait: 90 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, mustParse(t, "master.toml", tc.src).FinishSteps); diff != "" {
				t.Errorf("FinishSteps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFinishStepsErrors(t *testing.T) {
	t.Parallel()
	src := `finish_steps_on_restart = "yes"
finish_steps_wait = 0
`
	_, err := Parse("master.toml", []byte(src))
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	want := []string{
		`master.toml:1: finish_steps_on_restart: expected a boolean, got string`,
		`master.toml:2: finish_steps_wait: must be positive`,
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
