//go:build linux

package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// reaperRole, in the environment, makes the test binary a worker process
// of TestReapOrphans: "run" runs one command and exits when it ends,
// "reap" runs ReapOrphans and exits; GBB_REAPER_BASEDIR is the basedir.
const reaperRole = "GBB_REAPER_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(reaperRole); role != "" {
		os.Exit(reaperWorker(role, os.Getenv("GBB_REAPER_BASEDIR")))
	}
	os.Exit(m.Run())
}

func reaperWorker(role, basedir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	switch role {
	case "run":
		res := NewExecutor(basedir, log).Run(context.Background(), protocol.Command{
			Builder: "b", Shell: &protocol.ShellCommand{Script: "sleep 300 & sleep 300"},
		}, func(protocol.Output) {})
		fmt.Fprintf(os.Stderr, "command ended: %+v\n", res)
		return 0
	case "reap":
		if err := ReapOrphans(basedir, log); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown %s %q\n", reaperRole, role)
	return 2
}

// startReaperWorker starts the test binary as a worker process in role.
func startReaperWorker(t *testing.T, role, basedir string, stderr *bytes.Buffer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), reaperRole+"="+role, "GBB_REAPER_BASEDIR="+basedir)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// waitCond polls cond until it holds, failing the test after timeout.
func waitCond(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// liveGroup returns the live (not zombie) processes of the group pgid.
func liveGroup(t *testing.T, pgid int) []procInfo {
	t.Helper()
	ps, err := groupProcs(pgid)
	if err != nil {
		t.Fatal(err)
	}
	var live []procInfo
	for _, p := range ps {
		if !p.zombie {
			live = append(live, p)
		}
	}
	return live
}

// procAlive says whether pid is a live process (a zombie is dead: this
// test's orphans are reaped by an init that may not reap).
func procAlive(pid int) bool {
	p, err := readProc(pid)
	return err == nil && !p.zombie
}

// readRecords returns the records of running commands under basedir.
func readRecords(t *testing.T, basedir string) []runningRecord {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(basedir, RunningDir))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []runningRecord
	for _, ent := range entries {
		if strings.HasSuffix(ent.Name(), ".tmp") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(basedir, RunningDir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var r runningRecord
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("record %s: %v: %q", ent.Name(), err, data)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestReapOrphans: a worker process runs `sh -c 'sleep 300 & sleep 300'`
// and is killed with SIGKILL; the command's group outlives it. A new
// worker process on the same basedir kills the whole group, says so, and
// clears the record. With the leader gone too (as a `make` writing to the
// dead worker's pipe dies of SIGPIPE), the rest of its group is still
// found and killed.
func TestReapOrphans(t *testing.T) {
	for _, leaderGone := range []bool{false, true} {
		t.Run(fmt.Sprintf("leaderGone=%v", leaderGone), func(t *testing.T) {
			t.Parallel()
			basedir := t.TempDir()
			var runLog bytes.Buffer
			w := startReaperWorker(t, "run", basedir, &runLog)
			var rec runningRecord
			waitCond(t, "the command's group recorded", 30*time.Second, func() bool {
				recs := readRecords(t, basedir)
				if len(recs) == 1 {
					rec = recs[0]
					return true
				}
				return false
			})
			t.Cleanup(func() { syscall.Kill(-rec.Pgid, syscall.SIGKILL) })
			if rec.Builder != "b" || rec.Argv[0] != "/bin/sh" {
				t.Errorf("record %+v, want builder b and argv /bin/sh -c ...", rec)
			}
			var pids []int
			waitCond(t, "both sleeps started", 30*time.Second, func() bool {
				pids = pids[:0]
				sleeps := 0
				for _, p := range liveGroup(t, rec.Pgid) {
					pids = append(pids, p.pid)
					if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid)); strings.TrimSpace(string(comm)) == "sleep" {
						sleeps++
					}
				}
				return sleeps == 2
			})

			if err := w.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			w.Wait()
			for _, pid := range pids {
				if !procAlive(pid) {
					t.Fatalf("process %d of the command died with the worker: nothing to reap\n%s", pid, &runLog)
				}
			}
			if leaderGone {
				if err := syscall.Kill(rec.Pgid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				waitCond(t, "the leader gone", 10*time.Second, func() bool { return !procAlive(rec.Pgid) })
				if len(liveGroup(t, rec.Pgid)) == 0 {
					t.Fatalf("the group died with its leader: nothing to reap")
				}
			}

			var reapLog bytes.Buffer
			r := startReaperWorker(t, "reap", basedir, &reapLog)
			if err := r.Wait(); err != nil {
				t.Fatalf("reaping worker: %v\n%s", err, &reapLog)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				var survivors []string
				for _, pid := range pids {
					if procAlive(pid) {
						stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
						survivors = append(survivors, string(stat))
					}
				}
				if len(survivors) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("processes of group %d still alive 10s after reaping: %q\nreaping worker's log:\n%s", rec.Pgid, survivors, &reapLog)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if live := liveGroup(t, rec.Pgid); len(live) != 0 {
				t.Errorf("group %d still has %+v", rec.Pgid, live)
			}
			logText := reapLog.String()
			for _, want := range []string{"killed a command the last run of the worker left running", fmt.Sprintf("pgid=%d", rec.Pgid), "builder=b"} {
				if !strings.Contains(logText, want) {
					t.Errorf("reaping worker's log lacks %q:\n%s", want, logText)
				}
			}
			if recs := readRecords(t, basedir); len(recs) != 0 {
				t.Errorf("records left after reaping: %+v", recs)
			}
		})
	}
}

// TestReapSparesReusedPid: a record whose pid now belongs to an unrelated
// process (another start time) does not kill it; the same record with the
// process's own start time does.
func TestReapSparesReusedPid(t *testing.T) {
	t.Parallel()
	basedir := t.TempDir()
	other := exec.Command("sleep", "300")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = other.Wait(); close(exited) }()
	t.Cleanup(func() {
		other.Process.Kill()
		<-exited
	})
	info, err := readProc(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	write := func(start uint64) {
		t.Helper()
		rec, err := json.Marshal(runningRecord{Pgid: info.pid, Start: start, Sid: info.sid, Boot: boot, Builder: "b", Argv: []string{"make"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(basedir, RunningDir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(basedir, RunningDir, fmt.Sprint(info.pid)), rec, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write(info.start - 1) // the recorded leader started before this process
	var log bytes.Buffer
	if err := ReapOrphans(basedir, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatalf("the unrelated process was killed: %v\n%s", waitErr, &log)
	default:
	}
	if !procAlive(info.pid) {
		t.Fatalf("the unrelated process %d is not alive after reaping\n%s", info.pid, &log)
	}
	if !strings.Contains(log.String(), "a command the last run left is gone") {
		t.Errorf("log lacks that the recorded command is gone:\n%s", &log)
	}
	if recs := readRecords(t, basedir); len(recs) != 0 {
		t.Errorf("records left after reaping: %+v", recs)
	}

	// The control: the process's own identity gets it killed.
	write(info.start)
	log.Reset()
	if err := ReapOrphans(basedir, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if ee, ok := waitErr.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("the recorded process ended with %v, want SIGKILL", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the recorded process was not killed\n%s", &log)
	}
}

// TestReapBadRecords: a half-written or garbled record is dropped with a
// warning that shows it; ReapOrphans goes on and clears the directory.
func TestReapBadRecords(t *testing.T) {
	t.Parallel()
	basedir := t.TempDir()
	dir := filepath.Join(basedir, RunningDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"123.tmp": `{"pgid":`, "456": "not json", "789": `{"pgid":1}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	if err := ReapOrphans(basedir, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("records left: %v, %v", entries, err)
	}
	for _, want := range []string{`content="not json"`, `content="{\"pgid\":1}"`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, &log)
		}
	}
}

// TestExecutorRecordsRunning: a running command is recorded with its
// leader's identity, and the record goes when the command ends.
func TestExecutorRecordsRunning(t *testing.T) {
	t.Parallel()
	basedir := t.TempDir()
	e := NewExecutor(basedir, nil)
	r := newRecorder("started")
	done := make(chan protocol.Result, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		done <- e.Run(ctx, protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Script: "echo started; sleep 300"}}, r.out)
	}()
	<-r.seen
	recs := readRecords(t, basedir)
	if len(recs) != 1 {
		t.Fatalf("records while the command runs: %+v, want 1", recs)
	}
	leader, err := readProc(recs[0].Pgid)
	if err != nil || leader.start != recs[0].Start || leader.pgid != recs[0].Pgid {
		t.Errorf("record %+v does not match its leader %+v (%v)", recs[0], leader, err)
	}
	cancel()
	if res := <-done; !res.Interrupted {
		t.Errorf("result %+v, want interrupted", res)
	}
	if recs := readRecords(t, basedir); len(recs) != 0 {
		t.Errorf("records after the command ended: %+v", recs)
	}
}
