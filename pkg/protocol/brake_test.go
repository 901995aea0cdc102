package protocol

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
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
	cn := newNonce()
	if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: &Hello{ProtocolVersion: Version, Name: name, ClientNonce: cn}}}); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if ch := m.GetChallenge(); err == nil && ch != nil {
		mac := loginMAC(loginKey(password, name), Version, name, ch.GetNonce(), cn, nil)
		if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Proof{Proof: &Proof{Mac: mac}}}); err != nil {
			t.Fatal(err)
		}
		m, err = stream.Recv()
	}
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
		Password: func(string) (string, bool) {
			checked.Add(1)
			return "pw", true
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
	// Both kinds of line name the guessing address.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "worker refused: ") && !strings.Contains(l, "address=127.0.0.2") {
			t.Errorf("a refusal does not name the address: %s", l)
		}
	}
}

// guess is the proof of a worker that knows password pw: authenticate's
// check, without the stream around it.
var guessKeys sync.Map // pw → loginKey(pw, "w1")

// guess is the prove of authenticate for a worker w1 that tries pw: the
// key authenticate passes is its password's loginKey (derived once per
// pw: the tests guess thousands of times).
func guess(pw string) func(key []byte, known bool) (bool, error) {
	k, ok := guessKeys.Load(pw)
	if !ok {
		k, _ = guessKeys.LoadOrStore(pw, loginKey(pw, "w1"))
	}
	want := k.([]byte)
	return func(key []byte, known bool) (bool, error) { return known && bytes.Equal(key, want), nil }
}

// TestLoginBrakeBounded: the brake's table does not grow past brakeAddrs
// however many addresses fail, and addresses past it share one bucket.
func TestLoginBrakeBounded(t *testing.T) {
	t.Parallel()
	var checked atomic.Int64
	cfg := ServerConfig{
		Password: func(string) (string, bool) {
			checked.Add(1)
			return "pw", true
		},
		LoginBurst:  2,
		LoginRefill: time.Hour,
	}
	s := NewServer(cfg)
	log := slog.New(slog.DiscardHandler)
	addr := func(i int) string {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		return netip.AddrPortFrom(a, 40000).String()
	}
	login := func(s *Server, i int) codes.Code {
		return status.Code(s.authenticate(addr(i), "w1", log, guess("guess")))
	}
	for i := range brakeAddrs + 500 {
		login(s, i)
		login(s, i)
	}
	if n := s.brake.Len(); n != brakeAddrs {
		t.Fatalf("table holds %d addresses, want %d", n, brakeAddrs)
	}
	// The table's addresses failed their burst of 2 each; the first
	// address past it failed the shared bucket's 2.
	if n := checked.Load(); n != 2*brakeAddrs+2 {
		t.Errorf("%d logins were checked, want %d", n, 2*brakeAddrs+2)
	}
	if c := login(s, 0); c != codes.ResourceExhausted {
		t.Errorf("an address in the table that failed its burst: %v, want ResourceExhausted", c)
	}
	if c := login(s, brakeAddrs+499); c != codes.ResourceExhausted {
		t.Errorf("an address past the table: %v, want ResourceExhausted from the shared bucket", c)
	}
	// A fresh brake does not slow an address that never failed.
	if c := login(NewServer(cfg), 1); c != codes.Unauthenticated {
		t.Errorf("an address that never failed: %v, want its password checked", c)
	}
}

// TestLoginBrakeIPv6: the brake keys an IPv6 address by its /64, which
// one host or site holds whole, so that hopping within it gains nothing;
// another /64 is not slowed.
func TestLoginBrakeIPv6(t *testing.T) {
	t.Parallel()
	s := NewServer(ServerConfig{
		Password:    func(string) (string, bool) { return "pw", true },
		LoginBurst:  2,
		LoginRefill: time.Hour,
	})
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		remote string
		want   codes.Code
	}{
		{"[2001:db8:1:2::1]:40000", codes.Unauthenticated},
		{"[2001:db8:1:2::2]:40001", codes.Unauthenticated},
		{"[2001:db8:1:2:ffff::3]:40002", codes.ResourceExhausted},
		{"[2001:db8:1:3::1]:40003", codes.Unauthenticated},
	} {
		err := s.authenticate(tc.remote, "w1", log, guess("guess"))
		if c := status.Code(err); c != tc.want {
			t.Errorf("from %s: %v, want %v", tc.remote, err, tc.want)
		}
	}
	err := s.authenticate("[2001:db8:1:2::9]:1", "w1", log, guess("guess"))
	if !strings.Contains(fmt.Sprint(err), "too many failed logins from 2001:db8:1:2::/64: retry in ") {
		t.Errorf("refusal %v does not name the /64", err)
	}
}

// TestLoginBrakeFullSparesKnownWorker: while more addresses than the
// brake's table holds guess passwords (the probe's 4,200 × 11), a worker
// whose address logged in before logs in again at once, where it used to
// wait with the attacker until ~3 s after the flood; an address never
// seen still shares the attacker's bucket (the price of ShareOverflow).
func TestLoginBrakeFullSparesKnownWorker(t *testing.T) {
	t.Parallel()
	s := NewServer(ServerConfig{
		Password:    func(string) (string, bool) { return "pw", true },
		LoginBurst:  2,
		LoginRefill: time.Hour,
	})
	log := slog.New(slog.DiscardHandler)
	addr := func(i int) string {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		return netip.AddrPortFrom(a, 40000).String()
	}
	const worker = "192.0.2.7:51000"
	if err := s.authenticate(worker, "w1", log, guess("pw")); err != nil {
		t.Fatalf("the worker's first login: %v", err)
	}
	for i := range brakeAddrs + 200 {
		for range 3 {
			s.authenticate(addr(i), "w1", log, guess("guess"))
		}
	}
	if c := status.Code(s.authenticate("192.0.2.99:1", "w2", log, guess("pw"))); c != codes.ResourceExhausted {
		t.Errorf("a never-seen address during the flood: %v, want ResourceExhausted (shared bucket)", c)
	}
	if err := s.authenticate(worker, "w1", log, guess("pw")); err != nil {
		t.Errorf("the known worker during the flood: %v, want in", err)
	}
}
