package worker

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// struct kinfo_proc (sys/user.h) on FreeBSD's 64-bit platforms (amd64,
// arm64: both little-endian, the same layout): its size, and the offsets
// of the fields read. x/sys/unix does not define it for FreeBSD; each
// record's ki_structsize is checked against kinfoSize, so that another
// layout is an error, never a misreading.
const (
	kinfoSize     = 1088
	kinfoPid      = 72  // ki_pid, int32
	kinfoPgid     = 80  // ki_pgid, int32
	kinfoSid      = 88  // ki_sid, int32
	kinfoStartSec = 336 // ki_start, struct timeval: int64 seconds...
	kinfoStartUs  = 344 // ...and int64 microseconds
	kinfoStat     = 388 // ki_stat, int8
	sZomb         = 5   // SZOMB (sys/proc.h)
)

// parseKinfo parses one struct kinfo_proc.
func parseKinfo(b []byte) (procInfo, error) {
	if len(b) < kinfoSize {
		return procInfo{}, fmt.Errorf("kinfo_proc: %d bytes, want %d", len(b), kinfoSize)
	}
	le := binary.LittleEndian
	if size := int32(le.Uint32(b)); size != kinfoSize {
		return procInfo{}, fmt.Errorf("kinfo_proc: ki_structsize %d, this worker knows %d only", size, kinfoSize)
	}
	sec, usec := int64(le.Uint64(b[kinfoStartSec:])), int64(le.Uint64(b[kinfoStartUs:]))
	return procInfo{
		pid:    int(int32(le.Uint32(b[kinfoPid:]))),
		pgid:   int(int32(le.Uint32(b[kinfoPgid:]))),
		sid:    int(int32(le.Uint32(b[kinfoSid:]))),
		start:  uint64(sec*1_000_000 + usec),
		zombie: b[kinfoStat] == sZomb,
	}, nil
}

// readProc reads the process pid's kinfo_proc (sysctl kern.proc.pid.PID).
func readProc(pid int) (procInfo, error) {
	b, err := unix.SysctlRaw("kern.proc.pid", pid)
	if errors.Is(err, unix.ESRCH) || (err == nil && len(b) == 0) {
		return procInfo{}, errNoProcess
	}
	if err != nil {
		return procInfo{}, fmt.Errorf("sysctl kern.proc.pid.%d: %w", pid, err)
	}
	return parseKinfo(b)
}

// groupProcs lists the processes of the group pgid (sysctl
// kern.proc.pgrp.PGID).
func groupProcs(pgid int) ([]procInfo, error) {
	b, err := unix.SysctlRaw("kern.proc.pgrp", pgid)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sysctl kern.proc.pgrp.%d: %w", pgid, err)
	}
	var ps []procInfo
	for len(b) > 0 {
		p, err := parseKinfo(b)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
		b = b[kinfoSize:]
	}
	return ps, nil
}

// bootID names the system's current boot by its time.
func bootID() (string, error) {
	tv, err := unix.SysctlTimeval("kern.boottime")
	if err != nil {
		return "", fmt.Errorf("sysctl kern.boottime: %w", err)
	}
	return fmt.Sprintf("%d.%06d", tv.Sec, tv.Usec), nil
}
