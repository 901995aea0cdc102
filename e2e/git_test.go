package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const gitConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["checkout"]

[[builders]]
name = "checkout"
worker_names = ["w1"]

  [[builders.steps]]
  type = "git"
  repourl = "file://{{.Dir}}/repo"

  [[builders.steps]]
  type = "shell"
  name = "cat"
  command = ["cat", "hello.txt"]
`

// TestGitStep checks out a repository with the git binary on the worker,
// as buildbot's Git step does, then reads a file of it in the next step;
// the build gets got_revision, and the log shows git's commands and what
// git said.
func TestGitStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	repo := filepath.Join(e.Dir, "repo")
	git := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(mustRun(t, "git", append([]string{"-C", repo,
			"-c", "user.name=A U Thor", "-c", "user.email=a@example.com"}, args...)...))
	}
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	git("init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(repo, "hello.txt"), []byte("hello from git\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "hello.txt")
	git("commit", "-q", "-m", "add hello")
	head := git("rev-parse", "HEAD")

	e.writeConfig(strings.ReplaceAll(gitConfig, "{{.Dir}}", e.Dir))
	mustRun(t, e.master, "checkconfig", e.masterDir)
	e.startMaster()
	e.startWorker("w1", "secret")

	b := e.waitBuild(e.force("force", 1, "git e2e"), 60*time.Second)
	steps := e.steps(b.BuildID)
	var summary []string
	for _, s := range steps {
		summary = append(summary, fmt.Sprintf("%s=%d %q", s.Name, *s.Results, s.StateString))
	}
	if b.Results == nil || *b.Results != 0 {
		for _, s := range steps {
			t.Logf("step %s log:\n%s", s.Name, e.stdio(s.StepID))
		}
		t.Fatalf("build results = %v, want SUCCESS; steps: %v", b.Results, summary)
	}
	if len(steps) != 3 || steps[1].Name != "git" || steps[1].StateString != "update" || steps[2].Name != "cat" {
		t.Errorf("steps = %v, want worker_preparation, git (\"update\"), cat", summary)
	}
	gitLog := e.stdio(steps[1].StepID)
	if !strings.Contains(gitLog, "h['git', 'clone', '--progress', 'file://"+repo+"', '.']\n") ||
		!strings.Contains(gitLog, "eCloning into '.'...\n") || !strings.Contains(gitLog, "o"+head+"\n") {
		t.Errorf("git step log:\n%s", gitLog)
	}
	if out := channelLines(e.stdio(steps[2].StepID), "o"); out != "ohello from git\n" {
		t.Errorf("cat output = %q, want the file's content", out)
	}

	var props struct {
		Properties []map[string][]any `json:"properties"`
	}
	e.get(fmt.Sprintf("/api/v2/builds/%d/properties", b.BuildID), &props)
	if len(props.Properties) != 1 {
		t.Fatalf("properties = %+v", props)
	}
	got := props.Properties[0]["got_revision"]
	if len(got) != 2 || got[0] != head || got[1] != "Git" {
		t.Errorf("got_revision = %v, want [%s Git]", got, head)
	}
}
