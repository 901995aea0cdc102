//go:build linux

package worker

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// hangingServer listens on loopback and never accepts: the kernel
// completes the connections, and nobody ever answers, as a remote that
// hangs mid-fetch. It returns its address.
func hangingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// procName is the name (comm) of process pid, "" when it is gone.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// TestGitInterruptKillsChildren interrupts a clone from a remote that
// hangs: git runs in its own process group, recorded for the reaper, with
// its git-remote-http child; the interrupt kills the whole group.
func TestGitInterruptKillsChildren(t *testing.T) {
	t.Parallel()
	url := "http://" + hangingServer(t) + "/hang.git"
	basedir := t.TempDir()
	e := NewExecutor(basedir, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		res protocol.Result
		rec *recorder
	}
	done := make(chan result, 1)
	go func() {
		res, rec := gitCmd(t, ctx, e, protocol.GitCommand{RepoURL: url, Workdir: "build"})
		done <- result{res, rec}
	}()

	var pgid int
	waitCond(t, "git clone and its git-remote-http child, recorded", 30*time.Second, func() bool {
		recs := readRecords(t, basedir)
		if len(recs) != 1 {
			return false
		}
		pgid = recs[0].Pgid
		for _, p := range liveGroup(t, pgid) {
			if procName(p.pid) == "git-remote-http" {
				return true
			}
		}
		return false
	})
	procs := liveGroup(t, pgid)
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the interrupted git step did not end")
	}
	if !r.res.Interrupted || r.res.ExitCode != -1 || r.res.GotRevision != "" {
		t.Errorf("result = %+v, want interrupted", r.res)
	}
	if h := r.rec.get(protocol.Header); !strings.Contains(h, gitHeader("clone", "--progress", "--", url, ".")) ||
		!strings.Contains(h, "command interrupted") {
		t.Errorf("header:\n%s", h)
	}
	// runShell returns once the group's leader is reaped, after SIGKILL
	// to the group: the others are dead or dying.
	waitCond(t, "git's process group to die", 10*time.Second, func() bool {
		return len(liveGroup(t, pgid)) == 0
	})
	for _, p := range procs {
		if procAlive(p.pid) {
			t.Errorf("process %d (%s) of git's group survived the interrupt", p.pid, procName(p.pid))
		}
	}
	if recs := readRecords(t, basedir); len(recs) != 0 {
		t.Errorf("records left after the step: %+v", recs)
	}
}

// TestGitTimeouts: a git step whose remote hangs ends timed out, its
// whole process group killed, after timeout seconds without output (for
// each git command, as buildbot's Git step) or max_time in total.
func TestGitTimeouts(t *testing.T) {
	t.Parallel()
	url := "http://" + hangingServer(t) + "/hang.git"
	for _, tc := range []struct {
		name string
		g    protocol.GitCommand
		say  string
	}{
		{"timeout", protocol.GitCommand{Timeout: time.Second}, "1 seconds without output"},
		{"max_time", protocol.GitCommand{MaxTime: 2 * time.Second}, "the git step's max_time of 2 seconds elapsed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			basedir := t.TempDir()
			e := NewExecutor(basedir, nil)
			g := tc.g
			g.RepoURL, g.Workdir = url, "build"
			done := make(chan struct{})
			var res protocol.Result
			var rec *recorder
			go func() {
				defer close(done)
				res, rec = gitCmd(t, t.Context(), e, g)
			}()
			var pgid int
			waitCond(t, "git clone, recorded", 30*time.Second, func() bool {
				recs := readRecords(t, basedir)
				if len(recs) == 1 {
					pgid = recs[0].Pgid
				}
				return pgid != 0
			})
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatal("the git step of a hanging remote did not time out")
			}
			if !res.TimedOut || res.GotRevision != "" {
				t.Errorf("result = %+v, want timed out", res)
			}
			if h := rec.get(protocol.Header); !strings.Contains(h, "command timed out: ") || !strings.Contains(h, tc.say) {
				t.Errorf("header does not say %q:\n%s", tc.say, h)
			}
			waitCond(t, "git's process group to die", 10*time.Second, func() bool {
				return len(liveGroup(t, pgid)) == 0
			})
		})
	}
}
