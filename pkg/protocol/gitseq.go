package protocol

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// GitSourceDir is where method copy keeps its incremental checkout, in
// BASEDIR/<builder>/, as buildbot's srcdir.
const GitSourceDir = "source"

// GitDir is a directory the git step works in: Rel, relative to the
// builder's directory, is what the worker is given; Path is how the
// step's headers name it.
type GitDir struct {
	Rel, Path string
}

// GitSide is what the git step's sequence (RunGitSequence) needs of the
// worker it runs on: gbb-worker does each of these itself, the master has
// a buildbot-worker do them as remote commands (shell, listdir, rmdir,
// mkdir, cpdir). An error that is not a *GitStop or a *GitError is the
// side's own (a connection lost, a file that could not be removed) and
// ends the sequence as it is.
type GitSide interface {
	// Header writes a line of the step's own to its log.
	Header(format string, args ...any)
	// Git runs git with args in dir as a shell command, its output in the
	// log, and returns its result and, when capture is set, its stdout.
	Git(dir GitDir, capture bool, args ...string) (Result, string, error)
	// Look reports whether dir is a checkout (holds .git) and, when it is
	// not and files is set, whether it holds anything.
	Look(dir GitDir, files bool) (checkout, nonEmpty bool, err error)
	// Clobber removes dir and all it holds, for a clone.
	Clobber(dir GitDir) error
	// MakeDir makes dir, which is not a checkout, where it is missing.
	MakeDir(dir GitDir) error
	// RemoveDir removes the workdir that method copy replaces.
	RemoveDir(dir GitDir) error
	// CopyDir copies from, with all it holds, to to (cp -a).
	CopyDir(from, to GitDir) error
}

// GitStop ends the git step with Result: a git command failed, was
// interrupted or timed out, or the worker lacks a command.
type GitStop struct{ Result Result }

func (s *GitStop) Error() string {
	return fmt.Sprintf("git step ended with code %d", s.Result.ExitCode)
}

// GitError is a failure of the git step itself (a revision not fetched, a
// remote without HEAD), which the worker writes as "fatal: ..." and ends
// with code 128, as git's own fatal errors.
type GitError struct{ Msg string }

func (e *GitError) Error() string { return e.Msg }

// RunGitSequence runs g, a git step, on side: in work, or with method
// copy by way of source; it returns the commit checked out. It runs
// git's commands in the same order with the same arguments, and writes
// the same headers, on both kinds of worker, as buildbot's Git step
// (buildbot/steps/source/git.py) does: the step's log reads the same on
// both. g must have passed g.Check(); "--" goes before the URL and
// refspec (clone, fetch, ls-remote), which every git with ls-remote
// --symref (2.8) understands, as the git of a buildbot-worker may be
// older than --end-of-options (2.24); rev-parse, which has no such
// marker, gets REV^{commit}, which no option of it runs anything with.
func RunGitSequence(side GitSide, g *GitCommand, work, source GitDir) (string, error) {
	s := &gitSeq{side: side, g: g}
	mode, method := g.Mode, g.Method
	if mode == "" {
		mode = GitIncremental
	}
	if mode == GitFull && method == "" {
		method = GitClobber
	}
	if method != "" {
		side.Header("mode %s, method %s, in dir %s", mode, method, work.Path)
	} else {
		side.Header("mode %s in dir %s", mode, work.Path)
	}
	if method != GitCopy {
		return s.update(work, mode, method)
	}
	// gbb-worker refuses this before the step begins, with the paths it
	// resolved; a buildbot-worker's are only known by name.
	if overlap(path.Clean("./"+source.Rel), path.Clean("./"+work.Rel)) {
		return "", &GitError{fmt.Sprintf("method copy: workdir %s and its source checkout %s overlap", work.Path, source.Path)}
	}

	// Copy, as buildbot's: remove the workdir, update the source checkout
	// incrementally, copy it to the workdir.
	side.Header("rm -rf %s", work.Path)
	if err := side.RemoveDir(work); err != nil {
		return "", err
	}
	side.Header("mode %s in dir %s", GitIncremental, source.Path)
	rev, err := s.update(source, GitIncremental, "")
	if err != nil {
		return "", err
	}
	side.Header("cp -a %s %s", source.Path, work.Path)
	if err := side.CopyDir(source, work); err != nil {
		return "", err
	}
	return rev, nil
}

// overlap reports whether one of the clean relative paths a and b holds
// the other.
func overlap(a, b string) bool {
	return a == b || strings.HasPrefix(b+"/", a+"/") || strings.HasPrefix(a+"/", b+"/") || b == "."
}

// gitSeq is one run of RunGitSequence.
type gitSeq struct {
	side GitSide
	g    *GitCommand
}

// mustGit is side.Git, where a git command that fails ends the step.
func (s *gitSeq) mustGit(dir GitDir, capture bool, args ...string) (string, error) {
	res, stdout, err := s.side.Git(dir, capture, args...)
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 || res.Err != "" || res.Interrupted || res.TimedOut {
		res.Elapsed = 0
		return "", &GitStop{res}
	}
	return stdout, nil
}

// update brings the checkout in dir to the command's revision by mode and
// method (not copy), as buildbot's Git step does, and returns the commit
// checked out.
func (s *gitSeq) update(dir GitDir, mode, method string) (string, error) {
	g := s.g
	clobber := method == GitClobber
	isRepo, nonEmpty, err := s.side.Look(dir, !clobber)
	if err != nil {
		return "", err
	}
	if !clobber && !isRepo {
		// Not a checkout: a directory with files in it goes, as buildbot's
		// _sourcedirIsUpdatable says, since git clone would refuse it.
		clobber = nonEmpty
	}
	if clobber {
		s.side.Header("rm -rf %s", dir.Path)
		if err := s.side.Clobber(dir); err != nil {
			return "", err
		}
		isRepo = false
	}
	if !isRepo {
		if err := s.side.MakeDir(dir); err != nil {
			return "", err
		}
	}
	branch := strings.TrimPrefix(g.Branch, "refs/heads/")
	var depth []string
	if g.Depth > 0 {
		depth = []string{"--depth", strconv.Itoa(g.Depth)}
	}
	cleanFlags := []string{"clean", "-f", "-f", "-d"}
	if method == GitFresh {
		cleanFlags = append(cleanFlags, "-x")
	}
	cleaning := method == GitFresh || method == GitClean

	target := "HEAD"
	if !isRepo {
		args := []string{"clone", "--progress"}
		if branch != "" {
			args = append(args, "--branch="+branch)
		}
		args = append(append(args, depth...), "--", g.RepoURL, ".")
		if _, err := s.mustGit(dir, false, args...); err != nil {
			return "", err
		}
		if branch == "" { // the remote's HEAD branch, which clone checked out
			// (none when that HEAD is detached: -q exits 1, saying nothing)
			res, out, err := s.side.Git(dir, true, "symbolic-ref", "--short", "-q", "HEAD")
			if err != nil {
				return "", err
			}
			if res.Interrupted {
				return "", &GitStop{res}
			}
			branch = strings.TrimSpace(out)
		}
	} else {
		if cleaning {
			if _, err := s.mustGit(dir, false, cleanFlags...); err != nil {
				return "", err
			}
		}
		if branch == "" {
			var err error
			if branch, err = s.remoteHead(dir); err != nil {
				return "", err
			}
		}
		fetchRef := branch
		if fetchRef == "" {
			fetchRef = "HEAD" // a detached HEAD: no branch to name
		}
		args := append(append([]string{"fetch", "-f", "--progress"}, depth...), "--", g.RepoURL, fetchRef)
		if _, err := s.mustGit(dir, false, args...); err != nil {
			return "", err
		}
		target = "FETCH_HEAD"
	}

	if g.Revision != "" {
		res, out, err := s.side.Git(dir, true, "rev-parse", "--verify", "--quiet", g.Revision+"^{commit}")
		if err != nil {
			return "", err
		}
		if res.Interrupted || res.Err != "" {
			return "", &GitStop{res}
		}
		if res.ExitCode != 0 {
			on := branch
			if on == "" {
				on = "HEAD"
			}
			return "", &GitError{fmt.Sprintf("revision %s not found in %s (branch %s): it is not in the history fetched", g.Revision, g.RepoURL, on)}
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
		if _, err := s.mustGit(dir, false, args...); err != nil {
			return "", err
		}
	}
	if g.Submodules {
		if _, err := s.mustGit(dir, false, "submodule", "sync", "--recursive"); err != nil {
			return "", err
		}
		if _, err := s.mustGit(dir, false, append([]string{"submodule", "update", "--init", "--recursive", "--force", "--checkout"}, depth...)...); err != nil {
			return "", err
		}
		if cleaning {
			if _, err := s.mustGit(dir, false, "submodule", "foreach", "--recursive", "git "+strings.Join(cleanFlags, " ")); err != nil {
				return "", err
			}
			if _, err := s.mustGit(dir, false, cleanFlags...); err != nil {
				return "", err
			}
		}
	}
	out, err := s.mustGit(dir, true, "rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	rev := strings.TrimSpace(out)
	if len(rev) != 40 && len(rev) != 64 {
		return "", &GitError{fmt.Sprintf("git rev-parse HEAD said %q, not a commit id", rev)}
	}
	return rev, nil
}

// remoteHead returns the branch the remote's HEAD names (git ls-remote
// --symref), or "" when its HEAD is detached.
func (s *gitSeq) remoteHead(dir GitDir) (string, error) {
	out, err := s.mustGit(dir, true, "ls-remote", "--symref", "--", s.g.RepoURL, "HEAD")
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
		return "", &GitError{fmt.Sprintf("%s has no HEAD (an empty repository?): name a branch", s.g.RepoURL)}
	}
	return "", nil
}
