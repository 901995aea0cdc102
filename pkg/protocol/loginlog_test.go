package protocol

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// helloAs sends h to the master at addr from the loopback address src
// and returns the stream's end, as sayHello does, answering a challenge
// with the proof of password.
func helloAs(t *testing.T, src, addr string, h *Hello, password string) error {
	t.Helper()
	dial := func(ctx context.Context, target string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return d.DialContext(ctx, "tcp", target)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
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
	_, err = loginStream(stream, h, password)
	return err
}

// TestFailedLoginLoggedPerAddress: junk hellos and wrong passwords from
// one address (more than the shared budget of refusal lines) do not hide
// the first wrong-password line of another address: failed logins are
// sampled per address (the probe hid its guesses behind cheap junk).
func TestFailedLoginLoggedPerAddress(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	for range 3 * logBurst {
		err := helloAs(t, "127.0.0.2", m.addr, &Hello{ProtocolVersion: Version + 1, Name: "junk"}, "pw")
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("a junk hello: %v, want FailedPrecondition", err)
		}
	}
	for range 2 * logKeyBurst {
		err := helloAs(t, "127.0.0.2", m.addr, &Hello{ProtocolVersion: Version, Name: "w"}, "guess")
		if c := status.Code(err); c != codes.Unauthenticated && c != codes.ResourceExhausted {
			t.Fatalf("a guess: %v, want Unauthenticated or ResourceExhausted", err)
		}
	}
	if err := helloAs(t, "127.0.0.3", m.addr, &Hello{ProtocolVersion: Version, Name: "w"}, "wrong"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the other address's wrong password: %v, want Unauthenticated", err)
	}
	waitLog(t, m, "address=127.0.0.3")
	n := 0
	for _, line := range strings.Split(m.log.String(), "\n") {
		if strings.Contains(line, "wrong name or password") && strings.Contains(line, "address=127.0.0.2 ") {
			n++
		}
	}
	// Its own first refusals are logged too (more than logKeyBurst when
	// the guesses took more than logSample on a loaded machine).
	if n == 0 {
		t.Errorf("no wrong-password line of 127.0.0.2:\n%s", m.log)
	}
}
