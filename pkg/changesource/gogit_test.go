package changesource

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gbb-ci/gbb/pkg/store"
)

// goGitRepo is a repository made for a test with go-git instead of the
// git binary, with the same authors and times as repo.
type goGitRepo struct {
	t   *testing.T
	dir string
	r   *git.Repository
	n   int
}

func newGoGitRepo(t *testing.T) *goGitRepo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "upstream")
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.Main},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &goGitRepo{t: t, dir: dir, r: r}
}

// commit writes files (name, content pairs; an empty content removes the
// file) and commits them with msg, returning the new revision.
func (g *goGitRepo) commit(msg string, files ...string) string {
	g.t.Helper()
	wt, err := g.r.Worktree()
	if err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i+1 < len(files); i += 2 {
		name, content := files[i], files[i+1]
		if content == "" {
			if _, err := wt.Remove(name); err != nil {
				g.t.Fatal(err)
			}
			continue
		}
		path := filepath.Join(g.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			g.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			g.t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			g.t.Fatal(err)
		}
	}
	when := base.Add(time.Duration(g.n) * time.Minute)
	h, err := wt.Commit(msg, &git.CommitOptions{
		Author:            &object.Signature{Name: "A U Thor", Email: "author@example.org", When: when},
		Committer:         &object.Signature{Name: "C O Mitter", Email: "committer@example.org", When: when},
		AllowEmptyCommits: true,
	})
	if err != nil {
		g.t.Fatal(err)
	}
	g.n++
	return h.String()
}

// TestPollGoGitRepository polls a repository made with go-git and one made
// with the git binary with the same history: the changes announced are the
// same, down to the revisions.
func TestPollGoGitRepository(t *testing.T) {
	t.Parallel()
	cli, gg := newRepo(t), newGoGitRepo(t)
	cli.commit("initial", "README", "hello\n")
	gg.commit("initial\n", "README", "hello\n")

	announced := map[string][]store.Change{}
	var revs []string
	for name, url := range map[string]string{"cli": cli.url(), "go-git": "file://" + gg.dir} {
		db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
		p, rec := newTestPoller(t, GitPollerConfig{RepoURL: url, RevLink: "https://example.org/commit/%s"}, db)
		poll(t, p)
		switch name {
		case "cli":
			revs = append(revs,
				cli.commit("add a\n\nwith a body\n", "a.go", "package a\n", "dir/b.go", "package b\n"),
				cli.commit("change a", "a.go", "package a // changed\n"))
			cli.git("rm", "-q", "README")
			revs = append(revs, cli.commit("remove README"))
		case "go-git":
			gg.commit("add a\n\nwith a body\n", "a.go", "package a\n", "dir/b.go", "package b\n")
			gg.commit("change a\n", "a.go", "package a // changed\n")
			gg.commit("remove README\n", "README", "")
		}
		poll(t, p)
		announced[name] = rec.take()
	}
	if len(announced["cli"]) != 3 {
		t.Fatalf("the git binary's repository announced %d changes, want 3:\n%+v", len(announced["cli"]), announced["cli"])
	}
	for i, c := range announced["cli"] {
		if c.Revision != revs[i] {
			t.Errorf("change %d: revision %s, want %s", i, c.Revision, revs[i])
		}
	}
	if diff := cmp.Diff(announced["cli"], announced["go-git"], cmpopts.IgnoreFields(store.Change{}, "Repository")); diff != "" {
		t.Errorf("changes of the go-git repository differ from the git binary's (-cli +go-git):\n%s", diff)
	}
	for _, c := range announced["go-git"] {
		if want := "file://" + gg.dir; c.Repository != want {
			t.Errorf("change %s: repository %q, want %q", c.Revision, c.Repository, want)
		}
	}
}
