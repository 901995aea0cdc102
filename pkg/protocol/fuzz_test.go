package protocol

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// FuzzLogin sends the master, over a real stream, a first message and a
// second one (the answer to its challenge) decoded from the fuzzer's
// bytes: the master must answer each stream (a refusal, or a Welcome)
// without panicking, and never let a worker in without the proof of its
// password.
func FuzzLogin(f *testing.F) {
	hello, _ := proto.Marshal(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: &Hello{ProtocolVersion: Version, Name: "w", ClientNonce: make([]byte, nonceSize)}}})
	proof, _ := proto.Marshal(&WorkerMessage{Msg: &WorkerMessage_Proof{Proof: &Proof{Mac: make([]byte, 32)}}})
	old, _ := proto.Marshal(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: &Hello{ProtocolVersion: 1, Name: "w", Password: "pw"}}})
	f.Add(hello, proof)
	f.Add(old, proof)
	f.Add(hello, hello)
	f.Add([]byte{}, []byte{})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	attached := make(chan *WorkerConn, 1)
	s := NewServer(ServerConfig{
		Password:     func(name string) (string, bool) { return "pw", name == "w" },
		Attach:       func(c *WorkerConn) { attached <- c },
		Logger:       slog.New(slog.DiscardHandler),
		HelloTimeout: 5 * time.Second,
		LoginBurst:   1 << 30, // every attempt is checked
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, lis) }()
	f.Cleanup(func() { cancel(); <-served })
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cc.Close() })

	f.Fuzz(func(t *testing.T, first, second []byte) {
		var m1, m2 WorkerMessage
		if proto.Unmarshal(first, &m1) != nil || proto.Unmarshal(second, &m2) != nil {
			return
		}
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		stream, err := NewMasterClient(cc).Connect(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&m1); err != nil {
			return // the master ended the stream: its refusal
		}
		ans, err := stream.Recv()
		if err != nil {
			return
		}
		if ans.GetChallenge() == nil {
			t.Fatalf("the master answered %v to %v, not a challenge or a refusal", ans, &m1)
		}
		if err := stream.Send(&m2); err != nil {
			return
		}
		if ans, err := stream.Recv(); err == nil {
			t.Fatalf("the master answered %v to a proof made without the password", ans)
		}
		select {
		case c := <-attached:
			t.Fatalf("%q attached without the proof of its password", c.Name())
		default:
		}
	})
}

// FuzzVerifyPinned checks arbitrary certificate chains against a pin:
// no panic, and a chain that does not hold the pinned certificate is
// refused.
func FuzzVerifyPinned(f *testing.F) {
	f.Add([]byte{}, []byte{}, "localhost")
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01}, make([]byte, 32), "127.0.0.1")
	// A real chain (leaf, CA) with its CA pinned.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caT, caT, &key.PublicKey, key)
	ca, _ := x509.ParseCertificate(caDER)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "m"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leafT, ca, &key.PublicKey, key)
	caSum := sha256.Sum256(caDER)
	f.Add(append(leafDER, caDER...), caSum[:], "localhost")
	f.Fuzz(func(t *testing.T, der, pin []byte, name string) {
		certs, err := x509.ParseCertificates(der)
		if err != nil || len(certs) == 0 {
			return
		}
		if len(pin) > 32 {
			pin = pin[:32]
		}
		err = verifyPinned(pin, name, certs, time.Now())
		if err == nil {
			found := false
			for _, c := range certs {
				sum := sha256.Sum256(c.Raw)
				found = found || string(pin) == string(sum[:])
			}
			if !found {
				t.Fatalf("a chain without the pinned certificate was accepted")
			}
		}
	})
}

// FuzzParseFingerprint: no panic; what it accepts is 32 bytes that print
// back to an equivalent fingerprint.
func FuzzParseFingerprint(f *testing.F) {
	f.Add("sha256:" + string(make([]byte, 64)))
	f.Add("sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		if len(b) != 32 {
			t.Fatalf("ParseFingerprint(%q) = %d bytes", s, len(b))
		}
	})
}

// fuzzMaster is a master's end of the wire protocol that answers a
// worker's hello with whatever the fuzzer made: the remote peer of
// FuzzClientLogin.
type fuzzMaster struct {
	UnimplementedMasterServer
	answers chan [2]*MasterMessage
	// wrong gets what a worker sent after a challenge that was not a proof.
	wrong chan *WorkerMessage
}

func (f *fuzzMaster) Connect(stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage]) error {
	ans := <-f.answers
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(ans[0]); err != nil || ans[0].GetChallenge() == nil {
		return err // the stream ends: a worker welcomed finds its master gone
	}
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	if m.GetProof() == nil {
		f.wrong <- m
		return nil
	}
	return stream.Send(ans[1])
}

// FuzzClientLogin has a master answer the worker's hello, and its proof,
// with messages decoded from the fuzzer's bytes: the worker must end the
// session (welcomed or not) without panicking, and answer a challenge
// only with a proof.
func FuzzClientLogin(f *testing.F) {
	ch, _ := proto.Marshal(&MasterMessage{Msg: &MasterMessage_Challenge{Challenge: &Challenge{Nonce: make([]byte, nonceSize)}}})
	short, _ := proto.Marshal(&MasterMessage{Msg: &MasterMessage_Challenge{Challenge: &Challenge{Nonce: []byte{1}}}})
	welcome, _ := proto.Marshal(&MasterMessage{Msg: &MasterMessage_Welcome{Welcome: &Welcome{ProtocolVersion: Version}}})
	f.Add(ch, welcome)
	f.Add(short, welcome)
	f.Add(welcome, welcome)
	f.Add(ch, ch)
	f.Add([]byte{}, []byte{})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	fm := &fuzzMaster{answers: make(chan [2]*MasterMessage, 1), wrong: make(chan *WorkerMessage, 1)}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(codec{}))
	RegisterMasterServer(gs, fm)
	go gs.Serve(lis)
	f.Cleanup(gs.Stop)

	f.Fuzz(func(t *testing.T, first, second []byte) {
		var m1, m2 MasterMessage
		if proto.Unmarshal(first, &m1) != nil || proto.Unmarshal(second, &m2) != nil {
			return
		}
		fm.answers <- [2]*MasterMessage{&m1, &m2}
		c := NewClient(ClientConfig{Master: lis.Addr().String(), Name: "w", Password: "pw", Executor: newTestExecutor()})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		welcomed, err := c.session(ctx, c.masters[0], c.log)
		if ctx.Err() != nil {
			t.Fatalf("the session did not end: %v", err)
		}
		if welcomed && m1.GetWelcome() == nil && m2.GetWelcome() == nil {
			t.Fatalf("welcomed without a welcome (%v, %v)", &m1, &m2)
		}
		select {
		case <-fm.answers: // the master never took it: the client did not connect
		default:
		}
		select {
		case m := <-fm.wrong:
			t.Fatalf("the worker answered a challenge with %v", m)
		default:
		}
	})
}
