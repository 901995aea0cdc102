package protocol

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// sayHello sends h over a new connection to addr and returns the master's
// refusal (nil when it welcomed).
func sayHello(t *testing.T, addr string, h *Hello) error {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	stream, err := NewMasterClient(cc).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := loginStream(stream, h, "pw")
	if err == nil && m.GetWelcome() == nil {
		t.Fatalf("first answer %v is not a welcome", m)
	}
	return err
}

// TestHelloBounds: a hello with a huge worker name (the probe grew
// master.log by 4 MB a hello without a password), a name over
// MaxWorkerName, more than MaxKept kept commands (the probe's 50,000 wrote
// 99,120 lines) or an over-long kept key is refused before its password
// is checked, with a log line that stays short; one at the bounds is
// welcomed.
func TestHelloBounds(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	kept := func(n, keyLen int) []*KeptCommand {
		var ks []*KeptCommand
		for i := range n {
			key := fmt.Sprintf("k%d-", i)
			ks = append(ks, &KeptCommand{ResumeKey: key + strings.Repeat("x", max(0, keyLen-len(key)))})
		}
		return ks
	}
	tests := []struct {
		name  string
		hello *Hello
		want  string
	}{
		{"900 KB name", &Hello{Name: strings.Repeat("N", 900<<10)}, "more than 266240"},
		{"129-byte name", &Hello{Name: strings.Repeat("N", 129)}, "the worker name is 129 bytes long, more than 128"},
		{"1001 kept", &Hello{Name: "w", Kept: kept(1001, 10)}, "lists 1001 kept commands, more than 1000"},
		{"long key", &Hello{Name: "w", Kept: kept(1, 257)}, "key is 257 bytes long, more than 256"},
	}
	for _, tt := range tests {
		tt.hello.ProtocolVersion = Version
		before := len(m.log.String())
		err := sayHello(t, m.addr, tt.hello)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want InvalidArgument saying %q", tt.name, err, tt.want)
		}
		if grown := len(m.log.String()) - before; grown > 1024 {
			t.Errorf("%s: the log grew by %d bytes, want at most 1 KiB", tt.name, grown)
		}
	}
	// Over maxRecvMsg, gRPC refuses it unread (it was 4 MB).
	before := len(m.log.String())
	err := sayHello(t, m.addr, &Hello{ProtocolVersion: Version, Name: strings.Repeat("N", 3<<20)})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "larger than max") {
		t.Errorf("a 3 MB hello: %v, want ResourceExhausted, larger than max", err)
	}
	if grown := len(m.log.String()) - before; grown > 1024 {
		t.Errorf("3 MB hello: the log grew by %d bytes, want at most 1 KiB", grown)
	}
	if !strings.Contains(m.log.String(), "worker refused: hello out of bounds") {
		t.Errorf("no refusal logged:\n%s", m.log.String())
	}

	// At the bounds.
	name := strings.Repeat("n", MaxWorkerName)
	if err := sayHello(t, m.addr, &Hello{ProtocolVersion: Version, Name: name, Kept: kept(MaxKept, maxKeptKey)}); err != nil {
		t.Fatalf("a hello at the bounds: %v", err)
	}
	c := waitAttach(t, m)
	if c.Name() != name || len(c.Kept()) != MaxKept {
		t.Errorf("attached %q with %d kept, want %d", c.Name(), len(c.Kept()), MaxKept)
	}
}

// TestStreamsPerConnection: one connection holds at most maxStreams
// streams at once, so that a connection that never logs in cannot make
// the master read and hold a hello-sized message on each of many
// streams; a worker opens one per connection.
func TestStreamsPerConnection(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	cc, err := grpc.NewClient("passthrough:///"+m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for range maxStreams {
		if _, err := NewMasterClient(cc).Connect(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// One more on the same connection waits for a free stream: its hello
	// is not answered.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	stream, err := NewMasterClient(cc).Connect(ctx)
	if err == nil {
		_, err = loginStream(stream, &Hello{ProtocolVersion: Version, Name: "w"}, "pw")
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a stream past %d on one connection: %v, want it to wait (DeadlineExceeded)", maxStreams, err)
	}
	// A worker on its own connection is welcomed.
	if err := sayHello(t, m.addr, &Hello{ProtocolVersion: Version, Name: "w"}); err != nil {
		t.Errorf("a worker on its own connection: %v", err)
	}
}
