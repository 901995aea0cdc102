package build

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// logBatch is how much buffered output makes logWriter write at once, without
// waiting for its next tick.
const logBatch = 64 << 10

// maxLineLength is where a line without a newline is cut, as buildbot's
// max_line_length.
const maxLineLength = 64 << 10

// logStore is what a logWriter needs of the store.
type logStore interface {
	AppendLog(logID int64, lines string) (int64, error)
	FinishLog(logID int64) error
}

// logWriter turns a command's output chunks into whole lines of a stdio log
// (each prefixed with its channel letter) and writes them to the store in
// batches: when logBatch bytes are waiting, and at every flush tick.
type logWriter struct {
	st   logStore
	id   int64
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	buf     strings.Builder // guarded by mu; whole prefixed lines not yet stored
	partial [3][]byte       // guarded by mu; the unfinished last line per stream
	failed  bool            // guarded by mu; a store write failed: drop output
}

// newLogWriter starts a writer for the log; close stops it. A nil log
// discards.
func newLogWriter(st logStore, logID int64, every time.Duration, log *slog.Logger) *logWriter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &logWriter{st: st, id: logID, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go w.tick(every)
	return w
}

func (w *logWriter) tick(every time.Duration) {
	defer close(w.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			w.flushLocked()
			w.mu.Unlock()
		}
	}
}

// channel is buildbot's letter for a stream.
func channel(s protocol.Stream) byte {
	switch s {
	case protocol.Stderr:
		return 'e'
	case protocol.Header:
		return 'h'
	default:
		return 'o'
	}
}

// chanIndex numbers the channels for logWriter.partial.
func chanIndex(ch byte) int {
	return strings.IndexByte("oeh", ch)
}

// output takes one chunk of a command's output.
func (w *logWriter) output(o protocol.Output) {
	idx := chanIndex(channel(o.Stream))
	w.mu.Lock()
	defer w.mu.Unlock()
	data := o.Data
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			p := append(w.partial[idx], data...)
			for len(p) >= maxLineLength {
				w.lineLocked(channel(o.Stream), p[:maxLineLength])
				p = p[maxLineLength:]
			}
			w.partial[idx] = append(w.partial[idx][:0], p...)
			break
		}
		line := data[:i]
		if p := w.partial[idx]; len(p) > 0 {
			line = append(slices.Clip(p), line...)
			w.partial[idx] = p[:0]
		}
		w.lineLocked(channel(o.Stream), line)
		data = data[i+1:]
	}
	if w.buf.Len() >= logBatch {
		w.flushLocked()
	}
}

// text adds lines to a text log ("t" type: no channel letters).
func (w *logWriter) text(line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.Split(line, "\n") {
		w.buf.WriteString(l)
		w.buf.WriteByte('\n')
	}
}

// header adds one header line, as the master's own notes in a log.
func (w *logWriter) header(line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.Split(line, "\n") {
		w.lineLocked('h', []byte(l))
	}
}

func (w *logWriter) lineLocked(ch byte, line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	w.buf.WriteByte(ch)
	w.buf.Write(line)
	w.buf.WriteByte('\n')
}

func (w *logWriter) flushLocked() {
	if w.buf.Len() == 0 {
		return
	}
	s := w.buf.String()
	w.buf.Reset()
	if w.failed {
		return
	}
	if _, err := w.st.AppendLog(w.id, s); err != nil {
		w.failed = true
		w.log.Error("write log", "log", w.id, "err", err)
	}
}

// endOutput ends the command's output: unfinished last lines become lines.
func (w *logWriter) endOutput() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.endOutputLocked()
}

func (w *logWriter) endOutputLocked() {
	for _, ch := range []byte{'o', 'e', 'h'} {
		p := &w.partial[chanIndex(ch)]
		if len(*p) > 0 {
			w.lineLocked(ch, *p)
			*p = nil
		}
	}
}

// close writes what is left, unfinished lines included, and finishes the log.
func (w *logWriter) close() {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	w.endOutputLocked()
	w.flushLocked()
	if err := w.st.FinishLog(w.id); err != nil {
		w.log.Error("finish log", "log", w.id, "err", err)
	}
}
