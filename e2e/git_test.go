package e2e

import (
	"fmt"
	"net"
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
	if !strings.Contains(gitLog, "h['git', 'clone', '--progress', '--', 'file://"+repo+"', '.']\n") ||
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

// TestGitStepTimeout: a git step's timeout reaches the worker, which kills
// a fetch that hangs once it has been silent that long; the build fails
// and the log says why.
func TestGitStepTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A remote that hangs: the kernel accepts connections for a listener
	// that never calls Accept, and nobody ever answers them.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg := strings.ReplaceAll(gitConfig, "file://{{.Dir}}/repo", "http://"+ln.Addr().String()+"/hang.git")
	cfg = strings.Replace(cfg, "  type = \"git\"\n", "  type = \"git\"\n  timeout = \"2s\"\n", 1)
	e.writeConfig(cfg)
	e.startMaster()
	e.startWorker("w1", "secret")

	b := e.waitBuild(e.force("force", 1, "git timeout"), 60*time.Second)
	steps := e.steps(b.BuildID)
	if b.Results == nil || *b.Results != 2 || len(steps) < 2 || steps[1].Name != "git" {
		t.Fatalf("build results = %v, steps %+v; want FAILURE at the git step", b.Results, steps)
	}
	if log := e.stdio(steps[1].StepID); !strings.Contains(log, "command timed out: 2 seconds without output") {
		t.Errorf("git step log does not say it timed out:\n%s", log)
	}
}
