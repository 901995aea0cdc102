package protocol

import "testing"

func TestCheckGitArg(t *testing.T) {
	for _, ok := range []string{"", "main", "release/1.x-rc-2", "refs/heads/feature/a-b", "v1.0-rc1", "0123abc", "HEAD~1", "https://example.org/r.git", "git@example.org:r.git", "ünïcode"} {
		if err := CheckGitArg(ok); err != nil {
			t.Errorf("CheckGitArg(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"-", "--upload-pack=touch x", "-b", "main\x00", "ma\nin", "a\tb", "x\x7f", "x\u0085"} {
		if err := CheckGitArg(bad); err == nil {
			t.Errorf("CheckGitArg(%q) = nil, want an error", bad)
		}
	}
	g := &GitCommand{RepoURL: "r", Branch: "refs/heads/-x"}
	if err := g.Check(); err == nil || err.Error() != `branch "-x" starts with "-": git would read it as an option` {
		t.Errorf("Check of refs/heads/-x = %v", err)
	}
}
