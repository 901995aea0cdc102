package protocol

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// loginStream logs in on stream as a worker of this version would: it
// sends h (with a client nonce when h has none), answers a Challenge with
// the Proof of password, and returns the master's next message (a Welcome,
// or the stream's error).
func loginStream(stream grpc.BidiStreamingClient[WorkerMessage, MasterMessage], h *Hello, password string) (*MasterMessage, error) {
	if h.ClientNonce == nil {
		h.ClientNonce = newNonce()
	}
	if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: h}}); err != nil {
		_, rerr := stream.Recv()
		return nil, rerr
	}
	m, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if ch := m.GetChallenge(); ch != nil {
		mac := LoginMAC(password, h.GetName(), ch.GetNonce(), h.GetClientNonce(), nil)
		if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Proof{Proof: &Proof{Mac: mac}}}); err != nil {
			_, rerr := stream.Recv()
			return nil, rerr
		}
		return stream.Recv()
	}
	return m, nil
}

// recordingProxy forwards one connection to target and records what the
// client sent.
type recordingProxy struct {
	addr string
	mu   sync.Mutex
	sent []byte // guarded by mu
}

func (p *recordingProxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent = append(p.sent, b...)
	return len(b), nil
}

func (p *recordingProxy) captured() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.sent)
}

func startRecordingProxy(t *testing.T, target string) *recordingProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{addr: lis.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer s.Close()
		done := make(chan struct{})
		go func() { io.Copy(c, s); c.Close(); close(done) }()
		io.Copy(io.MultiWriter(s, p), c)
		s.Close()
		<-done
	})
	return p
}

// TestReplayedHandshake captures the bytes a real worker sends over a
// plaintext link while it logs in, and replays them on a new connection:
// the master refuses them (its challenge is new, so the old proof does not
// match), and the password is nowhere in them.
func TestReplayedHandshake(t *testing.T) {
	t.Parallel()
	const password = "correct-horse-battery-staple"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	attach := make(chan *WorkerConn, 10)
	s := NewServer(ServerConfig{
		Password: func(string) (string, bool) { return password, true },
		Attach:   func(c *WorkerConn) { attach <- c },
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })

	proxy := startRecordingProxy(t, l.Addr().String())
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() {
		wdone <- NewClient(ClientConfig{Master: proxy.addr, Name: "w1", Password: password, Executor: newTestExecutor(),
			MinBackoff: time.Hour}).Run(wctx)
	}()
	var c *WorkerConn
	select {
	case c = <-attach:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not attach")
	}
	handshake := proxy.captured()
	wcancel()
	<-wdone
	<-c.Done()
	if bytes.Contains(handshake, []byte(password)) {
		t.Errorf("the password crossed the wire in the clear")
	}
	if !bytes.Contains(handshake, []byte("w1")) || len(handshake) < len(http2Preface)+100 {
		t.Fatalf("captured %d bytes, not a handshake: %q", len(handshake), handshake)
	}

	// The replay, on a connection of its own.
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(handshake); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "worker refused: wrong name or password") {
		select {
		case c := <-attach:
			t.Fatalf("the replayed handshake logged in as %q", c.Name())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refusal of the replay logged:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case c := <-attach:
		t.Fatalf("the replayed handshake logged in as %q", c.Name())
	default:
	}
}

// TestOldWorkerRefused: a worker of protocol 1 (its password in its
// hello) is told to upgrade; so is any hello that carries a password.
func TestOldWorkerRefused(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	for _, h := range []*Hello{
		{ProtocolVersion: 1, Name: "old", Password: "pw"},
		{ProtocolVersion: Version, Name: "old", Password: "pw", ClientNonce: newNonce()},
	} {
		cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		stream, err := NewMasterClient(cc).Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: h}}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "upgrade the worker") || !errors.Is(classify(err), ErrVersionMismatch) {
			t.Errorf("hello %v: %v, want FailedPrecondition: upgrade the worker", h, err)
		}
	}
	waitLog(t, m, "worker refused: its hello carried a password in clear")
}

// TestHelloMessages: each refused hello says what is wrong: a password in
// a hello of the current version is not called a version mismatch, an
// older worker is told to upgrade, a newer one to upgrade the master.
func TestHelloMessages(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	for _, tt := range []struct {
		hello      *Hello
		want, lack string
	}{
		{&Hello{ProtocolVersion: Version, Name: "w", Password: "pw", ClientNonce: newNonce()},
			"sent its password in clear in its hello", fmt.Sprintf("speaks protocol version %d, master speaks version %d", Version, Version)},
		{&Hello{ProtocolVersion: Version - 1, Name: "w", ClientNonce: newNonce()},
			fmt.Sprintf("speaks protocol version %d, master speaks version %d: upgrade the worker", Version-1, Version), ""},
		{&Hello{ProtocolVersion: Version + 1, Name: "w", ClientNonce: newNonce()},
			fmt.Sprintf("speaks protocol version %d, master speaks version %d: upgrade the master", Version+1, Version), ""},
	} {
		err := sayHello(t, m.addr, tt.hello)
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tt.want) || (tt.lack != "" && strings.Contains(err.Error(), tt.lack)) {
			t.Errorf("hello %v: %v, want FailedPrecondition with %q", tt.hello, err, tt.want)
		}
	}
}

// TestRecordedLoginGuessCost: a recorded login (hello, challenge, proof)
// lets its recorder test password guesses offline; each guess must cost a
// PBKDF2-SHA256 derivation of 200,000 rounds, not one HMAC. The test
// answers a live challenge both ways: the proof keyed by the password
// itself (protocol 2's, one HMAC a guess) is refused, the proof keyed by
// the derivation computed here independently is taken. A master that
// keyed with the password, or with fewer rounds, fails it.
func TestRecordedLoginGuessCost(t *testing.T) {
	t.Parallel()
	const name, password = "w1", "correct-horse-battery-staple"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerConfig{
		Password: func(n string) (string, bool) { return password, n == name },
		// No brake in the way of the refused proofs.
		LoginBurst: 100,
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })

	salt := append([]byte("gbb worker login key v3\x00"), name...)
	derived, err := pbkdf2.Key(sha256.New, password, salt, 200_000, 32)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		what string
		key  []byte
		ok   bool
	}{
		{"plain HMAC keyed by the password", []byte(password), false},
		{"HMAC keyed by PBKDF2 with 100,000 rounds", mustPBKDF2(t, password, salt, 100_000), false},
		{"HMAC keyed by PBKDF2-SHA256 with 200,000 rounds", derived, true},
	} {
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		stream, err := NewMasterClient(cc).Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cn := newNonce()
		if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: &Hello{ProtocolVersion: Version, Name: name, ClientNonce: cn}}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil || m.GetChallenge() == nil {
			t.Fatalf("%s: first answer %v, %v; want a challenge", tt.what, m, err)
		}
		mac := loginMAC(tt.key, Version, name, m.GetChallenge().GetNonce(), cn, nil)
		if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Proof{Proof: &Proof{Mac: mac}}}); err != nil {
			t.Fatal(err)
		}
		m, err = stream.Recv()
		switch {
		case tt.ok && (err != nil || m.GetWelcome() == nil):
			t.Errorf("%s: %v, %v; want a welcome", tt.what, m, err)
		case !tt.ok && status.Code(err) != codes.Unauthenticated:
			t.Errorf("%s: %v, %v; want Unauthenticated", tt.what, m, err)
		}
	}
}

func mustPBKDF2(t *testing.T, password string, salt []byte, rounds int) []byte {
	t.Helper()
	k, err := pbkdf2.Key(sha256.New, password, salt, rounds, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKeyCache: the master derives a configured worker's key once and
// derives it again when the password changes.
func TestKeyCache(t *testing.T) {
	t.Parallel()
	var c keyCache
	k1 := c.key("w", "one")
	if k := c.key("w", "one"); &k[0] != &k1[0] {
		t.Errorf("the key was derived again for the same password")
	}
	if k := c.key("w", "two"); bytes.Equal(k, k1) || !bytes.Equal(k, loginKey("two", "w")) {
		t.Errorf("a changed password kept the old key")
	}
	if bytes.Equal(loginKey("one", "w"), loginKey("one", "v")) {
		t.Errorf("two names share a key: the name is not in the salt")
	}
}

// TestLoginSameAnswer: an unknown worker and a wrong password get the
// same answer; the master's log tells them apart, with the address.
func TestLoginSameAnswer(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s := NewServer(ServerConfig{
		Password: func(name string) (string, bool) { return "pw", name == "known" },
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })
	answer := func(name, password string) string {
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		stream, err := NewMasterClient(cc).Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		_, err = loginStream(stream, &Hello{ProtocolVersion: Version, Name: name}, password)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s/%s: %v, want Unauthenticated", name, password, err)
		}
		return strings.Replace(status.Convert(err).Message(), name, "NAME", 1)
	}
	if a, b := answer("known", "wrong"), answer("unknown", "pw"); a != b {
		t.Errorf("wrong password answered %q, unknown worker %q", a, b)
	}
	for _, want := range []string{"known_name=true", "known_name=false", "address=127.0.0.1"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}
