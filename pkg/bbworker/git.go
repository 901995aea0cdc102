package bbworker

import (
	"context"
	"errors"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// gitFatal is the exit code of a git step the master ends itself, as
// git's own "fatal:" errors exit.
const gitFatal = 128

// gitRun is one git step driven from the master, the side of
// protocol.RunGitSequence that has a buildbot-worker do its work as
// remote commands, as buildbot 3.7's Git step (buildbot/steps/source/git.py)
// does: the step's log reads as gbb-worker's, its own headers, then each
// git command as a shell command.
type gitRun struct {
	w        *Worker
	ctx      context.Context
	b        target
	g        *protocol.GitCommand
	out      func(protocol.Output)
	env      map[string]string
	deadline time.Time // when the step's MaxTime runs out; zero if none
}

// Header writes a line of the step's own to its log.
func (r *gitRun) Header(format string, args ...any) { header(r.out, format, args...) }

func (w *Worker) git(ctx context.Context, b target, g *protocol.GitCommand, out func(protocol.Output)) (protocol.Result, error) {
	r := &gitRun{w: w, ctx: ctx, b: b, g: g, out: out}
	if g.MaxTime > 0 {
		r.deadline = time.Now().Add(g.MaxTime)
	}
	// No source stamp value that git could read as an option is sent, and
	// RunGitSequence puts "--" before the URL and refspec.
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
	rel := path.Clean("./" + g.Workdir)
	work := protocol.GitDir{Rel: rel, Path: w.builderPath(b, rel)}
	src := protocol.GitDir{Rel: protocol.GitSourceDir, Path: w.builderPath(b, protocol.GitSourceDir)}
	rev, err := protocol.RunGitSequence(r, g, work, src)
	var stop *protocol.GitStop
	switch {
	case errors.As(err, &stop):
		return stop.Result, nil
	case err != nil && (errors.Is(err, protocol.ErrConnectionLost) || ctx.Err() == nil && !isFatal(err)):
		return protocol.Result{}, err
	case err != nil && ctx.Err() != nil:
		r.Header("command interrupted")
		return protocol.Result{ExitCode: -1, Interrupted: true}, nil
	case err != nil:
		r.out(protocol.Output{Stream: protocol.Stderr, Data: []byte("fatal: " + err.Error() + "\n")})
		return protocol.Result{ExitCode: gitFatal}, nil
	}
	return protocol.Result{GotRevision: rev}, nil
}

// isFatal reports whether err is the step's own failure, which
// gbb-worker writes as "fatal: ..." and ends with gitFatal.
func isFatal(err error) bool {
	var f *protocol.GitError
	return errors.As(err, &f)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// helper runs a helper command (listdir, rmdir, mkdir, cpdir) whose own
// headers are not written: the step writes gbb-worker's.
func (r *gitRun) helper(name string, args map[string]any) (*remote, error) {
	if r.ctx.Err() != nil {
		return nil, &protocol.GitStop{Result: protocol.Result{ExitCode: -1, Interrupted: true}}
	}
	rm, interrupted, err := r.w.remote(r.ctx, r.b, name, args, &sink{out: r.out, quiet: true})
	if errors.Is(err, errUnsupported) {
		return nil, &protocol.GitStop{Result: r.w.unsupported(name, r.out)}
	}
	if err != nil {
		return nil, err
	}
	if interrupted {
		r.Header("command interrupted")
		return nil, &protocol.GitStop{Result: protocol.Result{ExitCode: -1, Interrupted: true}}
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
		return &protocol.GitStop{Result: res}
	}
	return nil
}

// Git runs git with args in dir as a shell command, its output
// in the log, and returns its result and, when capture is set, its stdout.
func (r *gitRun) Git(dir protocol.GitDir, capture bool, args ...string) (protocol.Result, string, error) {
	if r.ctx.Err() != nil {
		r.Header("command interrupted")
		return protocol.Result{ExitCode: -1, Interrupted: true}, "", nil
	}
	sh := &protocol.ShellCommand{Argv: append([]string{"git"}, args...), Workdir: dir.Rel, Env: r.env, Timeout: r.g.Timeout}
	if !r.deadline.IsZero() {
		// max_time bounds the step, not each command: what is left of it.
		if sh.MaxTime = time.Until(r.deadline).Round(time.Second); sh.MaxTime <= 0 {
			r.Header("command timed out: the git step's max_time of %s seconds elapsed before %s", fmtSecs(r.g.MaxTime), quoteArgv(sh.Argv))
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
		r.Header("the git step's max_time of %s seconds elapsed", fmtSecs(r.g.MaxTime))
	}
	return res, rm.stdout.String(), nil
}

// Look lists dir (listdir) and reports whether it is a checkout and
// whether it holds anything; a dir that cannot be listed holds nothing.
func (r *gitRun) Look(dir protocol.GitDir, _ bool) (checkout, nonEmpty bool, err error) {
	ls, err := r.helper("listdir", map[string]any{"dir": dir.Rel})
	if err != nil {
		return false, false, err
	}
	var files []string
	if ls.hasRC && ls.rc == 0 {
		files = ls.files
	}
	return slices.Contains(files, ".git"), len(files) > 0, nil
}

// Clobber removes dir (rmdir); MakeDir makes it again.
func (r *gitRun) Clobber(dir protocol.GitDir) error { return r.rmdir(dir) }

// MakeDir makes dir (mkdir).
func (r *gitRun) MakeDir(dir protocol.GitDir) error {
	return r.mustHelper("mkdir", map[string]any{"dir": dir.Rel, "logEnviron": false})
}

// RemoveDir removes the workdir method copy replaces (rmdir).
func (r *gitRun) RemoveDir(dir protocol.GitDir) error { return r.rmdir(dir) }

func (r *gitRun) rmdir(dir protocol.GitDir) error {
	return r.mustHelper("rmdir", map[string]any{"dir": dir.Rel, "logEnviron": false, "timeout": secs(r.g.Timeout)})
}

// CopyDir copies the source checkout to the workdir (cpdir).
func (r *gitRun) CopyDir(from, to protocol.GitDir) error {
	return r.mustHelper("cpdir", map[string]any{"fromdir": from.Rel, "todir": to.Rel, "logEnviron": false, "timeout": secs(r.g.Timeout)})
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
