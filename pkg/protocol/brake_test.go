package protocol

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// helloFrom says hello as name with password over a new connection from
// the loopback address src, and returns the master's refusal (nil when
// it welcomed).
func helloFrom(t *testing.T, addr, src, name, password string) error {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
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
	if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: &Hello{ProtocolVersion: Version, Name: name, Password: password}}}); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err == nil && m.GetWelcome() == nil {
		t.Fatalf("first answer %v is not a welcome", m)
	}
	return err
}

// TestLoginBrake: an address guessing passwords is refused before its
// guesses are checked, its refusals are logged sampled, and a worker from
// another address gets in at once.
func TestLoginBrake(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var checked atomic.Int64
	logs := &syncBuffer{}
	attach := make(chan *WorkerConn, 1)
	s := NewServer(ServerConfig{
		Authenticate: func(name, password string) error {
			checked.Add(1)
			if password != "pw" {
				return errors.New("bad password")
			}
			return nil
		},
		Attach:      func(c *WorkerConn) { attach <- c },
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
		LoginBurst:  3,
		LoginRefill: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := lis.Addr().String()

	const guesses = 60
	var codesSeen []codes.Code
	for range guesses {
		codesSeen = append(codesSeen, status.Code(helloFrom(t, addr, "127.0.0.2", "w1", "guess")))
	}
	for i, c := range codesSeen {
		want := codes.ResourceExhausted
		if i < 3 {
			want = codes.Unauthenticated
		}
		if c != want {
			t.Fatalf("guess %d answered %v, want %v (all: %v)", i+1, c, want, codesSeen)
		}
	}
	if n := checked.Load(); n != 3 {
		t.Errorf("%d guesses were checked, want 3 (the burst)", n)
	}
	// Even the right password waits, from the braked address: the brake
	// does not tell a guess from a hit.
	err = helloFrom(t, addr, "127.0.0.2", "w1", "pw")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "too many failed logins from 127.0.0.2: retry in ") {
		t.Errorf("the braked address's right password: %v, want ResourceExhausted saying when to retry", err)
	}
	if permanent(classify(err)) {
		t.Errorf("a brake refusal is permanent for the client; it should retry")
	}

	// A real worker from another address is not slowed.
	start := time.Now()
	w := NewClient(ClientConfig{Master: addr, Name: "w1", Password: "pw", Executor: newTestExecutor(), MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	t.Cleanup(func() { wcancel(); <-wdone })
	select {
	case <-attach:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker from 127.0.0.1 did not attach")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the worker from 127.0.0.1 took %s to attach", d)
	}

	out := logs.String()
	refused := strings.Count(out, "worker refused: wrong name or password")
	braked := strings.Count(out, "worker refused: too many failed logins from its address")
	if refused != 3 || braked < 1 || braked > logBurst {
		t.Errorf("%d refusals logged %d + %d lines, want 3 + at most %d (sampled):\n%s", guesses+1, refused, braked, logBurst, out)
	}
}

// TestLoginBrakeBounded: the brake's table does not grow past brakeAddrs
// however many addresses fail, and addresses past it share one bucket.
func TestLoginBrakeBounded(t *testing.T) {
	t.Parallel()
	b := newLoginBrake(2, time.Hour)
	addr := func(i int) netip.Prefix {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		return netip.PrefixFrom(a, 32)
	}
	for i := range brakeAddrs + 500 {
		b.failed(addr(i))
		b.failed(addr(i))
	}
	if n := len(b.addrs); n != brakeAddrs {
		t.Fatalf("table holds %d addresses, want %d", n, brakeAddrs)
	}
	if b.wait(addr(0)) == 0 {
		t.Error("an address in the table that failed its burst is not braked")
	}
	if b.wait(addr(brakeAddrs+499)) == 0 {
		t.Error("an address past the table is not braked by the shared bucket")
	}
	// A fresh brake does not slow an address that never failed.
	if d := newLoginBrake(2, time.Hour).wait(addr(1)); d != 0 {
		t.Errorf("an address that never failed waits %s", d)
	}
}
