package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// readProc reads /proc/PID/stat.
func readProc(pid int) (procInfo, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	// ESRCH: the process exited between the open and the read.
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return procInfo{}, errNoProcess
	}
	if err != nil {
		return procInfo{}, err
	}
	return parseStat(pid, string(data))
}

// parseStat parses a /proc/PID/stat line (proc(5)): the command's name, in
// parentheses, may hold anything, so the fields are those after the last
// ')'; from the state (field 3) on, field N is at N-3.
func parseStat(pid int, line string) (procInfo, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, line)
	}
	f := strings.Fields(line[i+1:])
	if len(f) < 20 {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 20", pid, len(f))
	}
	pgid, err1 := strconv.Atoi(f[2])
	sid, err2 := strconv.Atoi(f[3])
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return procInfo{pid: pid, pgid: pgid, sid: sid, start: start, zombie: f[0] == "Z" || f[0] == "X"}, nil
}

// groupProcs lists the processes of the group pgid, from /proc.
func groupProcs(pgid int) ([]procInfo, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var ps []procInfo
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		p, err := readProc(pid)
		if errors.Is(err, errNoProcess) {
			continue // exited meanwhile
		}
		if err != nil {
			return nil, err
		}
		if p.pgid == pgid {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// bootID names the system's current boot.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
