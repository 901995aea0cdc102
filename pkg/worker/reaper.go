package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// RunningDir is the directory, under the worker's basedir, that records
// the process group of each command running (see ReapOrphans).
const RunningDir = ".gbb-running"

// reapWait bounds how long ReapOrphans waits for the groups it killed to
// be gone.
const reapWait = 10 * time.Second

// errNoProcess says a process (or every process of a group) is gone.
var errNoProcess = errors.New("no such process")

// procInfo is what identifies a process across a restart of the worker.
type procInfo struct {
	pid, pgid, sid int
	// start is when the process started, in a unit of the system's (clock
	// ticks since boot on Linux, microseconds since the epoch on FreeBSD):
	// a pid reused by another process has another start.
	start  uint64
	zombie bool // exited, not yet reaped: nothing left to kill
}

// runningRecord is the file RunningDir/<pgid> that a command's group is
// recorded in while it runs.
type runningRecord struct {
	Pgid int `json:"pgid"`
	// Start and Sid are the leader's procInfo.start and session, Boot the
	// system's boot: together they tell the group from an unrelated one
	// that reused its id.
	Start   uint64    `json:"start"`
	Sid     int       `json:"sid"`
	Boot    string    `json:"boot"`
	Builder string    `json:"builder"`
	Argv    []string  `json:"argv"`
	Started time.Time `json:"started"`
}

// recordRunning records the group of the command just started, whose
// leader is pid, in dir; the returned func removes the record.
func recordRunning(dir string, pid int, builder string, argv []string) (func(), error) {
	leader, err := readProc(pid)
	if err != nil {
		return nil, fmt.Errorf("identify process %d: %w", pid, err)
	}
	boot, err := bootID()
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(runningRecord{
		Pgid: pid, Start: leader.start, Sid: leader.sid, Boot: boot,
		Builder: builder, Argv: argv, Started: time.Now().UTC(),
	})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("record running command: %w", err)
	}
	path := filepath.Join(dir, strconv.Itoa(pid))
	// Written aside and renamed, so that a worker killed meanwhile leaves
	// no half record.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("record running command: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("record running command: %w", err)
	}
	return func() { os.Remove(path) }, nil
}

// ReapOrphans kills the commands that a previous run of the worker on
// basedir left running: a worker killed with SIGKILL (or a crash, or the
// OOM killer) cannot kill its commands' process groups itself, and their
// processes would go on running in the build directories the master gives
// to the next builds. It sends SIGKILL to each group recorded in
// basedir/RunningDir that is still the one recorded, logs what it killed,
// waits (up to reapWait) for it to be gone, and clears the records. Call
// it before the worker connects, while no command of its own runs, and
// holding basedir (LockBasedir): the commands of a worker still running on
// basedir are recorded there too.
func ReapOrphans(basedir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(basedir, RunningDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the records of running commands: %w", err)
	}
	boot, bootErr := bootID()
	var killed []runningRecord
	for _, ent := range entries {
		path := filepath.Join(dir, ent.Name())
		if strings.HasSuffix(ent.Name(), ".tmp") {
			os.Remove(path) // the worker died writing it: its group was recorded nowhere else, see recordRunning
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			log.Warn("cannot read the record of a command the last run left", "file", path, "err", err)
			continue
		}
		var rec runningRecord
		if err := json.Unmarshal(data, &rec); err != nil || rec.Pgid <= 1 {
			// Records hold argv with the secrets hidden; URL passwords are
			// hidden again for a record an older worker wrote.
			log.Warn("discarding a bad record of a command the last run left", "file", path, "content", protocol.NewHider(nil).Hide(string(data)), "err", err)
			os.Remove(path)
			continue
		}
		l := log.With("pgid", rec.Pgid, "builder", rec.Builder, "argv", protocol.NewHider(nil).HideAll(rec.Argv), "started", rec.Started)
		switch {
		case bootErr != nil:
			l.Error("cannot tell whether a command the last run left still runs; not killing it, keeping its record for the next start", "file", path, "err", bootErr)
			continue
		case rec.Boot != boot:
			l.Info("a command the last run left died with the reboot")
		default:
			pids, err := orphanGroup(rec)
			switch {
			case errors.Is(err, errNoProcess):
				l.Info("a command the last run left is gone")
			case err != nil:
				l.Error("cannot tell whether a command the last run left still runs; not killing it, keeping its record for the next start", "file", path, "err", err)
				continue
			default:
				err := syscall.Kill(-rec.Pgid, syscall.SIGKILL)
				if err != nil && !errors.Is(err, syscall.ESRCH) {
					l.Error("cannot kill a command the last run left running", "pids", pids, "err", err)
					continue // keep the record: the next start tries again
				}
				l.Warn("killed a command the last run of the worker left running", "pids", pids)
				killed = append(killed, rec)
			}
		}
		os.Remove(path)
	}
	deadline := time.Now().Add(reapWait)
	for _, rec := range killed {
		for {
			_, err := orphanGroup(rec)
			if errors.Is(err, errNoProcess) {
				break
			}
			if time.Now().After(deadline) {
				log.Error("a killed command's processes are still there", "pgid", rec.Pgid, "after", reapWait, "err", err)
				break
			}
			time.Sleep(10 * time.Millisecond) // polling the kernel: nothing to wait on for another's processes
		}
	}
	return nil
}

// orphanGroup returns the live processes of the group rec recorded, or
// errNoProcess if there is none. The group is rec's if its leader is the
// process recorded (same pid and start); or, the leader gone, if processes
// of the same session still have its id as their group: an id cannot be
// reused while a group has it, and a new group under a reused id would be
// a later session's.
func orphanGroup(rec runningRecord) ([]int, error) {
	leader, err := readProc(rec.Pgid)
	switch {
	case err == nil && !leader.zombie && leader.start != rec.Start:
		return nil, errNoProcess // the id is another process's now
	case err != nil && !errors.Is(err, errNoProcess):
		return nil, err
	}
	members, err := groupProcs(rec.Pgid)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range members {
		if !p.zombie && p.sid == rec.Sid && p.start >= rec.Start {
			pids = append(pids, p.pid)
		}
	}
	if len(pids) == 0 {
		return nil, errNoProcess
	}
	return pids, nil
}
