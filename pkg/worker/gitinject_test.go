package worker

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// TestGitOptionInjection: a branch, revision or repository URL from a
// source stamp that starts with "-" is never given to git, where it would
// be an option (git fetch URL --upload-pack=CMD runs CMD), nor one with a
// control character; names with dashes inside still check out.
func TestGitOptionInjection(t *testing.T) {
	t.Parallel()
	src := newTestRepo(t)
	src.commit("first", map[string]string{"f": "1"})
	src.git("checkout", "-q", "-b", "fix/a-b-c")
	fix := src.commit("fix", map[string]string{"f": "fix"})
	src.git("checkout", "-q", "main")
	e := NewExecutor(t.TempDir(), nil)
	pwned := filepath.Join(t.TempDir(), "PWNED")
	upload := "--upload-pack=touch " + pwned + ";git-upload-pack"

	for _, tc := range []struct {
		name string
		g    protocol.GitCommand
	}{
		{"fresh clone, branch", protocol.GitCommand{RepoURL: src.dir, Workdir: "fresh", Branch: upload}},
		{"fetch, branch", protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Branch: upload}},
		{"fetch, refs/heads/ branch", protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Branch: "refs/heads/" + upload}},
		{"revision", protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Revision: "--output=" + pwned}},
		{"repourl", protocol.GitCommand{RepoURL: upload, Workdir: "build"}},
		{"NUL in branch", protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Branch: "main\x00x"}},
		{"newline in revision", protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Revision: "HEAD\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "fetch, branch" || tc.name == "revision" {
				mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build"}, src.git("rev-parse", "main"))
			}
			res, rec := gitCmd(t, t.Context(), e, tc.g)
			if res.ExitCode != gitFatal {
				t.Errorf("exit = %d, want %d (refused)", res.ExitCode, gitFatal)
			}
			if got := rec.get(protocol.Stderr); !strings.Contains(got, "fatal: refused: ") {
				t.Errorf("stderr = %q, want the refusal", got)
			}
			if strings.Contains(rec.get(protocol.Header), "'git', ") {
				t.Errorf("git ran: %s", rec.get(protocol.Header))
			}
			if exists(pwned) {
				t.Fatalf("%s exists: the value ran as a git option", pwned)
			}
		})
	}
	// A branch with dashes and slashes inside is a branch.
	mustGit(t, e, protocol.GitCommand{RepoURL: src.dir, Workdir: "build", Branch: "fix/a-b-c"}, fix)
}
