package protocol

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// runTestGit is testExecutor's git command: it echoes the command's fields
// on the header stream and reports its revision (or "tip") as checked out.
func runTestGit(g *GitCommand, out func(Output)) Result {
	out(Output{Stream: Header, Data: fmt.Appendf(nil, "%+v", *g)})
	rev := g.Revision
	if rev == "" {
		rev = "tip"
	}
	return Result{GotRevision: rev}
}

func TestGitCommand(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)

	g := GitCommand{RepoURL: "https://example.com/r.git", Branch: "dev", Revision: "abc123", Mode: GitFull, Method: GitCopy, Depth: 3, Workdir: "src",
		Submodules: true, SSHPrivateKeyFile: "/home/w/.ssh/id_ed25519", Timeout: 90 * time.Second, MaxTime: time.Hour}
	res, out, err := collect(t, t.Context(), c, Command{Builder: "b", Git: &g})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{GotRevision: "abc123"}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if want := []string{"header:" + fmt.Sprintf("%+v", g)}; !cmp.Equal(want, out) {
		t.Errorf("output = %q, want %q (every field must cross the wire)", out, want)
	}
}

func TestGitCommandRefused(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	for _, cmd := range []Command{
		{Builder: "b", Git: &GitCommand{}},
		{Builder: "b", Git: &GitCommand{RepoURL: "u", Mode: "sideways"}},
		{Builder: "b", Git: &GitCommand{RepoURL: "u", Mode: GitFull, Method: "rsync"}},
		{Builder: "b", Git: &GitCommand{RepoURL: "u", Depth: -1}},
		{Builder: "b", Git: &GitCommand{RepoURL: "u"}, Shell: &ShellCommand{Argv: []string{"echo"}}},
	} {
		if _, _, err := collect(t, t.Context(), c, cmd); err == nil {
			t.Errorf("Run(%+v) succeeded, want a validation error", cmd.Git)
		}
	}
}
