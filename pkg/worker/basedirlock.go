package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockFile is the file, under the worker's basedir, that a running worker
// holds locked (flock) for its whole life, its pid inside.
const LockFile = ".gbb-worker.lock"

// ErrBasedirInUse is returned by LockBasedir when another live process
// holds the basedir.
var ErrBasedirInUse = errors.New("is in use by another gbb-worker")

// BasedirLock is a worker's hold on its basedir (see LockBasedir).
type BasedirLock struct {
	f *os.File
}

// LockBasedir takes basedir for this process, as buildbot-worker's
// twistd.pid keeps a second worker off a basedir: two workers on one
// basedir would run builds in the same directories, and the second's
// ReapOrphans would kill the commands the first still runs. It creates
// basedir if need be, locks basedir/LockFile and writes this process's pid
// into it. When another process holds the lock, the error wraps
// ErrBasedirInUse and names the basedir and that process's pid. The lock
// is the kernel's: it goes with the process however it ends (SIGKILL
// included), and the commands the worker starts do not inherit it.
func LockBasedir(basedir string) (*BasedirLock, error) {
	if err := os.MkdirAll(basedir, 0o755); err != nil {
		return nil, fmt.Errorf("lock basedir: %w", err)
	}
	path := filepath.Join(basedir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock basedir: %w", err)
	}
	if err := flockNB(f); err != nil {
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock basedir: lock %s: %w", path, err)
		}
		holder := "pid unknown"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("basedir %s %w (%s, which holds %s): stop it first, or wait until it exits", basedir, ErrBasedirInUse, holder, path)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock basedir: write pid to %s: %w", path, err)
	}
	return &BasedirLock{f: f}, nil
}

// flockNB takes f's exclusive lock, failing with EWOULDBLOCK when another
// open file holds it; it retries on EINTR.
func flockNB(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Release gives the basedir up. The lock file stays: removing it would let
// a worker starting meanwhile lock a file that the next one no longer sees.
func (l *BasedirLock) Release() error {
	return l.f.Close()
}
