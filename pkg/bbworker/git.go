package bbworker

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// gitSourceDir is where method copy keeps its incremental checkout, in
// BASEDIR/<builder>/, as buildbot's srcdir and gbb-worker's.
const gitSourceDir = "source"

// gitFatal is the exit code of a git step the master ends itself, as
// git's own "fatal:" errors exit.
const gitFatal = 128

// gitRun is one git step driven from the master as a sequence of remote
// commands, as buildbot 3.7's Git step (buildbot/steps/source/git.py)
// does, in the order gbb-worker runs them (pkg/worker/git.go), so the
// step's log reads the same on both: its own headers, then each git
// command as a shell command.
type gitRun struct {
	w        *Worker
	ctx      context.Context
	b        target
	g        *protocol.GitCommand
	out      func(protocol.Output)
	env      map[string]string
	rel      string    // the checkout being updated, relative to BASEDIR/<builder>
	deadline time.Time // when the step's MaxTime runs out; zero if none
}

// gitStop ends the step with res (a git command failed, was interrupted,
// or the worker lacks a command).
type gitStop struct{ res protocol.Result }

func (s *gitStop) Error() string { return fmt.Sprintf("git step ended with code %d", s.res.ExitCode) }

func (r *gitRun) header(format string, args ...any) { header(r.out, format, args...) }

func (w *Worker) git(ctx context.Context, b target, g *protocol.GitCommand, out func(protocol.Output)) (protocol.Result, error) {
	r := &gitRun{w: w, ctx: ctx, b: b, g: g, out: out, rel: path.Clean("./" + g.Workdir)}
	if g.MaxTime > 0 {
		r.deadline = time.Now().Add(g.MaxTime)
	}
	// No source stamp value that git could read as an option is sent, and
	// "--" goes before the URL and refspec, as gbb-worker does (see
	// pkg/worker/git.go: the git of a buildbot-worker may predate
	// --end-of-options).
	if err := g.Check(); err != nil {
		r.out(protocol.Output{Stream: protocol.Stderr, Data: []byte("fatal: refused: " + err.Error() + "\n")})
		return protocol.Result{ExitCode: gitFatal}, nil
	}
	r.env = map[string]string{"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
	if key := g.SSHPrivateKeyFile; key != "" {
		if !strings.HasPrefix(key, "/") { // relative to the worker's basedir, its cwd
			key = strings.TrimRight(w.info.Basedir, "/") + "/" + key
		}
		r.env["GIT_SSH_COMMAND"] = "ssh -i " + shellQuote(key) + " -o IdentitiesOnly=yes -o BatchMode=yes"
	}
	rev, err := r.run()
	var stop *gitStop
	switch {
	case errors.As(err, &stop):
		return stop.res, nil
	case err != nil && (errors.Is(err, protocol.ErrConnectionLost) || ctx.Err() == nil && !isFatal(err)):
		return protocol.Result{}, err
	case err != nil && ctx.Err() != nil:
		r.header("command interrupted")
		return protocol.Result{ExitCode: -1, Interrupted: true}, nil
	case err != nil:
		r.out(protocol.Output{Stream: protocol.Stderr, Data: []byte("fatal: " + err.Error() + "\n")})
		return protocol.Result{ExitCode: gitFatal}, nil
	}
	return protocol.Result{GotRevision: rev}, nil
}

// fatalError is a failure of the step that gbb-worker writes as
// "fatal: ..." and ends with gitFatal.
type fatalError struct{ msg string }

func (f *fatalError) Error() string { return f.msg }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// helper runs a helper command (listdir, rmdir, mkdir, cpdir) whose own
// headers are not written: the step writes gbb-worker's.
func (r *gitRun) helper(name string, args map[string]any) (*remote, error) {
	if r.ctx.Err() != nil {
		return nil, &gitStop{protocol.Result{ExitCode: -1, Interrupted: true}}
	}
	rm, interrupted, err := r.w.remote(r.ctx, r.b, name, args, &sink{out: r.out, quiet: true})
	if errors.Is(err, errUnsupported) {
		return nil, &gitStop{r.w.unsupported(name, r.out)}
	}
	if err != nil {
		return nil, err
	}
	if interrupted {
		r.header("command interrupted")
		return nil, &gitStop{protocol.Result{ExitCode: -1, Interrupted: true}}
	}
	return rm, nil
}

// mustHelper is helper, where a failure fails the step.
func (r *gitRun) mustHelper(name string, args map[string]any) error {
	rm, err := r.helper(name, args)
	if err != nil {
		return err
	}
	if res := result(rm, false); res.ExitCode != 0 || res.Err != "" {
		return &gitStop{res}
	}
	return nil
}

// git runs git with args in the checkout as a shell command, its output
// in the log, and returns its result and, when capture is set, its stdout.
func (r *gitRun) git(capture bool, args ...string) (protocol.Result, string, error) {
	if r.ctx.Err() != nil {
		r.header("command interrupted")
		return protocol.Result{ExitCode: -1, Interrupted: true}, "", nil
	}
	sh := &protocol.ShellCommand{Argv: append([]string{"git"}, args...), Workdir: r.rel, Env: r.env, Timeout: r.g.Timeout}
	if !r.deadline.IsZero() {
		// max_time bounds the step, not each command: what is left of it.
		if sh.MaxTime = time.Until(r.deadline).Round(time.Second); sh.MaxTime <= 0 {
			r.header("command timed out: the git step's max_time of %s seconds elapsed before %s", fmtSecs(r.g.MaxTime), quoteArgv(sh.Argv))
			return protocol.Result{ExitCode: -1, TimedOut: true}, "", nil
		}
	}
	s := &sink{out: r.out, capture: capture}
	rm, interrupted, err := r.w.remote(r.ctx, r.b, "shell", shellArgs(sh), s)
	if errors.Is(err, errUnsupported) {
		return r.w.unsupported("shell", r.out), "", nil
	}
	if err != nil {
		return protocol.Result{}, "", err
	}
	res := result(rm, interrupted)
	if res.TimedOut && !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
		r.header("the git step's max_time of %s seconds elapsed", fmtSecs(r.g.MaxTime))
	}
	return res, rm.stdout.String(), nil
}

// mustGit is git, where a git command that fails fails the step.
func (r *gitRun) mustGit(capture bool, args ...string) (string, error) {
	res, stdout, err := r.git(capture, args...)
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 || res.Err != "" || res.Interrupted || res.TimedOut {
		res.Elapsed = 0
		return "", &gitStop{res}
	}
	return stdout, nil
}

// run does the work of git and returns the commit checked out.
func (r *gitRun) run() (string, error) {
	g := r.g
	mode, method := g.Mode, g.Method
	if mode == "" {
		mode = protocol.GitIncremental
	}
	if mode == protocol.GitFull && method == "" {
		method = protocol.GitClobber
	}
	dir := r.w.builderPath(r.b, r.rel)
	if method != "" {
		r.header("mode %s, method %s, in dir %s", mode, method, dir)
	} else {
		r.header("mode %s in dir %s", mode, dir)
	}
	if method != protocol.GitCopy {
		return r.update(mode, method)
	}
	if overlap(gitSourceDir, r.rel) {
		return "", &fatalError{fmt.Sprintf("method copy: workdir %s and its source checkout %s overlap", dir, r.w.builderPath(r.b, gitSourceDir))}
	}
	// Copy, as buildbot's: remove the workdir, update the source checkout
	// incrementally, copy it to the workdir (cpdir).
	work := r.rel
	r.header("rm -rf %s", dir)
	if err := r.mustHelper("rmdir", map[string]any{"dir": work, "logEnviron": false, "timeout": secs(r.g.Timeout)}); err != nil {
		return "", err
	}
	r.rel = gitSourceDir
	src := r.w.builderPath(r.b, gitSourceDir)
	r.header("mode %s in dir %s", protocol.GitIncremental, src)
	rev, err := r.update(protocol.GitIncremental, "")
	if err != nil {
		return "", err
	}
	r.header("cp -a %s %s", src, dir)
	if err := r.mustHelper("cpdir", map[string]any{"fromdir": gitSourceDir, "todir": work, "logEnviron": false, "timeout": secs(r.g.Timeout)}); err != nil {
		return "", err
	}
	return rev, nil
}

// overlap reports whether one of the relative paths a and b holds the
// other.
func overlap(a, b string) bool {
	return a == b || strings.HasPrefix(b+"/", a+"/") || strings.HasPrefix(a+"/", b+"/") || b == "."
}

// update brings the checkout in r.rel to the command's revision by mode
// and method (not copy), as gbb-worker does, and returns the commit.
func (r *gitRun) update(mode, method string) (string, error) {
	g := r.g
	dir := r.w.builderPath(r.b, r.rel)
	clobber := method == protocol.GitClobber
	ls, err := r.helper("listdir", map[string]any{"dir": r.rel})
	if err != nil {
		return "", err
	}
	var files []string
	if ls.hasRC && ls.rc == 0 {
		files = ls.files
	}
	isRepo := slices.Contains(files, ".git")
	if !clobber && !isRepo {
		// Not a checkout: a directory with files in it goes, as buildbot's
		// _sourcedirIsUpdatable says, since git clone would refuse it.
		clobber = len(files) > 0
	}
	if clobber {
		r.header("rm -rf %s", dir)
		if err := r.mustHelper("rmdir", map[string]any{"dir": r.rel, "logEnviron": false, "timeout": secs(r.g.Timeout)}); err != nil {
			return "", err
		}
		isRepo = false
	}
	if !isRepo {
		if err := r.mustHelper("mkdir", map[string]any{"dir": r.rel, "logEnviron": false}); err != nil {
			return "", err
		}
	}
	branch := strings.TrimPrefix(g.Branch, "refs/heads/")
	var depth []string
	if g.Depth > 0 {
		depth = []string{"--depth", strconv.Itoa(g.Depth)}
	}
	cleanFlags := []string{"clean", "-f", "-f", "-d"}
	if method == protocol.GitFresh {
		cleanFlags = append(cleanFlags, "-x")
	}
	cleaning := method == protocol.GitFresh || method == protocol.GitClean

	target := "HEAD"
	if !isRepo {
		args := []string{"clone", "--progress"}
		if branch != "" {
			args = append(args, "--branch="+branch)
		}
		args = append(append(args, depth...), "--", g.RepoURL, ".")
		if _, err := r.mustGit(false, args...); err != nil {
			return "", err
		}
		if branch == "" { // the remote's HEAD branch, which clone checked out
			res, out, err := r.git(true, "symbolic-ref", "--short", "-q", "HEAD")
			if err != nil {
				return "", err
			}
			if res.Interrupted {
				return "", &gitStop{res}
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
			fetchRef = "HEAD"
		}
		args := append(append([]string{"fetch", "-f", "--progress"}, depth...), "--", g.RepoURL, fetchRef)
		if _, err := r.mustGit(false, args...); err != nil {
			return "", err
		}
		target = "FETCH_HEAD"
	}

	if g.Revision != "" {
		res, out, err := r.git(true, "rev-parse", "--verify", "--quiet", g.Revision+"^{commit}")
		if err != nil {
			return "", err
		}
		if res.Interrupted || res.Err != "" {
			return "", &gitStop{res}
		}
		if res.ExitCode != 0 {
			on := branch
			if on == "" {
				on = "HEAD"
			}
			return "", &fatalError{fmt.Sprintf("revision %s not found in %s (branch %s): it is not in the history fetched", g.Revision, g.RepoURL, on)}
		}
		target = strings.TrimSpace(out)
	}
	if target != "HEAD" {
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
		return "", &fatalError{fmt.Sprintf("git rev-parse HEAD said %q, not a commit id", rev)}
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
		return "", &fatalError{fmt.Sprintf("%s has no HEAD (an empty repository?): name a branch", r.g.RepoURL)}
	}
	return "", nil
}

// quoteArgv writes argv as Python's repr of a list, as gbb-worker does.
func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(strings.ReplaceAll(a, `\`, `\\`), "'", `\'`) + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// fmtSecs writes d in seconds as gbb-worker's headers do.
func fmtSecs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
