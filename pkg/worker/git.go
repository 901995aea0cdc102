package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// gitFatal is the exit code of a git command that failed, as git's own
// "fatal:" errors exit.
const gitFatal = 128

// gitMissing is what a worker without git says.
const gitMissing = "git not found in PATH: install git (FreeBSD: pkg install git-lite; Debian: apt-get install git)"

// gitRun is one git step being run, the side of protocol.RunGitSequence
// that does its work locally: each of its git commands runs as a shell
// command does (runShell), in its own process group, its output streamed.
type gitRun struct {
	e       *Executor
	ctx     context.Context
	builder string
	g       *protocol.GitCommand
	hide    *protocol.Hider // for what the worker writes of each git command
	out     func(protocol.Output)
	env     map[string]string // added to the worker's environment
	// deadline is when the step's MaxTime runs out; zero when it has none.
	deadline time.Time
}

// Header writes a line of the step's own to its log.
func (r *gitRun) Header(format string, args ...any) {
	r.out(protocol.Output{Stream: protocol.Header, Data: fmt.Appendf(nil, format+"\n", args...)})
}

// runGit checks out g's revision in BASEDIR/<builder>/<workdir> with the
// git binary, as buildbot's Git step does. A git command that fails ends
// the step with git's exit code, what it said on stderr in the log; the
// worker's own failures are written as "fatal: ..." and end with 128.
// Cancelling ctx kills the running git command's process group.
func (e *Executor) runGit(ctx context.Context, builder string, g *protocol.GitCommand, hide *protocol.Hider, out func(protocol.Output)) protocol.Result {
	r := &gitRun{e: e, ctx: ctx, builder: builder, g: g, hide: hide, out: out}
	if g.MaxTime > 0 {
		r.deadline = time.Now().Add(g.MaxTime)
	}
	fail := func(err error) protocol.Result {
		r.Header("%v", err)
		return protocol.Result{ExitCode: -1, Err: err.Error()}
	}
	// The master refuses a source stamp's value that git could read as an
	// option where it enters; this refusal is the worker's own (and
	// RunGitSequence puts "--" before the URL and refspec).
	if err := g.Check(); err != nil {
		r.out(protocol.Output{Stream: protocol.Stderr, Data: []byte("fatal: refused: " + err.Error() + "\n")})
		return protocol.Result{ExitCode: gitFatal}
	}
	work := protocol.GitDir{Rel: g.Workdir}
	if work.Rel == "" {
		work.Rel = "."
	}
	var err error
	if work.Path, err = e.workdir(builder, work.Rel); err != nil {
		return fail(err)
	}
	src := protocol.GitDir{Rel: protocol.GitSourceDir}
	if g.Method == protocol.GitCopy {
		if src.Path, err = e.workdir(builder, src.Rel); err == nil {
			err = checkCopyDirs(src.Path, work.Path)
		}
		if err != nil {
			return fail(err)
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		return fail(errors.New(gitMissing))
	}
	r.env = map[string]string{"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
	if key := g.SSHPrivateKeyFile; key != "" {
		cmd, err := sshCommand(key)
		if err != nil {
			r.out(protocol.Output{Stream: protocol.Stderr, Data: []byte("fatal: " + err.Error() + "\n")})
			return protocol.Result{ExitCode: gitFatal}
		}
		r.env["GIT_SSH_COMMAND"] = cmd
	}

	rev, err := protocol.RunGitSequence(r, g, work, src)
	var stop *protocol.GitStop
	switch {
	case errors.As(err, &stop):
		return stop.Result
	case err != nil && ctx.Err() != nil:
		r.Header("command interrupted")
		return protocol.Result{ExitCode: -1, Interrupted: true}
	case err != nil:
		r.out(protocol.Output{Stream: protocol.Stderr, Data: []byte("fatal: " + err.Error() + "\n")})
		return protocol.Result{ExitCode: gitFatal}
	}
	return protocol.Result{GotRevision: rev}
}

// sshCommand is GIT_SSH_COMMAND for the private key file key, as
// buildbot's: ssh with that key only, never prompting. Host keys are
// checked against known_hosts, as ssh does by default.
func sshCommand(key string) (string, error) {
	abs, err := filepath.Abs(key) // git runs ssh in the checkout
	if err == nil {
		var f *os.File
		if f, err = os.Open(abs); err == nil {
			f.Close()
		}
	}
	if err != nil {
		return "", fmt.Errorf("ssh_private_key_file %s: %w", key, err)
	}
	return "ssh -i " + shellQuote(abs) + " -o IdentitiesOnly=yes -o BatchMode=yes", nil
}

// shellQuote quotes s for /bin/sh, which runs GIT_SSH_COMMAND.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkCopyDirs refuses a workdir that method copy's removal would take
// the source checkout with, or that would be copied into itself.
func checkCopyDirs(srcdir, dir string) error {
	for _, pair := range [][2]string{{srcdir, dir}, {dir, srcdir}} {
		if rel, err := filepath.Rel(pair[0], pair[1]); err == nil && filepath.IsLocal(rel) || pair[0] == pair[1] {
			return fmt.Errorf("method copy: workdir %s and its source checkout %s overlap", dir, srcdir)
		}
	}
	return nil
}

// Git runs git with args in dir as a shell command, its output
// streamed, and returns its result and, when capture is set, its stdout.
func (r *gitRun) Git(dir protocol.GitDir, capture bool, args ...string) (protocol.Result, string, error) {
	if r.ctx.Err() != nil {
		r.Header("command interrupted")
		return protocol.Result{ExitCode: -1, Interrupted: true}, "", nil
	}
	var stdout strings.Builder
	out := r.out
	if capture {
		out = func(o protocol.Output) { // runShell never calls it concurrently
			if o.Stream == protocol.Stdout {
				stdout.Write(o.Data)
			}
			r.out(o)
		}
	}
	sh := &protocol.ShellCommand{Argv: append([]string{"git"}, args...), Workdir: dir.Rel, Env: r.env, Timeout: r.g.Timeout}
	if !r.deadline.IsZero() {
		// max_time bounds the step, not each command: what is left of it.
		if sh.MaxTime = time.Until(r.deadline).Round(time.Millisecond); sh.MaxTime <= 0 {
			r.Header("command timed out: the git step's max_time of %s seconds elapsed before %s", secs(r.g.MaxTime), quoteArgv(r.hide.HideAll(sh.Argv)))
			return protocol.Result{ExitCode: -1, TimedOut: true}, "", nil
		}
	}
	res := r.e.runShell(r.ctx, r.builder, sh, r.hide, out)
	if res.TimedOut && !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
		r.Header("the git step's max_time of %s seconds elapsed", secs(r.g.MaxTime))
	}
	return res, stdout.String(), nil
}

// Look reports whether dir is a checkout and, when it is not and files is
// set, whether it holds anything.
func (r *gitRun) Look(dir protocol.GitDir, files bool) (checkout, nonEmpty bool, err error) {
	if checkout = exists(filepath.Join(dir.Path, ".git")); checkout || !files {
		return checkout, false, nil
	}
	entries, err := os.ReadDir(dir.Path)
	if err != nil {
		return false, false, err
	}
	return false, len(entries) > 0, nil
}

// Clobber removes dir with all it holds and makes it again, empty.
func (r *gitRun) Clobber(dir protocol.GitDir) error {
	if err := os.RemoveAll(dir.Path); err != nil {
		return fmt.Errorf("clobber: %w", err)
	}
	if err := os.MkdirAll(dir.Path, 0o755); err != nil {
		return fmt.Errorf("clobber: %w", err)
	}
	return nil
}

// MakeDir makes dir where it is missing; e.workdir or Clobber made it.
func (r *gitRun) MakeDir(dir protocol.GitDir) error {
	if err := os.MkdirAll(dir.Path, 0o755); err != nil {
		return fmt.Errorf("create workdir: %w", err)
	}
	return nil
}

// RemoveDir removes the workdir method copy replaces.
func (r *gitRun) RemoveDir(dir protocol.GitDir) error {
	if err := os.RemoveAll(dir.Path); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return nil
}

// CopyDir copies the source checkout to the workdir, as cp -a.
func (r *gitRun) CopyDir(from, to protocol.GitDir) error {
	if err := copyTree(r.ctx, from.Path, to.Path); err != nil {
		return fmt.Errorf("copy %s to %s: %w", from.Path, to.Path, err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
