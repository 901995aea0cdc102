package daemon

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// LogMode is the mode of the log files the gbb programs create: a log can
// hold what builds printed and the commands they ran, so only the
// programs' own user may read it.
const LogMode = 0o600

// MsgLogReopened is the line a program logs into its log file right after
// Reopen; reopen-logs waits for it in the file at the log's path.
const MsgLogReopened = "log file reopened"

// openLog opens path for appending, creating it with LogMode. An existing
// file that others may read or write (made by an older gbb, or by hand)
// is made LogMode; when that fails, so does openLog.
func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, LogMode)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open log file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(LogMode); err != nil {
			f.Close()
			return nil, fmt.Errorf("log file %s has mode %v, open to others, and cannot be made %04o: %w", path, fi.Mode().Perm(), LogMode, err)
		}
	}
	return f, nil
}

// Log is a program's log file. It is opened at a path and can be reopened
// there, after newsyslog (or an admin) has moved the old file away: the
// writes that follow go to the new file. Log is safe for concurrent use.
type Log struct {
	path  string
	stdio bool

	mu sync.Mutex
	f  *os.File // guarded by mu
}

// OpenLog opens the log file at path (see openLog for its mode). With
// stdio, the process's stdout and stderr are made this file too, now and
// after each Reopen, so that what the runtime writes there (a panic) lands
// where the log is: for a daemon started by Start, whose stdio is the log
// file that Start opened.
func OpenLog(path string, stdio bool) (*Log, error) {
	l := &Log{path: path, stdio: stdio}
	f, err := l.open()
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

func (l *Log) open() (*os.File, error) {
	f, err := openLog(l.path)
	if err != nil {
		return nil, err
	}
	if l.stdio {
		for _, fd := range []int{1, 2} {
			if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
				f.Close()
				return nil, fmt.Errorf("log file %s as stdout and stderr: %w", l.path, err)
			}
		}
	}
	return f, nil
}

// Path returns the log file's path.
func (l *Log) Path() string { return l.path }

// Write writes p to the log file.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the file at the log's path (creating it when it was moved
// away) and writes there from now on. On error the old file stays in use.
func (l *Log) Reopen() error {
	f, err := l.open()
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the log file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
