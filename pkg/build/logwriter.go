package build

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// logBatch is how much buffered output makes logWriter write at once, without
// waiting for its next tick: each write is one synced store transaction, so
// 100 MB of output takes about a hundred.
const logBatch = 1 << 20

// logQueue is how many batches may wait for the store behind the one being
// written. When they are all waiting, output blocks, and so does the stream
// that delivers it: a log holds at most about (logQueue+2)·logBatch bytes.
const logQueue = 2

// maxLineLength is where a line without a newline is cut, as buildbot's
// max_line_length.
const maxLineLength = 64 << 10

// logStore is what a logWriter needs of the store.
type logStore interface {
	AppendLog(logID int64, lines string) (int64, error)
	FinishLog(logID int64) error
}

// logOptions configures a logWriter.
type logOptions struct {
	// Flush is how often waiting lines are written to the store.
	Flush time.Duration
	// MaxSize is log_max_size: the bytes of the head of the log, kept as
	// it comes; zero means no limit. Once a line does not fit in it, the
	// rest of the output is dropped but for its last TailSize bytes, which
	// are written when the log ends after a note saying what was dropped.
	MaxSize int64
	// TailSize is log_max_tail_size: the bytes kept at the end of a log
	// that outgrew MaxSize; zero keeps none.
	TailSize int64
	// WriteFailed, when not nil, is told of the first failed write of the
	// log (after which the rest of its output is dropped), from the
	// writer's goroutine.
	WriteFailed func(logID int64, err error)
}

// logWriter turns a command's output chunks into whole lines of a stdio log
// (each prefixed with its channel letter) and writes them to the store in
// batches: when logBatch bytes are waiting, and at every flush tick. Its own
// goroutine writes the batches, in order, so that output keeps coming in
// while the store syncs; at most logQueue batches wait for it.
//
// With a MaxSize, it keeps the head and the tail of the output, as
// buildbot's logMaxSize and logMaxTailSize: sizes count the bytes of each
// line with its newline, not its channel letter, and header lines (the
// worker's and the master's notes) count for nothing. The head is the
// longest run of whole lines from the start that fits in MaxSize; after it
// every line goes through a bounded ring holding the longest run of whole
// lines at the end that fits in TailSize. At the end a header line such as
// "*** log truncated: 8388608 bytes in 83886 lines dropped; the last
// 1048576 bytes follow ***" comes before the tail.
type logWriter struct {
	st      logStore
	id      int64
	opts    logOptions
	log     *slog.Logger
	stop    chan struct{}
	done    chan struct{} // closed when tick has returned
	written chan struct{} // closed when write has returned

	mu       sync.Mutex
	buf      strings.Builder // guarded by mu; whole prefixed lines not yet queued
	queue    chan string     // guarded by mu (sends and close); batches for write
	closed   bool            // guarded by mu; queue is closed: drop output
	partial  [3][]byte       // guarded by mu; the unfinished last line per stream
	headSize int64           // guarded by mu; bytes of the head so far
	tail     *tailRing       // guarded by mu; non-nil once the head is full
}

// newLogWriter starts a writer for the log; close stops it. A nil log
// discards.
func newLogWriter(st logStore, logID int64, opts logOptions, log *slog.Logger) *logWriter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Flush <= 0 {
		opts.Flush = 200 * time.Millisecond
	}
	w := &logWriter{
		st: st, id: logID, opts: opts, log: log,
		stop: make(chan struct{}), done: make(chan struct{}), written: make(chan struct{}),
		queue: make(chan string, logQueue),
	}
	go w.tick(opts.Flush)
	go w.write()
	return w
}

// write stores the queued batches in order until the queue is closed. After
// a failed write it drops the rest.
func (w *logWriter) write() {
	defer close(w.written)
	failed := false
	for s := range w.queue {
		if failed {
			continue
		}
		if _, err := w.st.AppendLog(w.id, s); err != nil {
			failed = true
			w.log.Error("write log", "log", w.id, "err", err)
			if w.opts.WriteFailed != nil {
				w.opts.WriteFailed(w.id, err)
			}
		}
	}
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
				n := cutLine(p)
				w.lineLocked(channel(o.Stream), p[:n])
				p = p[n:]
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

// cutLine is where a line of at least maxLineLength bytes is cut: at
// maxLineLength, or up to 3 bytes before so as not to split a UTF-8
// character.
func cutLine(p []byte) int {
	n := maxLineLength
	for i := 0; i < utf8.UTFMax-1 && n < len(p) && !utf8.RuneStart(p[n]); i++ {
		n--
	}
	if n < len(p) && !utf8.RuneStart(p[n]) {
		return maxLineLength // not UTF-8 there anyway
	}
	return n
}

// text adds lines to a text log ("t" type: no channel letters).
func (w *logWriter) text(line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.Split(line, "\n") {
		w.lineLocked(0, []byte(l))
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

// lineLocked adds one line of channel ch (0 for a text log), without its
// newline, to the head or, once the head is full, to the tail ring.
func (w *logWriter) lineLocked(ch byte, line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	// Logs are UTF-8, as buildbot's: each run of bytes that is not
	// becomes U+FFFD, so that every reader (the API's JSON, the raw
	// download, the pages) gets the same valid text.
	if !utf8.Valid(line) {
		line = bytes.ToValidUTF8(line, []byte("\uFFFD"))
	}
	size := int64(len(line)) + 1
	if ch == 'h' {
		size = 0
	}
	if w.opts.MaxSize > 0 && w.tail == nil && w.headSize+size > w.opts.MaxSize {
		w.tail = &tailRing{max: w.opts.TailSize}
	}
	if w.tail != nil {
		w.tail.add(ch, line, size)
		return
	}
	w.headSize += size
	w.writeLocked(ch, line)
}

// writeLocked adds a line to what the next flush stores.
func (w *logWriter) writeLocked(ch byte, line []byte) {
	if ch != 0 {
		w.buf.WriteByte(ch)
	}
	w.buf.Write(line)
	w.buf.WriteByte('\n')
}

// endTailLocked writes the note on what was dropped and the tail, in
// batches.
func (w *logWriter) endTailLocked() {
	r := w.tail
	if r == nil {
		return
	}
	w.tail = nil
	if r.droppedLines > 0 {
		note := fmt.Sprintf("*** log truncated: %d bytes in %d lines dropped after the first %d bytes; the last %d bytes follow ***",
			r.droppedBytes, r.droppedLines, w.headSize, r.size)
		ch := byte('h')
		if r.text {
			ch = 0
		}
		w.writeLocked(ch, []byte(note))
	}
	data := r.data[r.start:]
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		w.buf.Write(data[:i+1])
		data = data[i+1:]
		if w.buf.Len() >= logBatch {
			w.flushLocked()
		}
	}
	r.data = nil
}

// tailRing keeps the last lines of a log, at most max bytes of them (as
// logWriter counts them), in memory bounded by about twice that plus the
// lines' channel letters and one line of at most maxLineLength. Lines are
// stored back to back as the log stores them.
type tailRing struct {
	max          int64
	data         []byte // lines from start on, each ending in '\n'
	start        int
	size         int64 // counted bytes of the lines held
	text         bool  // the lines have no channel letter
	droppedBytes int64
	droppedLines int64
}

func (r *tailRing) add(ch byte, line []byte, size int64) {
	r.text = ch == 0
	if ch != 0 {
		r.data = append(r.data, ch)
	}
	r.data = append(r.data, line...)
	r.data = append(r.data, '\n')
	r.size += size
	for r.size > r.max {
		end := r.start + bytes.IndexByte(r.data[r.start:], '\n')
		line, letter := r.data[r.start:end], byte(0)
		if !r.text {
			letter, line = line[0], line[1:]
		}
		n := int64(len(line)) + 1
		if letter != 'h' {
			r.size -= n
		}
		r.droppedBytes += n
		r.droppedLines++
		r.start = end + 1
	}
	// Move the lines down once the dropped ones take more room than the
	// kept ones, so that data stays within twice what it holds.
	if r.start > len(r.data)-r.start {
		n := copy(r.data, r.data[r.start:])
		r.data = r.data[:n]
		r.start = 0
	}
}

// flushLocked queues the buffered lines for write; it blocks while the
// queue is full.
func (w *logWriter) flushLocked() {
	if w.buf.Len() == 0 {
		return
	}
	full := w.buf.Len() >= logBatch
	s := w.buf.String()
	w.buf.Reset()
	if full {
		// More is coming: make room for a whole batch and the chunk
		// (protocol.MaxChunk) that fills it, rather than grow by doubling.
		w.buf.Grow(logBatch + logBatch/8)
	}
	if w.closed {
		return // output after close, as from a late chunk: the log is finished
	}
	w.queue <- s
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
	w.endTailLocked()
	w.flushLocked()
	w.closed = true
	close(w.queue)
	<-w.written
	if err := w.st.FinishLog(w.id); err != nil {
		w.log.Error("finish log", "log", w.id, "err", err)
	}
}
