package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// urlPassword is a password written in a git URL of the config, not a
// secret the master knows of: the worker hides it by its place.
const urlPassword = "pw-in-url-9f8e7d"

const workerLogSecretsConfig = loopback + workerW1 + `
[[secrets_providers]]
type = "file"
dirname = "{{.Dir}}/secrets"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["leak"]

[[builders]]
name = "leak"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "cannot start"
  command = ["/nonexistent/%(secret:token)s", "arg-%(secret:token)s"]
  halt_on_failure = false

  [[builders.steps]]
  type = "shell"
  name = "killed"
  command = ["sh", "-c", "sleep 60", "%(secret:token)s"]
  env = { TOKEN = "%(secret:token)s" }
  timeout = "1s"
  halt_on_failure = false

  [[builders.steps]]
  type = "git"
  name = "git with a password in its URL"
  repourl = "http://builder:` + urlPassword + `@{{.Hang}}/r.git"
  timeout = "1s"
  halt_on_failure = false

  [[builders.steps]]
  type = "git"
  name = "git with a secret in its URL"
  repourl = "http://builder:%(secret:token)s@{{.Hang}}/r.git"
  timeout = "1s"
`

// TestWorkerLogHidesSecrets: commands holding a secret that cannot start
// or are killed are logged by the real worker with the secret hidden
// ("<token>", as the master's step logs show it), and so are passwords in
// git URLs; neither the worker's log nor the master's holds the values.
func TestWorkerLogHidesSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secrets := filepath.Join(e.Dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "token"), []byte(theSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A git remote that hangs: connections are queued, never answered.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hang.Close() })
	e.writeConfigData(workerLogSecretsConfig, struct {
		*env
		Hang string
	}{e, hang.Addr().String()})
	e.startMaster()
	e.startWorker("w1", "secret")

	b := e.waitBuild(e.force("force", 1, "leak"), 90*time.Second)
	steps := e.steps(b.BuildID)
	if len(steps) != 5 {
		t.Fatalf("build ran %d steps, want 5: %+v", len(steps), steps)
	}
	for _, s := range steps[1:] {
		if s.Results == nil || *s.Results != 2 {
			t.Errorf("step %q results %v, want FAILURE", s.Name, s.Results)
		}
	}

	wlogPath := filepath.Join(e.Dir, "worker-w1.stderr")
	var wlog string
	waitFor(t, "the worker's log of the last command", 10*time.Second, func() bool {
		data, _ := os.ReadFile(wlogPath)
		wlog = string(data)
		return strings.Count(wlog, "command finished") >= 4
	})
	for _, want := range []string{
		"cannot run /nonexistent/<token>",
		`argv="[sh -c sleep 60 <token>]" why="command timed out`,
		"http://builder:xxxx@" + hang.Addr().String() + "/r.git",
	} {
		if !strings.Contains(wlog, want) {
			t.Errorf("the worker's log lacks %q:\n%s", want, wlog)
		}
	}
	for _, leak := range []string{theSecret, urlPassword} {
		if strings.Contains(wlog, leak) {
			t.Errorf("the worker's log holds %q:\n%s", leak, wlog)
		}
	}
	mlog, err := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mlog), theSecret) {
		t.Errorf("the master's log holds the secret:\n%s", mlog)
	}
	// The step logs show the hidden form too.
	if log := e.stdio(steps[2].StepID); !strings.Contains(log, "['sh', '-c', 'sleep 60', '<token>']") {
		t.Errorf("the killed step's log does not show its argv hidden:\n%s", log)
	}
}
