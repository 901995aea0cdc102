package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// gitFatal is the exit code of a git command that failed, as git's own
// "fatal:" errors exit.
const gitFatal = 128

// gitSourceDir is where method copy keeps its incremental checkout, in
// BASEDIR/<builder>/, as buildbot's srcdir.
const gitSourceDir = "source"

// gitMissing is what a worker without git says.
const gitMissing = "git not found in PATH: install git (FreeBSD: pkg install git-lite; Debian: apt-get install git)"

// gitRun is one git step being run: each of its git commands runs as a
// shell command does (runShell), in its own process group, its output
// streamed.
type gitRun struct {
	e       *Executor
	ctx     context.Context
	builder string
	g       *protocol.GitCommand
	hide    *protocol.Hider // for what the worker writes of each git command
	out     func(protocol.Output)
	env     map[string]string // added to the worker's environment
	rel     string            // the checkout being updated, relative to BASEDIR/<builder>
	dir     string            // the same, absolute
	// deadline is when the step's MaxTime runs out; zero when it has none.
	deadline time.Time
}

// gitFailed is returned when a git command failed: the step ends with its
// result (git's exit code, or interrupted).
type gitFailed struct {
	res protocol.Result
}

func (f *gitFailed) Error() string {
	return fmt.Sprintf("git exited with code %d", f.res.ExitCode)
}

func (r *gitRun) header(format string, args ...any) {
	r.out(protocol.Output{Stream: protocol.Header, Data: fmt.Appendf(nil, format+"\n", args...)})
}

// runGit checks out g's revision in BASEDIR/<builder>/<workdir> with the
// git binary, as buildbot's Git step does. A git command that fails ends
// the step with git's exit code, what it said on stderr in the log; the
// worker's own failures are written as "fatal: ..." and end with 128.
// Cancelling ctx kills the running git command's process group.
func (e *Executor) runGit(ctx context.Context, builder string, g *protocol.GitCommand, hide *protocol.Hider, out func(protocol.Output)) protocol.Result {
	r := &gitRun{e: e, ctx: ctx, builder: builder, g: g, hide: hide, out: out, rel: g.Workdir}
	if g.MaxTime > 0 {
		r.deadline = time.Now().Add(g.MaxTime)
	}
	fail := func(err error) protocol.Result {
		r.header("%v", err)
		return protocol.Result{ExitCode: -1, Err: err.Error()}
	}
	// The master refuses a source stamp's value that git could read as an
	// option where it enters; this refusal is the worker's own. git is
	// also given "--" before the URL and refspec (clone, fetch, ls-remote),
	// which every git with ls-remote --symref (2.8) understands, as the git
	// of a buildbot-worker may be older than --end-of-options (2.24) and
	// the two workers run the same commands; rev-parse, which has no such
	// marker, gets REV^{commit}, which no option of it runs anything with.
	if err := g.Check(); err != nil {
		r.out(protocol.Output{Stream: protocol.Stderr, Data: []byte("fatal: refused: " + err.Error() + "\n")})
		return protocol.Result{ExitCode: gitFatal}
	}
	if r.rel == "" {
		r.rel = "."
	}
	dir, err := e.workdir(builder, r.rel)
	if err != nil {
		return fail(err)
	}
	r.dir = dir
	var srcdir string
	if g.Method == protocol.GitCopy {
		if srcdir, err = e.workdir(builder, gitSourceDir); err == nil {
			err = checkCopyDirs(srcdir, dir)
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

	rev, err := r.run(srcdir)
	var failed *gitFailed
	switch {
	case errors.As(err, &failed):
		return failed.res
	case err != nil && ctx.Err() != nil:
		r.header("command interrupted")
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

// git runs git with args in the checkout as a shell command, its output
// streamed, and returns its result and, when capture is set, its stdout.
func (r *gitRun) git(capture bool, args ...string) (protocol.Result, string) {
	if r.ctx.Err() != nil {
		r.header("command interrupted")
		return protocol.Result{ExitCode: -1, Interrupted: true}, ""
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
	sh := &protocol.ShellCommand{Argv: append([]string{"git"}, args...), Workdir: r.rel, Env: r.env, Timeout: r.g.Timeout}
	if !r.deadline.IsZero() {
		// max_time bounds the step, not each command: what is left of it.
		if sh.MaxTime = time.Until(r.deadline).Round(time.Millisecond); sh.MaxTime <= 0 {
			r.header("command timed out: the git step's max_time of %s seconds elapsed before %s", secs(r.g.MaxTime), quoteArgv(r.hide.HideAll(sh.Argv)))
			return protocol.Result{ExitCode: -1, TimedOut: true}, ""
		}
	}
	res := r.e.runShell(r.ctx, r.builder, sh, r.hide, out)
	if res.TimedOut && !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
		r.header("the git step's max_time of %s seconds elapsed", secs(r.g.MaxTime))
	}
	return res, stdout.String()
}

// mustGit is git, where a git command that fails fails the step.
func (r *gitRun) mustGit(capture bool, args ...string) (string, error) {
	res, stdout := r.git(capture, args...)
	if res.ExitCode != 0 || res.Err != "" || res.Interrupted || res.TimedOut {
		res.Elapsed = 0
		return "", &gitFailed{res}
	}
	return stdout, nil
}

// run does the work of runGit and returns the commit checked out.
func (r *gitRun) run(srcdir string) (string, error) {
	g := r.g
	mode, method := g.Mode, g.Method
	if mode == "" {
		mode = protocol.GitIncremental
	}
	if mode == protocol.GitFull && method == "" {
		method = protocol.GitClobber
	}
	if method != "" {
		r.header("mode %s, method %s, in dir %s", mode, method, r.dir)
	} else {
		r.header("mode %s in dir %s", mode, r.dir)
	}
	if method != protocol.GitCopy {
		return r.update(mode, method)
	}

	// Copy, as buildbot's: remove the workdir, update the source checkout
	// incrementally, copy it to the workdir.
	work := r.dir
	r.header("rm -rf %s", work)
	if err := os.RemoveAll(work); err != nil {
		return "", fmt.Errorf("copy: %w", err)
	}
	r.rel, r.dir = gitSourceDir, srcdir
	r.header("mode %s in dir %s", protocol.GitIncremental, r.dir)
	rev, err := r.update(protocol.GitIncremental, "")
	if err != nil {
		return "", err
	}
	r.header("cp -a %s %s", srcdir, work)
	if err := copyTree(r.ctx, srcdir, work); err != nil {
		return "", fmt.Errorf("copy %s to %s: %w", srcdir, work, err)
	}
	return rev, nil
}

// update brings the checkout in r.dir to the command's revision by mode
// and method (not copy), as buildbot's Git step does, and returns the
// commit checked out.
func (r *gitRun) update(mode, method string) (string, error) {
	g := r.g
	clobber := method == protocol.GitClobber
	if !clobber && !exists(filepath.Join(r.dir, ".git")) {
		// Not a checkout: a directory with files in it goes, as buildbot's
		// _sourcedirIsUpdatable says, since git clone would refuse it.
		entries, err := os.ReadDir(r.dir)
		if err != nil {
			return "", err
		}
		clobber = len(entries) > 0
	}
	if clobber {
		r.header("rm -rf %s", r.dir)
		if err := os.RemoveAll(r.dir); err != nil {
			return "", fmt.Errorf("clobber: %w", err)
		}
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			return "", fmt.Errorf("clobber: %w", err)
		}
	}
	branch := strings.TrimPrefix(g.Branch, "refs/heads/")
	depth := []string{}
	if g.Depth > 0 {
		depth = []string{"--depth", strconv.Itoa(g.Depth)}
	}
	cleanFlags := []string{"clean", "-f", "-f", "-d"}
	if method == protocol.GitFresh {
		cleanFlags = append(cleanFlags, "-x")
	}
	cleaning := method == protocol.GitFresh || method == protocol.GitClean

	target := "HEAD"
	if !exists(filepath.Join(r.dir, ".git")) {
		args := []string{"clone", "--progress"}
		if branch != "" {
			args = append(args, "--branch="+branch)
		}
		args = append(append(args, depth...), "--", g.RepoURL, ".")
		if _, err := r.mustGit(false, args...); err != nil {
			return "", err
		}
		if branch == "" { // the remote's HEAD branch, which clone checked out
			// (none when that HEAD is detached: -q exits 1, saying nothing)
			res, out := r.git(true, "symbolic-ref", "--short", "-q", "HEAD")
			if res.Interrupted {
				return "", &gitFailed{res}
			}
			branch = strings.TrimSpace(out)
		}
	} else {
		if cleaning {
			if _, err := r.mustGit(false, cleanFlags...); err != nil {
				return "", err
			}
		}
		if branch == "" {
			var err error
			if branch, err = r.remoteHead(); err != nil {
				return "", err
			}
		}
		fetchRef := branch
		if fetchRef == "" {
			fetchRef = "HEAD" // a detached HEAD: no branch to name
		}
		args := append(append([]string{"fetch", "-f", "--progress"}, depth...), "--", g.RepoURL, fetchRef)
		if _, err := r.mustGit(false, args...); err != nil {
			return "", err
		}
		target = "FETCH_HEAD"
	}

	if g.Revision != "" {
		res, out := r.git(true, "rev-parse", "--verify", "--quiet", g.Revision+"^{commit}")
		if res.Interrupted || res.Err != "" {
			return "", &gitFailed{res}
		}
		if res.ExitCode != 0 {
			on := branch
			if on == "" {
				on = "HEAD"
			}
			return "", fmt.Errorf("revision %s not found in %s (branch %s): it is not in the history fetched", g.Revision, g.RepoURL, on)
		}
		target = strings.TrimSpace(out)
	}
	if target != "HEAD" {
		// git checkout -f, then -B as buildbot's: files follow the target,
		// untracked ones (build products) stay, and the branch is named.
		args := []string{"checkout", "-f", "-B", branch, target, "--"}
		if branch == "" {
			args = []string{"-c", "advice.detachedHead=false", "checkout", "-f", target, "--"}
		}
		if _, err := r.mustGit(false, args...); err != nil {
			return "", err
		}
	}
	if g.Submodules {
		if _, err := r.mustGit(false, "submodule", "sync", "--recursive"); err != nil {
			return "", err
		}
		if _, err := r.mustGit(false, append([]string{"submodule", "update", "--init", "--recursive", "--force", "--checkout"}, depth...)...); err != nil {
			return "", err
		}
		if cleaning {
			if _, err := r.mustGit(false, "submodule", "foreach", "--recursive", "git "+strings.Join(cleanFlags, " ")); err != nil {
				return "", err
			}
			if _, err := r.mustGit(false, cleanFlags...); err != nil {
				return "", err
			}
		}
	}
	out, err := r.mustGit(true, "rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	rev := strings.TrimSpace(out)
	if len(rev) != 40 && len(rev) != 64 {
		return "", fmt.Errorf("git rev-parse HEAD said %q, not a commit id", rev)
	}
	return rev, nil
}

// remoteHead returns the branch the remote's HEAD names (git ls-remote
// --symref), or "" when its HEAD is detached.
func (r *gitRun) remoteHead() (string, error) {
	out, err := r.mustGit(true, "ls-remote", "--symref", "--", r.g.RepoURL, "HEAD")
	if err != nil {
		return "", err
	}
	detached := false
	for line := range strings.Lines(out) {
		ref, name, _ := strings.Cut(strings.TrimSpace(line), "\t")
		if name != "HEAD" {
			continue
		}
		if target, ok := strings.CutPrefix(ref, "ref: refs/heads/"); ok {
			return target, nil
		}
		detached = true
	}
	if !detached {
		return "", fmt.Errorf("%s has no HEAD (an empty repository?): name a branch", r.g.RepoURL)
	}
	return "", nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
