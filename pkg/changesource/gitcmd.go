package changesource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// errNoGit is returned when there is no git binary to run.
var errNoGit = errors.New("git not found in PATH: install git (FreeBSD: pkg install git-lite; Debian: apt-get install git)")

// gitWaitDelay bounds how long a git command's output is waited for once
// it has exited or been killed.
const gitWaitDelay = 5 * time.Second

// gitEnvDrop are the variables of the master's environment that would point
// git at another repository than the one it is given.
var gitEnvDrop = []string{
	"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
	"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_COMMON_DIR",
	"GIT_CEILING_DIRECTORIES", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_TERMINAL_PROMPT", "LC_ALL",
}

// gitCmd is how a poller runs git: in a repository (gitDir, if not empty),
// with extra variables.
type gitCmd struct {
	gitDir string
	env    []string // NAME=value, added to the master's environment
	stdin  io.Reader
	// stderr, if not nil, receives what git writes on its stderr (which
	// also goes into the error of a failed command).
	stderr *bytes.Buffer
}

// lookGit reports errNoGit when there is no git binary in PATH.
func lookGit() error {
	if _, err := exec.LookPath("git"); err != nil {
		return errNoGit
	}
	return nil
}

// run runs git with args and returns its stdout. git runs in its own
// process group, which is killed whole (git-remote-http, ssh, upload-pack)
// when ctx is done; it never prompts; its messages are in C. A failure's
// error names the command and ends with the last lines git wrote on
// stderr.
func (g gitCmd) run(ctx context.Context, args ...string) ([]byte, error) {
	if g.gitDir != "" {
		args = append([]string{"--git-dir=" + g.gitDir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	env := make([]string, 0, len(os.Environ())+len(g.env)+2)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(gitEnvDrop, name) {
			env = append(env, kv)
		}
	}
	cmd.Env = append(append(env, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C"), g.env...)
	cmd.Stdin = g.stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: git and the helpers it started.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = gitWaitDelay
	err := cmd.Run()
	if g.stderr != nil {
		g.stderr.Write(stderr.Bytes())
	}
	if errors.Is(err, exec.ErrNotFound) {
		return nil, errNoGit
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		name := subcommand(args)
		if msg := lastLines(stderr.String(), 5); msg != "" {
			return stdout.Bytes(), fmt.Errorf("git %s: %w: %s", name, err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("git %s: %w", name, err)
	}
	return stdout.Bytes(), nil
}

// subcommand returns the git command args run ("fetch"), past the options
// to git itself.
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-c":
			i++
		case !strings.HasPrefix(args[i], "-"):
			return args[i]
		}
	}
	return strings.Join(args, " ")
}

// lastLines returns the last n non-empty lines of s, joined by "; ".
func lastLines(s string, n int) string {
	var lines []string
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// sshCommand is GIT_SSH_COMMAND for a private key file, as buildbot's
// GitPoller sets it: that key only, and never a prompt.
func sshCommand(keyFile string) string {
	return "ssh -i " + shellQuote(keyFile) + " -o IdentitiesOnly=yes -o BatchMode=yes"
}

// shellQuote quotes s for sh, which runs GIT_SSH_COMMAND.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
