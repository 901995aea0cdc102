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
