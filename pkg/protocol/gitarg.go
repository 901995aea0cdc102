package protocol

import (
	"fmt"
	"strings"
	"unicode"
)

// CheckGitArg returns an error when v, the value of a source stamp's
// field (branch, revision, repository) that the worker passes to git,
// could be taken as something else than the name it is: one starting with
// "-" (git would read it as an option: `git fetch URL --upload-pack=CMD`
// runs CMD), or one holding a NUL or another control character, which no
// ref name or URL holds (git check-ref-format refuses them, and a leading
// "-" in a branch name). Every name git itself would create passes. The
// error does not name the field: the caller does. The master refuses such
// values where they enter (force, change hooks, triggers) and the workers
// refuse them again before running git.
func CheckGitArg(v string) error {
	if strings.HasPrefix(v, "-") {
		return fmt.Errorf("%q starts with \"-\": git would read it as an option", v)
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		return fmt.Errorf("%q holds the control character %U", v, []rune(v[i:])[0])
	}
	return nil
}

// Check returns an error when a field of g that the worker passes to git
// is refused by CheckGitArg; the branch is checked as given and without
// refs/heads/, as the worker gives it to git.
func (g *GitCommand) Check() error {
	for _, f := range []struct{ name, v string }{{"repourl", g.RepoURL}, {"branch", g.Branch}, {"branch", strings.TrimPrefix(g.Branch, "refs/heads/")}, {"revision", g.Revision}} {
		if err := CheckGitArg(f.v); err != nil {
			return fmt.Errorf("%s %w", f.name, err)
		}
	}
	return nil
}
