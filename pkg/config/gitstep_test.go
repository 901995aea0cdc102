package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestGitStepKeys checks the git step's methods, submodules and
// ssh_private_key_file.
func TestGitStepKeys(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", `
[[workers]]
name = "w"
password = "p"
[[builders]]
name = "b"
worker_names = ["w"]
  [[builders.steps]]
  type = "git"
  repourl = "r"
  mode = "full"
  method = "clean"
  [[builders.steps]]
  type = "git"
  repourl = "git@example.org:r.git"
  mode = "full"
  method = "copy"
  submodules = true
  ssh_private_key_file = "/home/w/.ssh/id_ed25519"
`)
	type gitStep struct {
		Mode, Method, RepoURL, Key string
		Submodules                 bool
	}
	var got []gitStep
	for _, s := range cfg.Builders[0].Steps {
		got = append(got, gitStep{s.Mode, s.Method, s.RepoURL, s.SSHPrivateKeyFile, s.Submodules})
	}
	want := []gitStep{
		{"full", "clean", "r", "", false},
		{"full", "copy", "git@example.org:r.git", "/home/w/.ssh/id_ed25519", true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("git steps (-want +got):\n%s", diff)
	}

	_, err := Parse("master.toml", []byte(`[[workers]]
name = "w"
password = "p"
[[builders]]
name = "b"
worker_names = ["w"]
  [[builders.steps]]
  type = "git"
  repourl = "r"
  submodules = "yes"
  ssh_private_key_file = 1
  [[builders.steps]]
  type = "shell"
  command = "make"
  submodules = true
  ssh_private_key_file = "k"
`))
	var msgs []string
	if err != nil {
		msgs = strings.Split(err.Error(), "\n")
	}
	wantMsgs := []string{
		`master.toml:10: builders[0].steps[0].submodules: expected a boolean, got string`,
		`master.toml:11: builders[0].steps[0].ssh_private_key_file: expected a string, got integer`,
		`master.toml:15: builders[0].steps[1].submodules: not allowed in a shell step`,
		`master.toml:16: builders[0].steps[1].ssh_private_key_file: not allowed in a shell step`,
	}
	if diff := cmp.Diff(wantMsgs, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
