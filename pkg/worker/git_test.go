package worker

import (
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// testRepo is a repository made with the git binary.
type testRepo struct {
	t   *testing.T
	dir string
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	return newTestRepoAt(t, t.TempDir())
}

// newTestRepoAt makes a repository in dir, created when missing.
func newTestRepoAt(t *testing.T, dir string) *testRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("the git binary is needed to make test repositories: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &testRepo{t: t, dir: dir}
	r.git("init", "-q", "-b", "main")
	r.git("config", "http.receivepack", "false")
	return r
}

// serveGit serves the repositories under root over HTTP (git http-backend
// behind net/http/cgi, the path a real remote takes) and returns the URL
// of root.
func serveGit(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if !exists(backend) {
		t.Fatalf("git-http-backend (Debian's git package) is needed to serve the test remote: %s is missing", backend)
	}
	srv := httptest.NewServer(&cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	})
	t.Cleanup(srv.Close)
	return srv.URL
}

func (r *testRepo) git(args ...string) string {
	r.t.Helper()
	c := exec.Command("git", args...)
	c.Dir = r.dir
	c.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=A U Thor", "GIT_AUTHOR_EMAIL=a@example.com",
		"GIT_COMMITTER_NAME=A U Thor", "GIT_COMMITTER_EMAIL=a@example.com",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+r.dir)
	out, err := c.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (a "" content removes the file) and commits them; it
// returns the new commit's id.
func (r *testRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.dir, name)
		if content == "" {
			r.git("rm", "-q", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.git("add", name)
	}
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// gitCmd runs a git command for builder "b" and returns its result and
// output.
func gitCmd(t *testing.T, ctx context.Context, e *Executor, g protocol.GitCommand) (protocol.Result, *recorder) {
	t.Helper()
	rec := newRecorder("")
	res := e.Run(ctx, protocol.Command{Builder: "b", Git: &g}, rec.out)
	if res.Elapsed <= 0 {
		t.Errorf("Elapsed = %v, want > 0", res.Elapsed)
	}
	return res, rec
}

// mustGit runs g and fails the test unless it checked out want.
func mustGit(t *testing.T, e *Executor, g protocol.GitCommand, want string) *recorder {
	t.Helper()
	res, rec := gitCmd(t, t.Context(), e, g)
	if res.ExitCode != 0 || res.Err != "" || res.GotRevision != want {
		t.Fatalf("git = %+v, want exit 0 and revision %s\nheader:\n%s\nstderr:\n%s", res, want,
			rec.get(protocol.Header), rec.get(protocol.Stderr))
	}
	return rec
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gitHeader is the header line of a git command run with args, as the
// step writes it.
func gitHeader(args ...string) string {
	return quoteArgv(append([]string{"git"}, args...)) + "\n"
}

func TestGitCloneAndUpdate(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	c1 := src.commit("first", map[string]string{"hello.txt": "hello\n", "old.txt": "old\n"})
	e := NewExecutor(t.TempDir(), nil)
	build := filepath.Join(e.basedir, "b", "build")
	g := protocol.GitCommand{RepoURL: src.dir, Workdir: "build"}

	rec := mustGit(t, e, g, c1)
	if h := rec.get(protocol.Header); !strings.Contains(h, gitHeader("clone", "--progress", "--", src.dir, ".")) ||
		!strings.Contains(h, " in dir "+build+" ") || !strings.Contains(h, gitHeader("rev-parse", "HEAD")) {
		t.Errorf("header does not say what it did:\n%s", h)
	}
	if got := readFile(t, filepath.Join(build, "hello.txt")); got != "hello\n" {
		t.Errorf("hello.txt = %q", got)
	}
	// git's own messages are in the log.
	if out := rec.get(protocol.Stdout); !strings.Contains(out, c1+"\n") {
		t.Errorf("stdout = %q, want rev-parse's %s", out, c1)
	}
	if out := rec.get(protocol.Stderr); !strings.Contains(out, "Cloning into '.'...") {
		t.Errorf("stderr = %q, want git clone's messages", out)
	}

	// Incremental: a new commit arrives; build products stay, local edits
	// of tracked files and files deleted upstream go.
	c2 := src.commit("second", map[string]string{"hello.txt": "hello again\n", "old.txt": "", "sub/new.txt": "new\n"})
	os.WriteFile(filepath.Join(build, "product.o"), []byte("obj"), 0o644)
	os.MkdirAll(filepath.Join(build, "out"), 0o755)
	os.WriteFile(filepath.Join(build, "out", "bin"), []byte("bin"), 0o644)
	os.WriteFile(filepath.Join(build, "hello.txt"), []byte("edited"), 0o644)
	rec = mustGit(t, e, protocol.GitCommand{RepoURL: "file://" + src.dir, Workdir: "build"}, c2)
	if h := rec.get(protocol.Header); !strings.Contains(h, gitHeader("fetch", "-f", "--progress", "--", "file://"+src.dir, "main")) ||
		!strings.Contains(h, gitHeader("checkout", "-f", "-B", "main", "FETCH_HEAD", "--")) || strings.Contains(h, "'clone'") {
		t.Errorf("an update should fetch, not clone:\n%s", h)
	}
	if got := readFile(t, filepath.Join(build, "hello.txt")); got != "hello again\n" {
		t.Errorf("hello.txt = %q, want the new commit's", got)
	}
	if got := readFile(t, filepath.Join(build, "sub", "new.txt")); got != "new\n" {
		t.Errorf("sub/new.txt = %q", got)
	}
	if exists(filepath.Join(build, "old.txt")) {
		t.Error("old.txt, deleted upstream, is still there")
	}
	if !exists(filepath.Join(build, "product.o")) || !exists(filepath.Join(build, "out", "bin")) {
		t.Error("incremental mode removed untracked build products")
	}
	// The checkout is a usable git repository on branch main.
	wc := &testRepo{t: t, dir: build}
	if got := wc.git("rev-parse", "HEAD"); got != c2 {
		t.Errorf("git rev-parse HEAD = %s, want %s", got, c2)
	}
	if got := wc.git("symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Errorf("HEAD = %s, want refs/heads/main", got)
	}
	if got := wc.git("status", "--porcelain", "--untracked-files=no"); got != "" {
		t.Errorf("git status shows changes:\n%s", got)
	}
}

func TestGitRevisionAndBranch(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	c1 := src.commit("first", map[string]string{"f": "1"})
	c2 := src.commit("second", map[string]string{"f": "2"})
	src.git("checkout", "-q", "-b", "dev")
	d1 := src.commit("on dev", map[string]string{"f": "dev"})
	src.git("checkout", "-q", "main")
	e := NewExecutor(t.TempDir(), nil)
	f := filepath.Join(e.basedir, "b", "build", "f")

	mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build"}, c2)
	mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Revision: c1}, c1)
	if got := readFile(t, f); got != "1" {
		t.Errorf("at %s: f = %q, want 1", c1, got)
	}
	mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Branch: "dev"}, d1)
	if got := readFile(t, f); got != "dev" {
		t.Errorf("on dev: f = %q, want dev", got)
	}
	// A revision only on another branch than the one named is still found
	// in a local source.
	mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Branch: "main", Revision: d1}, d1)
	// A fresh clone of a revision given in short.
	mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "other", Revision: c1[:10]}, c1)
}

func TestGitFull(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	c1 := src.commit("first", map[string]string{"f": "1", "keep/x": "x"})
	e := NewExecutor(t.TempDir(), nil)
	build := filepath.Join(e.basedir, "b", "build")
	mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build"}, c1)

	t.Run("clobber", func(t *testing.T) {
		os.WriteFile(filepath.Join(build, "stray"), []byte("s"), 0o644)
		rec := mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Mode: protocol.GitFull}, c1)
		if exists(filepath.Join(build, "stray")) {
			t.Error("clobber left a stray file")
		}
		if h := rec.get(protocol.Header); !strings.Contains(h, "rm -rf "+build) || !strings.Contains(h, "'git', 'clone'") {
			t.Errorf("header:\n%s", h)
		}
		if got := readFile(t, filepath.Join(build, "f")); got != "1" {
			t.Errorf("f = %q", got)
		}
	})
	t.Run("fresh", func(t *testing.T) {
		c2 := src.commit("second", map[string]string{"f": "2"})
		os.WriteFile(filepath.Join(build, "untracked"), []byte("u"), 0o644)
		os.MkdirAll(filepath.Join(build, "udir", "deep"), 0o755)
		os.WriteFile(filepath.Join(build, "udir", "deep", "u"), []byte("u"), 0o644)
		os.WriteFile(filepath.Join(build, "keep", "u"), []byte("u"), 0o644)
		os.WriteFile(filepath.Join(build, "f"), []byte("edited"), 0o644)
		rec := mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Mode: protocol.GitFull, Method: protocol.GitFresh}, c2)
		for _, p := range []string{"untracked", "udir", "keep/u"} {
			if exists(filepath.Join(build, p)) {
				t.Errorf("fresh left untracked %s", p)
			}
		}
		if got := readFile(t, filepath.Join(build, "f")); got != "2" {
			t.Errorf("f = %q, want 2", got)
		}
		if got := readFile(t, filepath.Join(build, "keep", "x")); got != "x" {
			t.Errorf("keep/x = %q, want x", got)
		}
		if h := rec.get(protocol.Header); strings.Contains(h, "'clone'") || !strings.Contains(h, gitHeader("clean", "-f", "-f", "-d", "-x")) {
			t.Errorf("fresh should fetch and clean, not clone:\n%s", h)
		}
	})
}

// TestGitFailures checks that a failing git command ends the step with
// git's exit code and what git said on stderr, and that the worker's own
// checks fail as clearly.
func TestGitFailures(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	src.commit("first", map[string]string{"f": "1"})
	// A revision the remote has, but in no branch (a pull request's).
	src.git("checkout", "-q", "-b", "pr")
	pr := src.commit("pull request", map[string]string{"f": "pr"})
	src.git("checkout", "-q", "main")
	src.git("update-ref", "refs/pull/1/head", pr)
	src.git("branch", "-q", "-D", "pr")
	missing := filepath.Join(t.TempDir(), "nope")
	const unreachable = "http://127.0.0.1:1/repo.git"
	// A remote that wants a password: git must not wait at a prompt.
	private := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="private"`)
		http.Error(w, "who are you?", http.StatusUnauthorized)
	}))
	t.Cleanup(private.Close)
	tests := []struct {
		name   string
		update bool // on an existing checkout of src, so that git fetches
		g      protocol.GitCommand
		header string // the git command that failed
		stderr string
	}{
		{"no such path", false, protocol.GitCommand{RepoURL: "file://" + missing},
			gitHeader("clone", "--progress", "--", "file://"+missing, "."), "fatal: '" + missing + "' does not appear to be a git repository"},
		{"unreachable", false, protocol.GitCommand{RepoURL: unreachable},
			gitHeader("clone", "--progress", "--", unreachable, "."), "fatal: unable to access '" + unreachable + "/': Failed to connect to 127.0.0.1 port 1"},
		{"password wanted", false, protocol.GitCommand{RepoURL: private.URL + "/r.git"},
			gitHeader("clone", "--progress", "--", private.URL+"/r.git", "."), "fatal: could not read Username for '" + private.URL + "': terminal prompts disabled"},
		{"no such branch", false, protocol.GitCommand{RepoURL: src.dir, Branch: "nope"},
			gitHeader("clone", "--progress", "--branch=nope", "--", src.dir, "."), "fatal: Remote branch nope not found in upstream origin"},
		{"no such revision", false, protocol.GitCommand{RepoURL: src.dir, Revision: strings.Repeat("ab", 20)},
			"", "fatal: revision " + strings.Repeat("ab", 20) + " not found in " + src.dir + " (branch main)"},
		{"revision not in the branch", false, protocol.GitCommand{RepoURL: "file://" + src.dir, Branch: "main", Revision: pr},
			"", "fatal: revision " + pr + " not found in file://" + src.dir + " (branch main)"},
		{"fetch: no such path", true, protocol.GitCommand{RepoURL: "file://" + missing, Branch: "main"},
			gitHeader("fetch", "-f", "--progress", "--", "file://"+missing, "main"), "fatal: '" + missing + "' does not appear to be a git repository"},
		{"fetch: unreachable", true, protocol.GitCommand{RepoURL: unreachable, Branch: "main"},
			gitHeader("fetch", "-f", "--progress", "--", unreachable, "main"), "fatal: unable to access '" + unreachable + "/': Failed to connect to 127.0.0.1 port 1"},
		{"fetch: no such branch", true, protocol.GitCommand{RepoURL: src.dir, Branch: "nope"},
			gitHeader("fetch", "-f", "--progress", "--", src.dir, "nope"), "fatal: couldn't find remote ref nope"},
		{"update: remote HEAD unreachable", true, protocol.GitCommand{RepoURL: unreachable},
			gitHeader("ls-remote", "--symref", "--", unreachable, "HEAD"), "fatal: unable to access '" + unreachable + "/': Failed to connect to 127.0.0.1 port 1"},
		{"update: revision not in the branch", true, protocol.GitCommand{RepoURL: "file://" + src.dir, Branch: "main", Revision: pr},
			"", "fatal: revision " + pr + " not found in file://" + src.dir + " (branch main)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := NewExecutor(t.TempDir(), nil)
			if tt.update {
				mustGit(t, e, protocol.GitCommand{RepoURL: "file://" + src.dir, Workdir: "build"}, src.git("rev-parse", "main"))
			}
			tt.g.Workdir = "build"
			res, rec := gitCmd(t, t.Context(), e, tt.g)
			if res.ExitCode != gitFatal || res.GotRevision != "" || res.Err != "" {
				t.Errorf("result = %+v, want exit code %d", res, gitFatal)
			}
			stderr := rec.get(protocol.Stderr)
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to say %q", stderr, tt.stderr)
			}
			// The failing command is the last one run.
			h := rec.get(protocol.Header)
			if tt.header != "" && !strings.Contains(h, tt.header) || strings.Contains(h, "'rev-parse', 'HEAD'") {
				t.Errorf("header:\n%s\nwant %q and nothing run after it", h, tt.header)
			}
		})
	}
}

func TestGitWorkdirEscape(t *testing.T) {
	t.Parallel()
	e := NewExecutor(t.TempDir(), nil)
	for _, w := range []string{"../x", "/tmp", "a/../../x"} {
		res, rec := gitCmd(t, t.Context(), e, protocol.GitCommand{RepoURL: "/nowhere", Workdir: w})
		if res.ExitCode != -1 || !strings.Contains(res.Err, "escapes") {
			t.Errorf("workdir %q: result = %+v, want refused", w, res)
		}
		if !strings.Contains(rec.get(protocol.Header), "escapes") {
			t.Errorf("workdir %q: header = %q", w, rec.get(protocol.Header))
		}
	}
}

func TestGitInterrupt(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	src.commit("first", map[string]string{"f": "1"})
	e := NewExecutor(t.TempDir(), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, rec := gitCmd(t, ctx, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build"})
	if !res.Interrupted || res.ExitCode != -1 || res.GotRevision != "" {
		t.Errorf("result = %+v, want interrupted", res)
	}
	if !strings.Contains(rec.get(protocol.Header), "command interrupted") {
		t.Errorf("header = %q", rec.get(protocol.Header))
	}
}

// TestGitRemote fetches over HTTP (git http-backend behind net/http/cgi),
// the path a real remote takes, shallow and then incrementally.
func TestGitRemote(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	src.commit("first", map[string]string{"f": "1"})
	c2 := src.commit("second", map[string]string{"f": "2"})
	url := serveGit(t, filepath.Dir(src.dir)) + "/" + filepath.Base(src.dir)
	e := NewExecutor(t.TempDir(), nil)
	build := filepath.Join(e.basedir, "b", "build")

	rec := mustGit(t, e, protocol.GitCommand{RepoURL: url, Workdir: "build", Depth: 1}, c2)
	if h := rec.get(protocol.Header); !strings.Contains(h, gitHeader("clone", "--progress", "--depth", "1", "--", url, ".")) {
		t.Errorf("header:\n%s", h)
	}
	wc := &testRepo{t: t, dir: build}
	if got := wc.git("rev-list", "--count", "HEAD"); got != "1" {
		t.Errorf("a depth 1 clone has %s commits", got)
	}
	c3 := src.commit("third", map[string]string{"f": "3"})
	mustGit(t, e, protocol.GitCommand{RepoURL: url, Workdir: "build"}, c3)
	if got := readFile(t, filepath.Join(build, "f")); got != "3" {
		t.Errorf("f = %q, want 3", got)
	}
}

// TestGitMissing runs the step on a worker without git: it fails at once,
// saying what to install. (Not parallel: it empties PATH.)
func TestGitMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	e := NewExecutor(t.TempDir(), nil)
	res, rec := gitCmd(t, t.Context(), e, protocol.GitCommand{RepoURL: "https://example.com/r.git", Workdir: "build"})
	const want = "git not found in PATH: install git (FreeBSD: pkg install git-lite; Debian: apt-get install git)"
	if res.ExitCode != -1 || res.Err != want || res.GotRevision != "" {
		t.Errorf("result = %+v, want exit -1 and error %q", res, want)
	}
	if h := rec.get(protocol.Header); !strings.Contains(h, want) {
		t.Errorf("header = %q", h)
	}
}
