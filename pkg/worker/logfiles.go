package worker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// tailPoll is how often a shell command's logfiles are checked for new
// content while it runs.
const tailPoll = 200 * time.Millisecond

// tail follows one of a shell command's logfiles, as buildbot's
// LogFileWatcher: a file that existed before the command started is read
// only once it changes, and then from its beginning; a file truncated
// while followed is read again from its beginning.
type tail struct {
	name, path string
	initial    os.FileInfo // the file before the command started; nil if missing
}

type tails []*tail

// newTails prepares the logfiles (name → path relative to dir) of a command
// that runs in dir; it refuses absolute paths and paths that escape dir.
func newTails(dir string, files map[string]string) (tails, error) {
	var ts tails
	for _, name := range slices.Sorted(maps.Keys(files)) {
		rel := files[name]
		if !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("logfile %q: path %q is absolute or escapes the workdir", name, rel)
		}
		t := &tail{name: name, path: filepath.Join(dir, rel)}
		if fi, err := os.Stat(t.path); err == nil {
			t.initial = fi
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// start follows every logfile until done is closed, then reads what is
// left; emit gets their content in order, per file. The caller waits on
// the returned group after closing done.
func (ts tails) start(done <-chan struct{}, emit func(name string, data []byte)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, t := range ts {
		wg.Go(func() { t.follow(done, emit) })
	}
	return &wg
}

func (t *tail) follow(done <-chan struct{}, emit func(string, []byte)) {
	var f *os.File
	var off int64
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	tick := time.NewTicker(tailPoll)
	defer tick.Stop()
	buf := make([]byte, 32<<10)
	for {
		f, off = t.poll(f, off, buf, emit)
		select {
		case <-done:
			f, off = t.poll(f, off, buf, emit)
			return
		case <-tick.C:
		}
	}
}

// poll opens the file once it is there (and new or changed), and sends
// what was written to it since the last poll.
func (t *tail) poll(f *os.File, off int64, buf []byte, emit func(string, []byte)) (*os.File, int64) {
	if f == nil {
		fi, err := os.Stat(t.path)
		if err != nil {
			return nil, 0
		}
		if i := t.initial; i != nil && os.SameFile(fi, i) && fi.Size() == i.Size() && fi.ModTime().Equal(i.ModTime()) {
			return nil, 0 // left from before the command; not (yet) written to
		}
		if f, err = os.Open(t.path); err != nil {
			return nil, 0
		}
		off = 0
	}
	if fi, err := f.Stat(); err == nil && fi.Size() < off {
		off = 0 // truncated: read again from the start
	}
	for {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			emit(t.name, bytes.Clone(buf[:n]))
			off += int64(n)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				f.Close()
				return nil, 0
			}
			return f, off
		}
	}
}
