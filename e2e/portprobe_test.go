package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

const uploadProbeConfig = loopback + `
[[workers]]
name = "evil"
password = "evil-pass"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["probe"]

[[builders]]
name = "probe"
worker_names = ["evil"]
  [[builders.steps]]
  type = "directory_upload"
  name = "deep"
  workersrc = "deep"
  masterdest = "up/deep"
  [[builders.steps]]
  type = "directory_upload"
  name = "special"
  workersrc = "special"
  masterdest = "up/special"
`

// headerWorker is a worker that speaks the real protocol and answers a
// directory upload with a tar of the headers archives[workersrc] (a
// regular file's content is "x"); every other command succeeds.
type headerWorker struct {
	archives map[string][]tar.Header
}

func (h headerWorker) Run(ctx context.Context, cmd protocol.Command, out func(protocol.Output)) protocol.Result {
	u := cmd.Upload
	if u == nil || !u.Directory {
		return protocol.Result{}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, hdr := range h.archives[u.Path] {
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = 1
		}
		hdr.Mode = 0o644
		if err := tw.WriteHeader(&hdr); err != nil {
			return protocol.Result{ExitCode: 1, Err: err.Error()}
		}
		if hdr.Size > 0 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	if _, err := u.Sink.Write(buf.Bytes()); err != nil {
		return protocol.Result{ExitCode: 1, Err: err.Error()}
	}
	return protocol.Result{}
}

// TestUploadProbe: the probe's directory upload (40 files 2,000
// directories deep, which pinned a master core for 77 s) fails its step
// at once saying which limit; an upload holding devices and FIFOs ends
// WARNINGS with a line for each in its "skipped" log, and its hard link
// is made.
func TestUploadProbe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(uploadProbeConfig)
	e.startMaster()

	var deep []tar.Header
	for i := range 40 {
		deep = append(deep, tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("d/", 2000) + fmt.Sprintf("f%d", i)})
	}
	w := headerWorker{archives: map[string][]tar.Header{
		"deep": deep,
		"special": {
			{Typeflag: tar.TypeReg, Name: "f"},
			{Typeflag: tar.TypeLink, Name: "hard", Linkname: "f"},
			{Typeflag: tar.TypeFifo, Name: "fifo"},
			{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3},
		},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	c := protocol.NewClient(protocol.ClientConfig{
		Master: fmt.Sprintf("127.0.0.1:%d", e.WorkerPort), Name: "evil", Password: "evil-pass",
		Info: protocol.WorkerInfo{OS: "linux", Basedir: "/nowhere"}, Executor: w,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})

	start := time.Now()
	b := e.waitBuild(e.force("force", 1, "probe"), 60*time.Second)
	t.Logf("the build ended in %s", time.Since(start).Round(time.Millisecond))
	byName := map[string]apiStep{}
	for _, s := range e.steps(b.BuildID) {
		byName[s.Name] = s
	}
	if s := byName["deep"]; s.Results == nil || *s.Results != 2 ||
		!strings.Contains(e.logText(s.StepID, "err_text"), "is 2001 names deep, more than 256") {
		t.Errorf("step deep: %+v, err.text:\n%.500s\nwant FAILURE naming the depth limit", s, e.logText(s.StepID, "err_text"))
	}
	if _, err := os.Lstat(filepath.Join(e.masterDir, "up", "deep")); err == nil {
		t.Error("the refused upload left up/deep")
	}
	s := byName["special"]
	skipped := e.logText(s.StepID, "skipped")
	if s.Results == nil || *s.Results != 1 {
		t.Errorf("step special: %+v, want WARNINGS", s)
	}
	for _, want := range []string{`skipped "fifo": a FIFO, not unpacked`, `skipped "null": a character device, not unpacked`} {
		if !strings.Contains(skipped, want) {
			t.Errorf("the skipped log lacks %q:\n%s", want, skipped)
		}
	}
	a, err1 := os.Stat(filepath.Join(e.masterDir, "up", "special", "f"))
	h, err2 := os.Stat(filepath.Join(e.masterDir, "up", "special", "hard"))
	if err1 != nil || err2 != nil || !os.SameFile(a, h) {
		t.Errorf("the hard link was not made: %v %v", err1, err2)
	}
}

// TestKeptFlood: a logged-in worker whose hello lists 1,000 kept
// commands the master never gave writes one log line, not two per entry
// (the probe's 50,000 wrote 99,120); one listing 1,001 is refused.
func TestKeptFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(loopback + workerW1)
	e.startMaster()
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", e.WorkerPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hello := func(n int) (grpc.BidiStreamingClient[protocol.WorkerMessage, protocol.MasterMessage], error) {
		var kept []*protocol.KeptCommand
		for i := range n {
			kept = append(kept, &protocol.KeptCommand{ResumeKey: fmt.Sprintf("bogus-%d", i)})
		}
		stream, err := protocol.NewMasterClient(cc).Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cn := make([]byte, 32)
		if err := stream.Send(&protocol.WorkerMessage{Msg: &protocol.WorkerMessage_Hello{Hello: &protocol.Hello{
			ProtocolVersion: protocol.Version, Name: "w1", Kept: kept, ClientNonce: cn,
		}}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if ch := m.GetChallenge(); err == nil && ch != nil {
			mac := protocol.LoginMAC("secret", "w1", ch.GetNonce(), cn, nil)
			if err := stream.Send(&protocol.WorkerMessage{Msg: &protocol.WorkerMessage_Proof{Proof: &protocol.Proof{Mac: mac}}}); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
		}
		return stream, err
	}
	if _, err := hello(1001); err == nil || !strings.Contains(err.Error(), "more than 1000") {
		t.Errorf("a hello with 1,001 kept commands: %v, want refused", err)
	}
	stream, err := hello(1000)
	if err != nil {
		t.Fatalf("a hello with 1,000 kept commands: %v", err)
	}
	// The master abandons each; read them all.
	abandoned := 0
	for abandoned < 1000 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d abandons: %v", abandoned, err)
		}
		if r := m.GetReattach(); r != nil && r.GetAbandon() {
			abandoned++
		}
	}
	log := e.masterLog()
	if n := strings.Count(log, "bogus-"); n > 3 {
		t.Errorf("the log names %d bogus keys, want at most 3 (examples):\n%.2000s", n, log)
	}
	if !strings.Contains(log, "worker kept commands this master does not resume: killing them") || !strings.Contains(log, "count=1000") {
		t.Errorf("no summary line:\n%.2000s", log)
	}
}

const floodConfig = `
buildbot_url = "http://127.0.0.1:{{.WebPort}}/"

[protocols.grpc]
port = {{.WorkerPort}}
interface = "127.0.0.1"
max_connections = 300
max_connections_per_address = 64

[www]
port = {{.WebPort}}
interface = "127.0.0.1"
` + workerW1

// TestWorkerPortFlood: the probe's flood, bounded: idle connections from
// 20 loopback addresses, 30 each, reopened as soon as the master drops
// them, for 10 s, against max_connections = 300. A real gbb-worker
// started during it attaches within seconds (the probe's took 40.7 s)
// and is still attached when the flood ends.
func TestWorkerPortFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(floodConfig)
	e.startMaster()
	addr := fmt.Sprintf("127.0.0.1:%d", e.WorkerPort)

	var flood sync.WaitGroup
	var opened atomic.Int64
	var mu sync.Mutex
	open := map[net.Conn]bool{} // guarded by mu
	stopped := false            // guarded by mu
	stop := func() {
		mu.Lock()
		stopped = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		flood.Wait()
	}
	defer stop()
	start := time.Now()
	for a := range 20 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.2.%d", a+1))}, Timeout: 5 * time.Second}
		for range 30 {
			flood.Go(func() {
				for {
					c, err := d.Dial("tcp", addr)
					mu.Lock()
					if stopped {
						mu.Unlock()
						if err == nil {
							c.Close()
						}
						return
					}
					if err != nil {
						mu.Unlock()
						continue
					}
					opened.Add(1)
					open[c] = true
					mu.Unlock()
					_, _ = io.Copy(io.Discard, c)
					c.Close()
					mu.Lock()
					delete(open, c)
					mu.Unlock()
				}
			})
		}
	}
	waitFor(t, "the flood to open 600 connections", 30*time.Second, func() bool { return opened.Load() >= 600 })

	wstart := time.Now()
	e.startWorker("w1", "secret")
	waitFor(t, "w1 attached during the flood", 10*time.Second, func() bool { return e.workerConnected("w1") })
	t.Logf("the real worker attached in %s during the flood (%d flood connections so far)", time.Since(wstart).Round(time.Millisecond), opened.Load())
	for time.Since(start) < 10*time.Second {
		if !e.workerConnected("w1") {
			t.Fatalf("w1 was cut during the flood")
		}
		time.Sleep(200 * time.Millisecond) // polling a condition
	}
	t.Logf("%d flood connections in %s; w1 still attached", opened.Load(), time.Since(start).Round(time.Millisecond))
	stop()
	if !e.workerConnected("w1") {
		t.Error("w1 is not attached after the flood")
	}
	if n := strings.Count(e.masterLog(), "closed a connection not yet authenticated"); n == 0 || n > 20 {
		t.Errorf("%d eviction lines in the log, want a few (sampled)", n)
	}
}
