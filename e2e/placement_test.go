package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// placementConfig: builder "serial" (id 1) records the start and end of
// each of its builds in a file; builders "meet-a" and "meet-b" (ids 2, 3)
// each wait for the other to have started; builder "pair" (id 4) runs on
// two workers, and each of its builds waits for the other to have started.
// None sets max_builds, so the worker's limit is not what orders them.
const placementConfig = loopback + workerW1 + `
[[workers]]
name = "w2"
password = "secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["serial", "meet-a", "meet-b", "pair"]

[[builders]]
name = "serial"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo S %(prop:buildnumber)s >> {{.Dir}}/serial.log; sleep 1; echo E %(prop:buildnumber)s >> {{.Dir}}/serial.log"

[[builders]]
name = "meet-a"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "touch {{.Dir}}/meet-a; i=0; until [ -e {{.Dir}}/meet-b ]; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done"

[[builders]]
name = "meet-b"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "touch {{.Dir}}/meet-b; i=0; until [ -e {{.Dir}}/meet-a ]; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done"

[[builders]]
name = "pair"
worker_names = ["w1", "w2"]
  [[builders.steps]]
  type = "shell"
  command = "touch {{.Dir}}/pair-%(prop:workername)s-%(prop:buildnumber)s; i=0; until [ $(ls {{.Dir}} | grep -c '^pair-') -ge 2 ]; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done"
`

// TestPlacementOneBuildPerBuilderAndWorker: as buildbot's WorkerForBuilder,
// a builder's builds on one worker run one after another, though the worker
// has no max_builds. The three requests wait before the worker connects, so
// a distributor that put them all on it at once would do so in one round.
func TestPlacementOneBuildPerBuilderAndWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(placementConfig)
	e.startMaster()
	var reqs []int64
	for i := range 3 {
		reqs = append(reqs, e.force("force", 1, fmt.Sprint("serial ", i)))
	}
	e.startWorker("w1", "secret")
	for _, r := range reqs {
		if b := e.waitBuild(r, 90*time.Second); *b.Results != 0 {
			t.Fatalf("build %d of request %d: results %d", b.BuildID, r, *b.Results)
		}
	}
	data, err := os.ReadFile(filepath.Join(e.Dir, "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 6 {
		t.Fatalf("serial.log has %d lines, want 6:\n%s", len(lines), data)
	}
	for i := 0; i < len(lines); i += 2 {
		s, e := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(s) != 2 || len(e) != 2 || s[0] != "S" || e[0] != "E" || s[1] != e[1] {
			t.Fatalf("builds of one builder on one worker overlapped:\n%s", data)
		}
	}
}

// TestPlacementBuildersShareWorker: builds of two builders run on one
// worker at once (each step waits for the other's to start).
func TestPlacementBuildersShareWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(placementConfig)
	e.startMaster()
	ra := e.force("force", 2, "meet a")
	rb := e.force("force", 3, "meet b")
	e.startWorker("w1", "secret")
	for _, r := range []int64{ra, rb} {
		if b := e.waitBuild(r, 90*time.Second); *b.Results != 0 {
			t.Errorf("build %d of request %d: results %d: the builders did not run at once", b.BuildID, r, *b.Results)
		}
	}
}

// TestPlacementBuilderOnTwoWorkers: with two workers, two builds of one
// builder run at once, one on each (each step waits for the other's to
// start).
func TestPlacementBuilderOnTwoWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(placementConfig)
	e.startMaster()
	r1 := e.force("force", 4, "pair 1")
	r2 := e.force("force", 4, "pair 2")
	e.startWorker("w1", "secret")
	e.startWorker("w2", "secret")
	workers := map[int64]bool{}
	for _, r := range []int64{r1, r2} {
		b := e.waitBuild(r, 90*time.Second)
		if *b.Results != 0 {
			t.Errorf("build %d of request %d: results %d: the builds did not run at once", b.BuildID, r, *b.Results)
		}
		workers[b.WorkerID] = true
	}
	if len(workers) != 2 {
		t.Errorf("the two builds ran on workers %v, want one on each", workers)
	}
	ents, err := os.ReadDir(e.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var marks []string
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), "pair-") {
			marks = append(marks, d.Name())
		}
	}
	if len(marks) != 2 || strings.Split(marks[0], "-")[1] == strings.Split(marks[1], "-")[1] {
		t.Errorf("marks %v: want one build on w1 and one on w2", marks)
	}
}
