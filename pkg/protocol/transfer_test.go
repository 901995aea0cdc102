package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pattern is n bytes of a repeating, not too regular pattern.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// runTestTransfer: an upload sends pattern(size) where Path is the size;
// a download reads its source and returns its sha256 in GotRevision.
func runTestTransfer(e *testExecutor, cmd Command) Result {
	if u := cmd.Upload; u != nil {
		n, _ := strconv.Atoi(u.Path)
		data := pattern(n)
		for len(data) > 0 {
			k := min(len(data), MaxChunk)
			if _, err := u.Sink.Write(data[:k]); err != nil {
				return Result{ExitCode: 1, Err: err.Error()}
			}
			e.sent.Add(int64(k))
			data = data[k:]
		}
		return Result{}
	}
	h := sha256.New()
	buf := make([]byte, cmd.Download.BlockSize)
	if _, err := io.CopyBuffer(struct{ io.Writer }{h}, struct{ io.Reader }{cmd.Download.Source}, buf); err != nil {
		return Result{ExitCode: 1, Err: err.Error()}
	}
	return Result{GotRevision: hex.EncodeToString(h.Sum(nil))}
}

// slowSink takes its writes slowly and records how far the worker got
// ahead of it.
type slowSink struct {
	e        *testExecutor
	got      bytes.Buffer
	maxAhead int64
	writes   int
	maxWrite int
}

func (s *slowSink) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	s.writes++
	s.maxWrite = max(s.maxWrite, len(p))
	s.got.Write(p)
	s.maxAhead = max(s.maxAhead, s.e.sent.Load()-int64(s.got.Len()))
	return len(p), nil
}

func TestUploadChunkedWithBackpressure(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	w := startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	const size = 8 << 20
	sink := &slowSink{e: w.exec}
	res, err := c.Run(t.Context(), Command{Builder: "b", Upload: &UploadCommand{Path: strconv.Itoa(size), Sink: sink}}, nil)
	if err != nil || res.Err != "" {
		t.Fatalf("Run: %v %+v", err, res)
	}
	if !bytes.Equal(sink.got.Bytes(), pattern(size)) {
		t.Fatalf("upload: got %d bytes, not the %d sent", sink.got.Len(), size)
	}
	if sink.maxWrite > MaxChunk || sink.writes < size/MaxChunk {
		t.Errorf("upload in %d writes of at most %d bytes; want chunks of at most %d", sink.writes, sink.maxWrite, MaxChunk)
	}
	// The worker may run ahead of a slow master only by what the stream's
	// windows and Run's event queue hold, not by the whole file.
	const bound = 6 << 20
	if sink.maxAhead > bound {
		t.Errorf("worker ran %d bytes ahead of the master's sink; want at most %d", sink.maxAhead, bound)
	}
	t.Logf("worker ahead by at most %d bytes", sink.maxAhead)
}

type failingSink struct{ n int }

func (f *failingSink) Write(p []byte) (int, error) {
	f.n += len(p)
	if f.n > 1<<20 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestUploadSinkFails(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	res, err := c.Run(t.Context(), Command{Builder: "b", Upload: &UploadCommand{Path: strconv.Itoa(4 << 20), Sink: &failingSink{}}}, nil)
	if err != nil || res.ExitCode != -1 || !strings.Contains(res.Err, "master: disk full") {
		t.Errorf("Run = %+v, %v; want the sink's error in the result", res, err)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r     io.Reader
	reads int
	max   int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	c.max = max(c.max, len(p))
	return c.r.Read(p)
}

func TestDownloadPulledInChunks(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	data := pattern(5<<20 + 123)
	sum := sha256.Sum256(data)
	src := &countingReader{r: bytes.NewReader(data)}
	res, err := c.Run(t.Context(), Command{Builder: "b", Download: &DownloadCommand{Path: "f", BlockSize: 32 << 10, Source: src}}, nil)
	if err != nil || res.Err != "" {
		t.Fatalf("Run: %v %+v", err, res)
	}
	if res.GotRevision != hex.EncodeToString(sum[:]) {
		t.Errorf("the worker read other data")
	}
	if src.max > 32<<10 {
		t.Errorf("master read %d bytes at once; want at most the block size", src.max)
	}

	// A source that fails fails the command.
	res, err = c.Run(t.Context(), Command{Builder: "b", Download: &DownloadCommand{Path: "f", Source: io.MultiReader(bytes.NewReader(data[:100]), errReader{})}}, nil)
	if err != nil || !strings.Contains(res.Err, "master: broken") {
		t.Errorf("Run with a failing source = %+v, %v", res, err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken") }
