package worker

import (
	"os"
	"testing"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// TestCommandEnv: the worker builds a command's environment as
// buildbot-worker's runprocess does: lists joined with ":", each ${NAME}
// replaced by the worker's own NAME (empty when unset, never the literal),
// the step's PYTHONPATH followed by the worker's, other variables kept.
func TestCommandEnv(t *testing.T) {
	// Not parallel: it sets the worker's (this process's) environment.
	t.Setenv("GBB_T_OWN", "own")
	t.Setenv("PYTHONPATH", "/worker/py")
	e := NewExecutor(t.TempDir(), nil)
	r := newRecorder("")
	res := run(t, t.Context(), e, &protocol.ShellCommand{
		Script: `printf '%s|%s|%s|%s|%s\n' "$A" "$L" "$PYTHONPATH" "$GBB_T_OWN" "$HOME"`,
		Env: map[string]string{
			"A":          "x${GBB_T_OWN}y${GBB_T_UNSET_NOWHERE}z$HOME",
			"PYTHONPATH": "/step/py",
		},
		EnvLists: map[string][]string{"L": {"/a", "${GBB_T_OWN}", "/b"}},
	}, r)
	if res.ExitCode != 0 || res.Err != "" {
		t.Fatalf("result %+v, stderr %q", res, r.get(protocol.Stderr))
	}
	want := "xownyz$HOME|/a:own:/b|/step/py:/worker/py|own|" + os.Getenv("HOME") + "\n"
	if got := r.get(protocol.Stdout); got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
}
