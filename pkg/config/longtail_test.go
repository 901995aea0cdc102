package config

import (
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
