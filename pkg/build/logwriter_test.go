package build

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// readLog returns the whole stored log and checks it is finished.
func readLog(t *testing.T, db interface {
	LogLines(int64, int64, int64) (string, error)
}, id int64) string {
	t.Helper()
	got, err := db.LogLines(id, 0, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestLogWriterLimits: the head and tail limits keep whole lines, header
// lines count for nothing, and the note says what was dropped.
func TestLogWriterLimits(t *testing.T) {
	t.Parallel()
	out := func(s string) protocol.Output { return protocol.Output{Stream: protocol.Stdout, Data: []byte(s)} }
	tests := []struct {
		name      string
		max, tail int64
		header    bool // a header line first and last
		out       []string
		want      string
	}{
		{"no limit", 0, 0, true, []string{"aaaa\nbbbb\ncccc\n"},
			"hcmd\noaaaa\nobbbb\nocccc\nhend\n"},
		{"fits exactly", 15, 5, true, []string{"aaaa\nbbbb\ncccc\n"},
			"hcmd\noaaaa\nobbbb\nocccc\nhend\n"},
		{"head only", 10, 0, true, []string{"aaaa\nbbbb\ncccc\ndd\n"},
			"hcmd\noaaaa\nobbbb\n" +
				"h*** log truncated: 8 bytes in 2 lines dropped after the first 10 bytes; the last 0 bytes follow ***\n" +
				"hend\n"},
		{"head and tail", 5, 8, false, []string{"aaaa\nbbbb\ncccc\ndd\n", "e\n"},
			"oaaaa\n" +
				"h*** log truncated: 10 bytes in 2 lines dropped after the first 5 bytes; the last 5 bytes follow ***\n" +
				"odd\noe\n"},
		{"a tail shorter than its last line", 5, 3, false, []string{"aaaa\nbbbb\ncccc\n"},
			"oaaaa\n" +
				"h*** log truncated: 10 bytes in 2 lines dropped after the first 5 bytes; the last 0 bytes follow ***\n"},
		{"no line fits the head", 3, 5, false, []string{"aaaa\nbbbb\nc"},
			"h*** log truncated: 10 bytes in 2 lines dropped after the first 0 bytes; the last 2 bytes follow ***\n" +
				"oc\n"},
		{"stderr and stdout share the limits", 10, 5, false, []string{"aaaa\n", "\x00eeee\n", "bbbb\n"},
			"oaaaa\neeeee\nobbbb\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, id := openLog(t)
			w := newLogWriter(db, id, logOptions{Flush: time.Hour, MaxSize: tc.max, TailSize: tc.tail}, nil)
			if tc.header {
				w.header("cmd")
			}
			for _, s := range tc.out {
				o := out(s)
				if strings.HasPrefix(s, "\x00") {
					o = protocol.Output{Stream: protocol.Stderr, Data: []byte(s[1:])}
				}
				w.output(o)
			}
			w.endOutput()
			if tc.header {
				w.header("end")
			}
			w.close()
			if diff := cmp.Diff(tc.want, readLog(t, db, id)); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLogWriterTextLimits: a text log is limited the same way, without
// channel letters.
func TestLogWriterTextLimits(t *testing.T) {
	t.Parallel()
	db, id := openLog(t)
	w := newLogWriter(db, id, logOptions{Flush: time.Hour, MaxSize: 4, TailSize: 4}, nil)
	for _, l := range []string{"one", "two", "six", "ten"} {
		w.text(l)
	}
	w.close()
	want := "one\n*** log truncated: 8 bytes in 2 lines dropped after the first 4 bytes; the last 4 bytes follow ***\nten\n"
	if diff := cmp.Diff(want, readLog(t, db, id)); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestLogWriterBigOutput: 10 MB of output under 1 MiB limits stores the
// head, the note and the tail exactly, while the ring and the batch buffer
// stay bounded.
func TestLogWriterBigOutput(t *testing.T) {
	t.Parallel()
	const (
		limit   = 1 << 20
		lineLen = 100 // with its newline
		lines   = 10 << 20 / lineLen
	)
	db, id := openLog(t)
	w := newLogWriter(db, id, logOptions{Flush: time.Hour, MaxSize: limit, TailSize: limit}, nil)
	w.header("cmd")
	var all strings.Builder
	for i := range lines {
		fmt.Fprintf(&all, "%0*d\n", lineLen-1, i)
	}
	data := all.String()
	maxRing, maxBuf := 0, 0
	for i, step := 0, 0; i < len(data); step++ {
		n := min(len(data)-i, 1+(step*7919)%40000) // chunks cut anywhere
		w.output(protocol.Output{Stream: protocol.Stdout, Data: []byte(data[i : i+n])})
		i += n
		w.mu.Lock()
		if w.tail != nil {
			maxRing = max(maxRing, cap(w.tail.data))
		}
		maxBuf = max(maxBuf, w.buf.Len())
		w.mu.Unlock()
	}
	w.endOutput()
	w.header("program finished with exit code 0")
	w.close()

	kept := limit / lineLen
	var want strings.Builder
	want.WriteString("hcmd\n")
	for i := range kept {
		fmt.Fprintf(&want, "o%0*d\n", lineLen-1, i)
	}
	fmt.Fprintf(&want, "h*** log truncated: %d bytes in %d lines dropped after the first %d bytes; the last %d bytes follow ***\n",
		(lines-2*kept)*lineLen, lines-2*kept, kept*lineLen, kept*lineLen)
	for i := lines - kept; i < lines; i++ {
		fmt.Fprintf(&want, "o%0*d\n", lineLen-1, i)
	}
	want.WriteString("hprogram finished with exit code 0\n")
	got := readLog(t, db, id)
	if got != want.String() {
		t.Errorf("log of %d bytes differs from the %d bytes wanted; first difference at %d",
			len(got), want.Len(), firstDiff(got, want.String()))
	}
	// The ring holds the tail and its channel letters, at most twice over,
	// plus one batch of what it takes in at once.
	if bound := 4*limit + 2*maxLineLength; maxRing > bound {
		t.Errorf("tail ring grew to %d bytes, want at most %d", maxRing, bound)
	}
	if bound := logBatch + 40000 + maxLineLength; maxBuf > bound {
		t.Errorf("batch buffer grew to %d bytes, want at most %d", maxBuf, bound)
	}
}

// TestLogWriterHugeLine: a 10 MB line without a newline is cut into
// maxLineLength pieces, whether it comes in one chunk or many, with or
// without limits.
func TestLogWriterHugeLine(t *testing.T) {
	t.Parallel()
	const size = 10 << 20
	line := strings.Repeat("x", size)
	for _, tc := range []struct {
		name  string
		chunk int
		limit int64
	}{
		{"one chunk", size, 0},
		{"worker-sized chunks", 32 << 10, 0},
		{"one chunk, limited", size, 1 << 20},
		{"odd chunks, limited", 12345, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, id := openLog(t)
			w := newLogWriter(db, id, logOptions{Flush: time.Hour, MaxSize: tc.limit, TailSize: tc.limit}, nil)
			for i := 0; i < size; i += tc.chunk {
				w.output(protocol.Output{Stream: protocol.Stdout, Data: []byte(line[i:min(size, i+tc.chunk)])})
			}
			w.close()
			piece := "o" + strings.Repeat("x", maxLineLength) + "\n"
			pieces := size / maxLineLength
			want := strings.Repeat(piece, pieces)
			if tc.limit > 0 {
				kept := int(tc.limit) / (maxLineLength + 1)
				want = strings.Repeat(piece, kept) +
					fmt.Sprintf("h*** log truncated: %d bytes in %d lines dropped after the first %d bytes; the last %d bytes follow ***\n",
						(pieces-2*kept)*(maxLineLength+1), pieces-2*kept, kept*(maxLineLength+1), kept*(maxLineLength+1)) +
					strings.Repeat(piece, kept)
			}
			got := readLog(t, db, id)
			if got != want {
				t.Errorf("log of %d bytes differs from the %d bytes wanted; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// slowStore is a store whose disk is stuck until release is closed; it
// keeps the batches it is given.
type slowStore struct {
	release chan struct{}
	mu      sync.Mutex
	batches []string // guarded by mu
	done    bool     // guarded by mu
}

func (s *slowStore) AppendLog(_ int64, lines string) (int64, error) {
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, lines)
	return int64(strings.Count(lines, "\n")), nil
}

func (s *slowStore) FinishLog(int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	return nil
}

// TestLogWriterBackpressure: while the store is stuck, output stops being
// taken once a bounded amount waits (the stream then holds the producer);
// once it moves, everything is stored in order, in batches of about
// logBatch bytes.
func TestLogWriterBackpressure(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := &slowStore{release: make(chan struct{})}
		w := newLogWriter(st, 1, logOptions{Flush: time.Hour}, nil)
		var want strings.Builder
		const chunks, chunkLines = 200, 1000 // 200 chunks of 100 kB
		var taken atomic.Int64
		produced := make(chan struct{})
		go func() {
			defer close(produced)
			for c := range chunks {
				var b strings.Builder
				for l := range chunkLines {
					line := fmt.Sprintf("%09d %089d\n", c, l)
					b.WriteString(line)
					want.WriteString("o" + line)
				}
				w.output(protocol.Output{Stream: protocol.Stdout, Data: []byte(b.String())})
				taken.Add(int64(b.Len()))
			}
		}()
		synctest.Wait()
		// One batch in AppendLog, logQueue queued, one full and blocked,
		// each at most a chunk over logBatch.
		if n, most := taken.Load(), int64((logQueue+2)*(logBatch+100_000)); n == 0 || n > most {
			t.Errorf("the stuck store took %d bytes of output, want 1 to %d", n, most)
		}
		close(st.release)
		<-produced
		w.close()
		st.mu.Lock()
		defer st.mu.Unlock()
		if !st.done {
			t.Error("log not finished")
		}
		got := strings.Join(st.batches, "")
		if got != want.String() {
			t.Errorf("stored %d bytes, want %d, or not in order", len(got), want.Len())
		}
		for i, b := range st.batches[:len(st.batches)-1] {
			if len(b) < logBatch || len(b) > logBatch+101_000 {
				t.Errorf("batch %d of %d bytes, want about %d", i, len(b), logBatch)
			}
		}
	})
}

// TestLogWriterUTF8: bytes that are not UTF-8 are stored as U+FFFD, and a
// long line is cut before a character, not inside it.
func TestLogWriterUTF8(t *testing.T) {
	t.Parallel()
	db, id := openLog(t)
	w := newLogWriter(db, id, logOptions{Flush: time.Hour}, nil)
	w.output(protocol.Output{Stream: protocol.Stdout, Data: []byte("ok \xff\xfe bad\ncaf\xc3\xa9 \xc3\n")})
	long := strings.Repeat("x", maxLineLength-1) + "é" + "tail"
	w.output(protocol.Output{Stream: protocol.Stderr, Data: []byte(long)})
	w.close()
	want := "ook \uFFFD bad\nocafé \uFFFD\ne" + strings.Repeat("x", maxLineLength-1) + "\neétail\n"
	if got := readLog(t, db, id); got != want {
		t.Errorf("log:\n%.200q\nwant:\n%.200q", got, want)
	}
}
