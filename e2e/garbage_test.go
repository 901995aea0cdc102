package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// TestGarbageOnWorkerPort sends the master's worker port what no worker
// sends: random bytes, the HTTP/2 preface and then half a frame, a gRPC
// stream that never says hello, a hello in an old protocol version. Each
// is dropped within the configured bound with a clear line in the log;
// the master does not crash or hang, and its worker goes on building.
func TestGarbageOnWorkerPort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// keepalive 1s + 1s: a new connection has 2s to say hello.
	e.writeConfig(livenessKeepalive(livenessConfig, "1s", "1s"))
	e.startMaster()
	e.startWorkerAt("w1", "worker")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	addr := fmt.Sprintf("127.0.0.1:%d", e.WorkerPort)
	const hello = 2 * time.Second
	// A dropped connection is closed by then, on a loaded machine too:
	// the handshake or hello bound, and gRPC's 5s for a graceful close.
	const bound = hello + 5*time.Second + 15*time.Second

	// dropped waits until the master closes conn and says how long it took.
	dropped := func(t *testing.T, conn net.Conn) time.Duration {
		t.Helper()
		start := time.Now()
		conn.SetReadDeadline(start.Add(bound))
		_, err := io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the master kept the connection open for %v", bound)
		}
		return time.Since(start)
	}
	raw := func(t *testing.T, data []byte) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.Write(data); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	stream := func(t *testing.T) grpc.BidiStreamingClient[protocol.WorkerMessage, protocol.MasterMessage] {
		t.Helper()
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		ctx, cancel := context.WithTimeout(t.Context(), bound)
		t.Cleanup(cancel)
		s, err := protocol.NewMasterClient(cc).Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	waitLog := func(t *testing.T, want string) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%q in the master's log", want), 10*time.Second, func() bool {
			return strings.Contains(e.masterLog(), want)
		})
	}

	t.Run("random bytes", func(t *testing.T) {
		junk := make([]byte, 8192)
		rand.Read(junk)
		junk[0] = 0xff
		dropped(t, raw(t, junk))
		waitLog(t, "not a gRPC client")
	})
	t.Run("preface then half a frame", func(t *testing.T) {
		frame := []byte{0, 0, 6, 4, 0} // the first 5 of a SETTINGS frame's 9 header bytes
		took := dropped(t, raw(t, append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame...)))
		if took < hello/2 {
			t.Errorf("dropped after %v, before the %v bound", took, hello)
		}
		waitLog(t, "no complete HTTP/2 handshake within 2s")
	})
	t.Run("a stream that never says hello", func(t *testing.T) {
		start := time.Now()
		_, err := stream(t).Recv()
		if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "no hello from worker within 2s") {
			t.Errorf("Recv = %v, want DeadlineExceeded: no hello", err)
		}
		if took := time.Since(start); took > bound {
			t.Errorf("dropped after %v", took)
		}
		waitLog(t, "worker port: stream dropped: no hello")
	})
	t.Run("an old protocol version", func(t *testing.T) {
		s := stream(t)
		if err := s.Send(&protocol.WorkerMessage{Msg: &protocol.WorkerMessage_Hello{Hello: &protocol.Hello{
			ProtocolVersion: 0, Name: "w1",
		}}}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Recv()
		want := fmt.Sprintf(`worker "w1" speaks protocol version 0, master speaks version %d`, protocol.Version)
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) {
			t.Errorf("Recv = %v, want FailedPrecondition: %s", err, want)
		}
		waitLog(t, "worker refused: protocol version mismatch")
	})

	// The master is up, its worker never left, and it still builds.
	pid, err := os.ReadFile(filepath.Join(e.masterDir, "master.pid"))
	if err != nil {
		t.Fatalf("master.pid: %v", err)
	}
	var p int
	fmt.Sscan(string(pid), &p)
	if err := syscall.Kill(p, 0); err != nil {
		t.Fatalf("the master (pid %d) is gone: %v\n%s", p, err, e.masterLog())
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	brid := e.force("force", builderID(t, e, "hold"), "after the garbage")
	if b := e.waitBuild(brid, 60*time.Second); b.Results == nil || *b.Results != 0 {
		t.Errorf("build after the garbage: %+v, want SUCCESS", b)
	}
	if n := strings.Count(e.masterLog(), "worker attached"); n != 2 { // the protocol's line and the engine's
		t.Errorf("the worker attached %d times, want once (2 lines):\n%s", n/2, e.masterLog())
	}
}
