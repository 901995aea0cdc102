package protocol

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"hash"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// The login (protocol 2). The password never crosses the wire:
//
//  1. The worker sends Hello: its name and 32 random bytes of its own
//     (client_nonce), no password.
//  2. The master answers with Challenge: 32 random bytes (the nonce),
//     fresh for every hello. (A worker whose TLS client certificate the
//     master verified, its CN the worker's name, gets Welcome at once.)
//  3. The worker answers with Proof: loginMAC, an HMAC-SHA256 keyed by
//     its password over the transcript: a fixed context string, the
//     protocol version, its name, the master's nonce, its own nonce, and
//     the TLS channel binding (RFC 9266's tls-exporter: 32 bytes exported
//     from the TLS session with exporterLabel; empty on a plaintext link).
//  4. The master computes the same MAC with the password it has for that
//     name (a random key for an unknown name, so that both take the same
//     time and get the same answer) and compares in constant time.
//
// A captured handshake is worthless: the next connection gets another
// nonce, so the old proof does not match. Over TLS the proof is bound to
// the TLS session too, so a proof relayed by a man in the middle (one
// that the worker trusted by mistake) does not match the master's own
// session with it. On a plaintext link an active man in the middle can
// still relay a live login (and then read and write the stream): that is
// what TLS is for; the password itself stays safe from it.
const (
	loginContext  = "gbb worker login v2"
	exporterLabel = "EXPORTER-gbb-worker-login"
	nonceSize     = 32
	bindingSize   = 32
)

// newNonce returns nonceSize random bytes.
func newNonce() []byte {
	b := make([]byte, nonceSize)
	rand.Read(b) // never fails (crypto/rand's documentation)
	return b
}

// loginMAC is the Proof of a worker called name, keyed by password, for
// the master's nonce, the worker's nonce and the channel binding.
func loginMAC(password []byte, version uint32, name string, nonce, clientNonce, binding []byte) []byte {
	m := hmac.New(sha256.New, password)
	field := func(h hash.Hash, b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], version)
	field(m, []byte(loginContext))
	field(m, v[:])
	field(m, []byte(name))
	field(m, nonce)
	field(m, clientNonce)
	field(m, binding)
	return m.Sum(nil)
}

// LoginMAC is the Proof (Proof.mac) of the worker called name, keyed by
// its password, for the master's nonce (Challenge.nonce), its own
// (Hello.client_nonce) and the channel binding (empty on a plaintext
// link), in this Version: for a client of the wire protocol other than
// Client, such as a test's.
func LoginMAC(password, name string, nonce, clientNonce, binding []byte) []byte {
	return loginMAC([]byte(password), Version, name, nonce, clientNonce, binding)
}

// tlsState returns the TLS state of the connection that carries ctx's
// stream (gRPC puts its peer in the stream's context), or nil on a
// plaintext connection.
func tlsState(ctx context.Context) *tls.ConnectionState {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		return &ti.State
	}
	return nil
}

// channelBinding returns the login's binding to the TLS session of state:
// empty on a plaintext link (nil state).
func channelBinding(state *tls.ConnectionState) ([]byte, error) {
	if state == nil {
		return nil, nil
	}
	b, err := state.ExportKeyingMaterial(exporterLabel, nil, bindingSize)
	if err != nil {
		return nil, fmt.Errorf("tls channel binding: %w", err)
	}
	return b, nil
}

// checkNonce applies the bounds of a nonce sent by a peer.
func checkNonce(what string, b []byte) error {
	if len(b) != nonceSize {
		return fmt.Errorf("the %s is %d bytes long, not %d", what, len(b), nonceSize)
	}
	return nil
}
