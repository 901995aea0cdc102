package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestWorkerJSONLogNamesBuild: the real worker with -log-format json
// writes its "command started" and "command finished" lines with the
// builder and the build's number, as the README promises, and the time a
// command took as elapsed_seconds, a number of seconds.
func TestWorkerJSONLogNamesBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["runtests"]

[[builders]]
name = "runtests"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = ["true"]
  [[builders.steps]]
  type = "shell"
  command = ["sh", "-c", "exit 0"]
`)
	e.startMaster()
	logPath := filepath.Join(e.Dir, "worker-w1.json.stderr")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.worker, "-master", fmt.Sprintf("127.0.0.1:%d", e.WorkerPort),
		"-name", "w1", "-password", "secret", "-basedir", filepath.Join(e.Dir, "worker-w1"), "-log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() { stopWorkerProcess(cmd.Process, done) })

	var builds []int64
	for range 2 {
		b := e.waitBuild(e.force("force", 1, "json log"), 90*time.Second)
		builds = append(builds, b.Number)
	}
	// Two builds of two commands: each number has 2 started, 2 finished.
	type count struct{ started, finished int }
	var got map[int64]*count
	var bad []string
	waitFor(t, "the worker's log of the last command", 20*time.Second, func() bool {
		data, _ := os.ReadFile(logPath)
		got, bad = map[int64]*count{}, nil
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				bad = append(bad, "not JSON: "+sc.Text())
				continue
			}
			msg := line["msg"]
			if msg != "command started" && msg != "command finished" {
				continue
			}
			n, ok := line["build"].(float64)
			if !ok || line["builder"] != "runtests" {
				bad = append(bad, "no build number or builder: "+sc.Text())
				continue
			}
			c := got[int64(n)]
			if c == nil {
				c = &count{}
				got[int64(n)] = c
			}
			if msg == "command started" {
				c.started++
				continue
			}
			c.finished++
			if s, ok := line["elapsed_seconds"].(float64); !ok || s < 0 || s > 60 {
				bad = append(bad, "no elapsed_seconds in seconds: "+sc.Text())
			}
		}
		return len(got) == 2 && got[builds[1]] != nil && got[builds[1]].finished == 2
	})
	for _, b := range bad {
		t.Errorf("the worker's log: %s", b)
	}
	for _, n := range builds {
		if c := got[n]; c == nil || c.started != 2 || c.finished != 2 {
			t.Errorf("build %d: worker's lines %+v, want 2 commands started and finished", n, c)
		}
	}
}
