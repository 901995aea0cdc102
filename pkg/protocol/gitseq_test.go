package protocol

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// localSide runs RunGitSequence's work itself, with the git binary and
// the file system under base, and writes down each thing it is asked to
// do, in order: the sequence both workers run.
type localSide struct {
	base  string
	calls []string
}

func (s *localSide) Header(format string, args ...any) {
	s.calls = append(s.calls, "header "+fmt.Sprintf(format, args...))
}

func (s *localSide) Git(dir GitDir, capture bool, args ...string) (Result, string, error) {
	s.calls = append(s.calls, fmt.Sprintf("git[%s] %s", dir.Rel, strings.Join(args, " ")))
	cmd := exec.Command("git", args...)
	cmd.Dir = filepath.Join(s.base, dir.Rel)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return Result{ExitCode: exit.ExitCode()}, "", nil
	case err != nil:
		return Result{}, "", err
	}
	if !capture {
		return Result{}, "", nil
	}
	return Result{}, stdout.String(), nil
}

func (s *localSide) Look(dir GitDir, files bool) (bool, bool, error) {
	s.calls = append(s.calls, fmt.Sprintf("look %s %v", dir.Rel, files))
	p := filepath.Join(s.base, dir.Rel)
	if _, err := os.Lstat(filepath.Join(p, ".git")); err == nil {
		return true, true, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil && !os.IsNotExist(err) {
		return false, false, err
	}
	return false, len(entries) > 0, nil
}

func (s *localSide) Clobber(dir GitDir) error {
	s.calls = append(s.calls, "clobber "+dir.Rel)
	return os.RemoveAll(filepath.Join(s.base, dir.Rel))
}

func (s *localSide) MakeDir(dir GitDir) error {
	s.calls = append(s.calls, "mkdir "+dir.Rel)
	return os.MkdirAll(filepath.Join(s.base, dir.Rel), 0o755)
}

func (s *localSide) RemoveDir(dir GitDir) error {
	s.calls = append(s.calls, "rmdir "+dir.Rel)
	return os.RemoveAll(filepath.Join(s.base, dir.Rel))
}

func (s *localSide) CopyDir(from, to GitDir) error {
	s.calls = append(s.calls, "cpdir "+from.Rel+" "+to.Rel)
	if out, err := exec.Command("cp", "-a", filepath.Join(s.base, from.Rel), filepath.Join(s.base, to.Rel)).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a: %v: %s", err, out)
	}
	return nil
}

func testGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=A U Thor", "-c", "user.email=a@example.com"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestGitSequence pins the commands the git step runs, in order, with
// their arguments and the step's headers, for each mode and method: what
// gbb-worker runs itself and has a buildbot-worker run (pkg/worker,
// pkg/bbworker), and what TestGitAsGBBWorker compares between the two.
func TestGitSequence(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("the git step's tests need git: %v", err)
	}
	top := t.TempDir()
	repo := filepath.Join(top, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	testGit(t, repo, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(repo, "a.txt"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testGit(t, repo, "add", ".")
	testGit(t, repo, "commit", "-q", "-m", "first")
	first := testGit(t, repo, "rev-parse", "HEAD")
	base := filepath.Join(top, "base")
	if err := os.MkdirAll(filepath.Join(base, "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "junk", "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	dir := func(rel string) GitDir { return GitDir{Rel: rel, Path: "/B/" + rel} }
	steps := []struct {
		name string
		g    GitCommand
		work string
		want []string
		err  string // what RunGitSequence fails with, if it does
		stop bool   // and whether that is a *GitStop, not a *GitError
	}{
		{name: "first clone, a branch", g: GitCommand{Branch: "refs/heads/main", Depth: 1}, work: "build", want: []string{
			"header mode incremental in dir /B/build",
			"look build true",
			"mkdir build",
			"git[build] clone --progress --branch=main --depth 1 -- " + repo + " .",
			"git[build] rev-parse HEAD",
		}},
		{name: "incremental, the remote's HEAD", g: GitCommand{}, work: "build", want: []string{
			"header mode incremental in dir /B/build",
			"look build true",
			"git[build] ls-remote --symref -- " + repo + " HEAD",
			"git[build] fetch -f --progress -- " + repo + " main",
			"git[build] checkout -f -B main FETCH_HEAD --",
			"git[build] rev-parse HEAD",
		}},
		{name: "fresh, a revision", g: GitCommand{Branch: "main", Revision: first, Mode: GitFull, Method: GitFresh}, work: "build", want: []string{
			"header mode full, method fresh, in dir /B/build",
			"look build true",
			"git[build] clean -f -f -d -x",
			"git[build] fetch -f --progress -- " + repo + " main",
			"git[build] rev-parse --verify --quiet " + first + "^{commit}",
			"git[build] checkout -f -B main " + first + " --",
			"git[build] rev-parse HEAD",
		}},
		{name: "clean, submodules", g: GitCommand{Branch: "main", Mode: GitFull, Method: GitClean, Submodules: true}, work: "build", want: []string{
			"header mode full, method clean, in dir /B/build",
			"look build true",
			"git[build] clean -f -f -d",
			"git[build] fetch -f --progress -- " + repo + " main",
			"git[build] checkout -f -B main FETCH_HEAD --",
			"git[build] submodule sync --recursive",
			"git[build] submodule update --init --recursive --force --checkout",
			"git[build] submodule foreach --recursive git clean -f -f -d",
			"git[build] clean -f -f -d",
			"git[build] rev-parse HEAD",
		}},
		{name: "full: clobber", g: GitCommand{Mode: GitFull}, work: "build", want: []string{
			"header mode full, method clobber, in dir /B/build",
			"look build false",
			"header rm -rf /B/build",
			"clobber build",
			"mkdir build",
			"git[build] clone --progress -- " + repo + " .",
			"git[build] symbolic-ref --short -q HEAD",
			"git[build] rev-parse HEAD",
		}},
		{name: "a directory with files, not a checkout", g: GitCommand{Branch: "main"}, work: "junk", want: []string{
			"header mode incremental in dir /B/junk",
			"look junk true",
			"header rm -rf /B/junk",
			"clobber junk",
			"mkdir junk",
			"git[junk] clone --progress --branch=main -- " + repo + " .",
			"git[junk] rev-parse HEAD",
		}},
		{name: "copy", g: GitCommand{Branch: "main", Mode: GitFull, Method: GitCopy}, work: "build", want: []string{
			"header mode full, method copy, in dir /B/build",
			"header rm -rf /B/build",
			"rmdir build",
			"header mode incremental in dir /B/source",
			"look source true",
			"mkdir source",
			"git[source] clone --progress --branch=main -- " + repo + " .",
			"git[source] rev-parse HEAD",
			"header cp -a /B/source /B/build",
			"cpdir source build",
		}},
		{name: "copy into the source checkout", g: GitCommand{Branch: "main", Mode: GitFull, Method: GitCopy}, work: "./source/x", want: []string{
			"header mode full, method copy, in dir /B/./source/x",
		}, err: "method copy: workdir /B/./source/x and its source checkout /B/source overlap"},
		{name: "a revision not fetched", g: GitCommand{Revision: "0123456789012345678901234567890123456789"}, work: "build", want: []string{
			"header mode incremental in dir /B/build",
			"look build true",
			"git[build] ls-remote --symref -- " + repo + " HEAD",
			"git[build] fetch -f --progress -- " + repo + " main",
			"git[build] rev-parse --verify --quiet 0123456789012345678901234567890123456789^{commit}",
		}, err: "revision 0123456789012345678901234567890123456789 not found in " + repo + " (branch main): it is not in the history fetched"},
		{name: "a branch the remote lacks", g: GitCommand{Branch: "nope"}, work: "build", want: []string{
			"header mode incremental in dir /B/build",
			"look build true",
			"git[build] fetch -f --progress -- " + repo + " nope",
		}, err: "git step ended with code 128", stop: true},
	}
	for _, s := range steps {
		side := &localSide{base: base}
		g := s.g
		g.RepoURL = repo
		if err := g.Check(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		rev, err := RunGitSequence(side, &g, dir(s.work), dir(GitSourceDir))
		if diff := cmp.Diff(s.want, side.calls); diff != "" {
			t.Errorf("%s: calls (-want +got):\n%s", s.name, diff)
		}
		switch {
		case s.err != "":
			var stop *GitStop
			var gitErr *GitError
			if err == nil || err.Error() != s.err || s.stop && !errors.As(err, &stop) || !s.stop && !errors.As(err, &gitErr) {
				t.Errorf("%s: err = %#v, want %q", s.name, err, s.err)
			}
		case err != nil:
			t.Errorf("%s: %v", s.name, err)
		case len(rev) != 40:
			t.Errorf("%s: revision %q", s.name, rev)
		}
	}
}
