package protocol

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// The login (protocol 3). The password never crosses the wire:
//
//  1. The worker sends Hello: its name and 32 random bytes of its own
//     (client_nonce), no password.
//  2. The master answers with Challenge: 32 random bytes (the nonce),
//     fresh for every hello. (A worker whose TLS client certificate the
//     master verified, its CN the worker's name, gets Welcome at once.)
//  3. The worker answers with Proof: loginMAC, an HMAC-SHA256 keyed by
//     loginKey (PBKDF2-SHA256 of its password, loginIterations rounds,
//     salted with keyContext and its name) over the transcript: a fixed context string, the
//     protocol version, its name, the master's nonce, its own nonce, and
//     the TLS channel binding (RFC 9266's tls-exporter: 32 bytes exported
//     from the TLS session with exporterLabel; empty on a plaintext link).
//  4. The master computes the same MAC with the key of the password it
//     has for that name (a random key for an unknown name, so that both
//     get the same answer) and compares in constant time.
//
// Both sides derive the key once per (name, password) and keep it: the
// worker for its life, the master per configured worker (keyCache). The
// master never derives a key from what a peer sends: an unknown name gets
// the random key without any derivation.
//
// A captured handshake is worthless: the next connection gets another
// nonce, so the old proof does not match. Over TLS the proof is bound to
// the TLS session too, so a proof relayed by a man in the middle (one
// that the worker trusted by mistake) does not match the master's own
// session with it. On a plaintext link an active man in the middle can
// still relay a live login (and then read and write the stream): that is
// what TLS is for; the password itself stays safe from it.
//
// But a recorded login (on a plaintext link, or by a man in the middle
// the worker trusted by mistake) lets its recorder guess the password
// offline: each guess is one proof to compute and compare. Protocol 2
// keyed the HMAC with the password itself, a microsecond a guess (150,001
// guesses in half a second in Python); protocol 3 keys it with loginKey,
// so each guess costs a PBKDF2 derivation (about 40 ms on a 2-core
// machine, measured: 100,000 rounds 24 ms, 200,000 42 ms, under load 5).
// That slows a dictionary down, it does not stop one: a short or common
// password still falls; TLS keeps the handshake from being recorded.
const (
	loginContext    = "gbb worker login v3"
	keyContext      = "gbb worker login key v3"
	loginIterations = 200_000
	loginKeySize    = 32
	exporterLabel   = "EXPORTER-gbb-worker-login"
	nonceSize       = 32
	bindingSize     = 32
)

// newNonce returns nonceSize random bytes.
func newNonce() []byte {
	b := make([]byte, nonceSize)
	rand.Read(b) // never fails (crypto/rand's documentation)
	return b
}

// loginKey is the key of the proofs of the worker called name whose
// password is password: PBKDF2-SHA256 with loginIterations rounds, salted
// with keyContext, a zero byte and the name (so that one dictionary run
// serves one name only). It is slow on purpose: call it once per (name,
// password), never on a name a peer chose that is not configured.
func loginKey(password, name string) []byte {
	salt := append([]byte(keyContext+"\x00"), name...)
	k, err := pbkdf2.Key(sha256.New, password, salt, loginIterations, loginKeySize)
	if err != nil {
		// Only FIPS 140-3 mode refuses (a password shorter than 112 bits'
		// worth, a salt under 16 bytes); keep the login working there.
		panic(fmt.Sprintf("protocol: pbkdf2: %v", err))
	}
	return k
}

// loginMAC is the Proof of a worker called name, keyed by key (its
// loginKey), for the master's nonce, the worker's nonce and the channel
// binding.
func loginMAC(key []byte, version uint32, name string, nonce, clientNonce, binding []byte) []byte {
	m := hmac.New(sha256.New, key)
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
// the key derived from its password (slow: a PBKDF2 derivation), for the master's nonce (Challenge.nonce), its own
// (Hello.client_nonce) and the channel binding (empty on a plaintext
// link), in this Version: for a client of the wire protocol other than
// Client, such as a test's.
func LoginMAC(password, name string, nonce, clientNonce, binding []byte) []byte {
	return loginMAC(loginKey(password, name), Version, name, nonce, clientNonce, binding)
}

// keyCache keeps the loginKey of each configured worker's password, so
// that the master derives it once, at the worker's first login (and again
// when its password changes).
type keyCache struct {
	mu   sync.Mutex
	keys map[string]cachedKey // by worker name; guarded by mu
}

type cachedKey struct {
	password string
	key      []byte
}

// maxCachedKeys bounds keyCache: past it (many workers removed and added
// by reconfigs), the cache starts over.
const maxCachedKeys = 10_000

// key returns the loginKey of name and password, derived on the first
// call for them. Callers pass only configured names and their passwords.
func (c *keyCache) key(name, password string) []byte {
	c.mu.Lock()
	k, ok := c.keys[name]
	c.mu.Unlock()
	if ok && k.password == password {
		return k.key
	}
	// Derived outside the lock: another worker's login does not wait for
	// this one's derivation. Two first logins of one name may both derive.
	key := loginKey(password, name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil || len(c.keys) >= maxCachedKeys {
		c.keys = make(map[string]cachedKey)
	}
	c.keys[name] = cachedKey{password: password, key: key}
	return key
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
