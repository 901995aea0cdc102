package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reaperConfig's step starts a long-running child in the background and
// waits for it; its rerun (the marker "ran" exists) succeeds only if the
// first run's child is no longer running.
const reaperConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["orphan"]

[[builders]]
name = "orphan"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "spawn"
  command = '''
if [ -e {{.Dir}}/ran ]; then
  state=$(sed 's/.*) //' /proc/$(cat {{.Dir}}/child)/stat 2>/dev/null | cut -d' ' -f1)
  if [ -n "$state" ] && [ "$state" != Z ]; then echo "the first run's child still runs ($state)"; exit 1; fi
  echo "the first run's child is gone"; exit 0
fi
touch {{.Dir}}/ran
sleep 300 &
echo $! > {{.Dir}}/child
wait
'''
`

// procStart returns the start time (clock ticks since boot) of pid if it
// is a live process (not gone, not a zombie: the orphans here may have an
// init that does not reap them at once), else 0.
func procStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return start
}

// procRuns says whether the process pid that started at start (a
// procStart) still runs: the same pid with another start is another
// process.
func procRuns(pid int, start uint64) bool {
	return start != 0 && procStart(pid) == start
}

// TestReaperKilledWorker: a worker killed with SIGKILL while its step runs
// a long-running child leaves that child running (the step's process
// group is orphaned) and its build ends RETRY. The worker started again on
// the same basedir kills the group before it connects, says so in its log,
// and the rerun of the build, in the same directory, succeeds and sees no
// trace of the first run's child.
func TestReaperKilledWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(reaperConfig)
	e.startMaster()
	w := e.startWorkerAt("w1", "worker")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	brid := e.force("force", builderID(t, e, "orphan"), "kill its worker")
	child := waitPids(t, filepath.Join(e.Dir, "child"), 1)[0]
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	childStart := procStart(child)
	waitFor(t, "the step's group recorded", 30*time.Second, func() bool {
		entries, _ := os.ReadDir(filepath.Join(w.Basedir, ".gbb-running"))
		return len(entries) == 1
	})

	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.done
	var first apiBuild
	waitFor(t, "the build of the killed worker to end", 60*time.Second, func() bool {
		bs := e.buildsOf(brid)
		if len(bs) > 0 {
			first = bs[0]
		}
		return first.Complete
	})
	if first.Results == nil || *first.Results != 5 {
		t.Fatalf("build of the killed worker: %+v, want results 5 (RETRY)", first)
	}
	if !procRuns(child, childStart) {
		t.Fatalf("the step's child %d died with the worker: this test proves nothing", child)
	}

	w2 := e.startWorkerAt("w1", "worker")
	waitFor(t, "the first run's child gone", 30*time.Second, func() bool { return !procRuns(child, childStart) })
	var rerun apiBuild
	waitFor(t, "the rerun to end", 60*time.Second, func() bool {
		bs := e.buildsOf(brid)
		if len(bs) > 1 && bs[1].Complete {
			rerun = bs[1]
			return true
		}
		return false
	})
	var out string
	for _, s := range e.steps(rerun.BuildID) {
		if s.Name == "spawn" {
			out = e.stdio(s.StepID)
		}
	}
	if rerun.Results == nil || *rerun.Results != 0 {
		t.Errorf("rerun: %+v, want SUCCESS\n%s", rerun, out)
	}
	if !strings.Contains(out, "the first run's child is gone") {
		t.Errorf("rerun's output lacks that the first run's child is gone:\n%s", out)
	}
	log := w2.log()
	for _, want := range []string{"killed a command the last run of the worker left running", "builder=orphan"} {
		if !strings.Contains(log, want) {
			t.Errorf("restarted worker's log lacks %q:\n%s", want, log)
		}
	}
	// The log line of the reaping comes before the worker connects.
	if i, j := strings.Index(log, "killed a command"), strings.Index(log, "starting worker"); i < 0 || j < 0 || i > j {
		t.Errorf("the reaping is not logged before the worker starts connecting:\n%s", log)
	}
	if !e.workerConnected("w1") {
		t.Errorf("w1 is not shown connected after its restart")
	}
}

// TestReaperKeptStep: a worker keeping a step across its master's clean
// stop (finish_steps_on_restart) and killed with SIGKILL meanwhile kills
// that step when it starts again, before it reaches a master.
func TestReaperKeptStep(t *testing.T) {
	t.Parallel()
	e := newResumeEnv(t, "finish_steps_on_restart = true\nfinish_steps_wait = \"5m\"")
	e.startMaster()
	w := e.startWorkerAt("w1", "worker")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	_, _, pid := e.startFirstStep()
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	pidStart := procStart(pid)
	e.stopMaster()
	if !procRuns(pid, pidStart) {
		t.Fatalf("the step (pid %d) did not outlive its master's clean stop", pid)
	}

	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.done
	if !procRuns(pid, pidStart) {
		t.Fatalf("the kept step (pid %d) died with the worker: this test proves nothing", pid)
	}
	w2 := e.startWorkerAt("w1", "worker")
	waitFor(t, "the kept step gone", 30*time.Second, func() bool { return !procRuns(pid, pidStart) })
	waitFor(t, "the reaping logged", 30*time.Second, func() bool {
		log := w2.log()
		return strings.Contains(log, "killed a command the last run of the worker left running") && strings.Contains(log, fmt.Sprintf("pgid=%d ", pid))
	})
	if entries, err := os.ReadDir(filepath.Join(w2.Basedir, ".gbb-running")); err != nil || len(entries) != 0 {
		t.Errorf("records left after reaping: %v, %v", entries, err)
	}
}
