package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// TestGitCleanAndFresh tells method clean (git clean -f -f -d: ignored
// files stay) from method fresh (-x: they go too).
func TestGitCleanAndFresh(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	c1 := src.commit("first", map[string]string{".gitignore": "*.log\n/cache/\n", "f": "1", "keep/x": "x"})
	tests := []struct {
		method string
		flags  string
		gone   []string
		kept   []string
	}{
		{protocol.GitClean, gitHeader("clean", "-f", "-f", "-d"),
			[]string{"untracked", "udir", "keep/u", "mixed/u", "nested"},
			[]string{"build.log", "cache/obj", "keep/deep.log", "mixed/a.log"}},
		{protocol.GitFresh, gitHeader("clean", "-f", "-f", "-d", "-x"),
			[]string{"untracked", "udir", "keep/u", "mixed", "nested", "build.log", "cache", "keep/deep.log"},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			t.Parallel()
			e := NewExecutor(t.TempDir(), nil)
			build := filepath.Join(e.basedir, "b", "build")
			g := protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Mode: protocol.GitFull, Method: tt.method}
			mustGit(t, e, g, c1)
			for name, content := range map[string]string{
				"untracked": "u", "udir/deep/u": "u", "keep/u": "u", "mixed/u": "u", "mixed/a.log": "l",
				"nested/.git/HEAD": "ref: refs/heads/main\n", "build.log": "l", "cache/obj": "o", "keep/deep.log": "l",
				"f": "edited",
			} {
				p := filepath.Join(build, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rec := mustGit(t, e, g, c1)
			for _, p := range tt.gone {
				if exists(filepath.Join(build, p)) {
					t.Errorf("%s left %s", tt.method, p)
				}
			}
			for _, p := range tt.kept {
				if !exists(filepath.Join(build, p)) {
					t.Errorf("%s removed ignored %s", tt.method, p)
				}
			}
			for p, want := range map[string]string{"f": "1", "keep/x": "x", ".gitignore": "*.log\n/cache/\n"} {
				if got := readFile(t, filepath.Join(build, p)); got != want {
					t.Errorf("%s = %q, want %q", p, got, want)
				}
			}
			if h := rec.get(protocol.Header); strings.Contains(h, "'clone'") || !strings.Contains(h, tt.flags) {
				t.Errorf("header should fetch and say %q:\n%s", tt.flags, h)
			}
		})
	}
}

// TestGitCopy checks method copy: source/ is updated incrementally and
// copied to a new workdir each time.
func TestGitCopy(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	c1 := src.commit("first", map[string]string{"f": "1", "run.sh": "#!/bin/sh\n", "dir/g": "g"})
	src.git("update-index", "--chmod=+x", "run.sh")
	if err := os.Symlink("dir/g", filepath.Join(src.dir, "link")); err != nil {
		t.Fatal(err)
	}
	src.git("add", "link")
	c1 = src.commit("links and modes", nil)
	e := NewExecutor(t.TempDir(), nil)
	build := filepath.Join(e.basedir, "b", "build")
	source := filepath.Join(e.basedir, "b", "source")
	g := protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Mode: protocol.GitFull, Method: protocol.GitCopy}

	rec := mustGit(t, e, g, c1)
	if h := rec.get(protocol.Header); !strings.Contains(h, "rm -rf "+build) || !strings.Contains(h, "cp -a "+source+" "+build) {
		t.Errorf("header:\n%s", h)
	}
	for _, dir := range []string{source, build} {
		if got := readFile(t, filepath.Join(dir, "f")); got != "1" {
			t.Errorf("%s/f = %q", dir, got)
		}
		if fi, err := os.Stat(filepath.Join(dir, "run.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
			t.Errorf("%s/run.sh: %v, %v; want executable", dir, fi.Mode(), err)
		}
		if l, err := os.Readlink(filepath.Join(dir, "link")); err != nil || l != "dir/g" {
			t.Errorf("%s/link = %q, %v; want a symlink to dir/g", dir, l, err)
		}
	}
	// The copy is a git repository at the revision.
	if got := (&testRepo{t: t, dir: build}).git("rev-parse", "HEAD"); got != c1 {
		t.Errorf("copy's HEAD = %s, want %s", got, c1)
	}

	// The next build: products in the workdir go (it is removed); those in
	// source/ stay (it is updated incrementally) and are copied.
	os.WriteFile(filepath.Join(build, "product"), []byte("p"), 0o644)
	os.WriteFile(filepath.Join(source, "cached"), []byte("c"), 0o644)
	c2 := src.commit("second", map[string]string{"f": "2"})
	mustGit(t, e, g, c2)
	if exists(filepath.Join(build, "product")) {
		t.Error("the old workdir was not removed")
	}
	if !exists(filepath.Join(build, "cached")) || readFile(t, filepath.Join(build, "f")) != "2" {
		t.Error("the workdir is not a copy of the updated source/")
	}

	// A symlink out of the checkout is refused.
	os.Symlink("../../elsewhere", filepath.Join(source, "escape"))
	res, rec := gitCmd(t, t.Context(), e, g)
	if res.ExitCode != gitFatal || !strings.Contains(rec.get(protocol.Stderr), "symlink escape -> ../../elsewhere leads out of") {
		t.Errorf("result %+v, stderr %q; want the escaping symlink refused", res, rec.get(protocol.Stderr))
	}

	// A workdir overlapping source/ is refused.
	for _, w := range []string{"source", ".", "source/x"} {
		res, _ := gitCmd(t, t.Context(), e, protocol.GitCommand{RepoURL: src.dir, Workdir: w, Mode: protocol.GitFull, Method: protocol.GitCopy})
		if res.ExitCode != -1 || !strings.Contains(res.Err, "overlap") {
			t.Errorf("workdir %q: result = %+v, want refused", w, res)
		}
	}
}

// TestGitSubmodules checks out a repository whose submodule (which has one
// of its own) was added with the git CLI. They are served over HTTP: git
// refuses submodules from local paths by default (protocol.file.allow).
func TestGitSubmodules(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	url := serveGit(t, root)
	leaf := newTestRepoAt(t, filepath.Join(root, "leaf"))
	leaf.commit("leaf", map[string]string{"leaf.txt": "leaf\n"})
	mid := newTestRepoAt(t, filepath.Join(root, "mid"))
	mid.commit("mid", map[string]string{"mid.txt": "mid\n"})
	mid.git("submodule", "add", "-q", url+"/leaf", "deps/leaf")
	mid.commit("add leaf", nil)
	top := newTestRepoAt(t, filepath.Join(root, "top"))
	top.commit("top", map[string]string{"top.txt": "top\n"})
	top.git("submodule", "add", "-q", url+"/mid", "libs/mid")
	c1 := top.commit("add mid", nil)
	e := NewExecutor(t.TempDir(), nil)
	build := filepath.Join(e.basedir, "b", "build")

	// Without submodules, their directories stay empty.
	mustGit(t, e, protocol.GitCommand{RepoURL: top.dir, Workdir: "plain"}, c1)
	if exists(filepath.Join(e.basedir, "b", "plain", "libs", "mid", "mid.txt")) {
		t.Error("submodules = false checked out a submodule")
	}

	g := protocol.GitCommand{RepoURL: top.dir, Workdir: "build", Submodules: true}
	rec := mustGit(t, e, g, c1)
	for p, want := range map[string]string{"top.txt": "top\n", "libs/mid/mid.txt": "mid\n", "libs/mid/deps/leaf/leaf.txt": "leaf\n"} {
		if !exists(filepath.Join(build, p)) {
			t.Errorf("%s missing\nheader:\n%s", p, rec.get(protocol.Header))
		} else if got := readFile(t, filepath.Join(build, p)); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	// git itself sees the submodules checked out at the recorded commits.
	wc := &testRepo{t: t, dir: build}
	status := wc.git("submodule", "status", "--recursive")
	for _, line := range strings.Split(status, "\n") {
		if strings.ContainsAny(strings.TrimSpace(line)[:1], "-+U") { // uninitialized, another commit, conflicts
			t.Errorf("git submodule status:\n%s", status)
		}
	}
	if n := strings.Count(status, "\n") + 1; n != 2 {
		t.Errorf("git submodule status lists %d submodules, want 2:\n%s", n, status)
	}

	// The submodule moves on; an update follows it, and a fresh checkout
	// cleans inside the submodules too.
	mid.commit("mid 2", map[string]string{"mid.txt": "mid 2\n"})
	(&testRepo{t: t, dir: filepath.Join(top.dir, "libs", "mid")}).git("pull", "-q", "origin", "main")
	top.git("add", "libs/mid")
	c2 := top.commit("bump mid", nil)
	os.WriteFile(filepath.Join(build, "libs", "mid", "stray"), []byte("s"), 0o644)
	rec = mustGit(t, e, protocol.GitCommand{RepoURL: top.dir, Workdir: "build", Submodules: true, Mode: protocol.GitFull, Method: protocol.GitFresh}, c2)
	for _, want := range []string{
		gitHeader("submodule", "sync", "--recursive"),
		gitHeader("submodule", "update", "--init", "--recursive", "--force", "--checkout"),
		gitHeader("submodule", "foreach", "--recursive", "git clean -f -f -d -x"),
	} {
		if h := rec.get(protocol.Header); !strings.Contains(h, want) {
			t.Errorf("header does not say %q:\n%s", want, h)
		}
	}
	if got := readFile(t, filepath.Join(build, "libs", "mid", "mid.txt")); got != "mid 2\n" {
		t.Errorf("libs/mid/mid.txt = %q after the bump", got)
	}
	if exists(filepath.Join(build, "libs", "mid", "stray")) {
		t.Error("fresh left an untracked file in a submodule")
	}
	if !exists(filepath.Join(build, "libs", "mid", "deps", "leaf", "leaf.txt")) {
		t.Error("the nested submodule is gone")
	}
}
