package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/gbb-ci/gbb/internal/backoff"
	"github.com/gbb-ci/gbb/internal/connlimit"
	"github.com/gbb-ci/gbb/internal/logsample"
)

// http2Preface is what every gRPC client sends first.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// errNotGRPC is returned by a guarded connection's Read when its first
// bytes are not the HTTP/2 preface; gRPC then drops the connection.
var errNotGRPC = errors.New("protocol: not a gRPC client: the first bytes are not the HTTP/2 preface")

// MsgPortSpeaksTLS is what the master tells a plaintext worker on its TLS
// worker port (in an HTTP/2 GOAWAY's debug data).
const MsgPortSpeaksTLS = "gbb: the master's worker port speaks TLS: give the worker -tls-fingerprint, -tls-ca or -tls (tls_fingerprint, tls_ca_file or tls in worker.toml)"

// tlsHandshakeRecord is the first byte of every TLS client's first record.
const tlsHandshakeRecord = 0x16

// errNotTLS is returned by a guarded connection's Read on a TLS port when
// its first byte does not start a TLS handshake.
var errNotTLS = errors.New("protocol: not a TLS client")

// guard watches the worker port's connections until their worker speaks,
// so that whatever is dropped before then (garbage, a stalled handshake, a
// connection that never says hello) is logged once, with its address and
// why (sampled: a flood of them writes a few lines, then one per 10s
// counting the others). gRPC itself drops them (its ConnectionTimeout and keepalive); the
// guard only tells.
type guard struct {
	sample *logsample.Sampler // of the log lines about dropped connections
	// tlsSample samples those of failed TLS handshakes, per address.
	tlsSample *logsample.Keyed

	mu    sync.Mutex
	conns map[string]*guardConn // guarded by mu; open connections by remote address
}

// wrap returns lis with its connections guarded; handshake is the bound
// of the HTTP/2 handshake, for the log; withTLS says the port speaks TLS,
// so that a connection must start with a TLS handshake record instead.
func (g *guard) wrap(lis net.Listener, log *slog.Logger, sample *logsample.Sampler, tlsSample *logsample.Keyed, handshake time.Duration, withTLS bool) net.Listener {
	g.sample = sample
	g.tlsSample = tlsSample
	return &guardListener{Listener: lis, g: g, log: log, handshake: handshake, tls: withTLS}
}

// spoke records that the connection from remote carried a first message.
func (g *guard) spoke(remote string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.conns[remote]; c != nil {
		c.mu.Lock()
		c.spoke = true
		c.mu.Unlock()
	}
}

// authenticated tells the listener under the connection from remote
// that its worker logged in (connlimit.Authenticated): a listener that
// evicts connections not authenticated no longer counts it.
func (g *guard) authenticated(remote string) {
	g.mu.Lock()
	c := g.conns[remote]
	g.mu.Unlock()
	if c != nil {
		connlimit.Authenticated(c.Conn)
	}
}

type guardListener struct {
	net.Listener
	g         *guard
	log       *slog.Logger
	handshake time.Duration
	tls       bool
}

func (l *guardListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	remote := nc.RemoteAddr().String()
	c := &guardConn{Conn: nc, g: l.g, remote: remote, log: l.log.With("remote", remote), handshake: l.handshake, start: time.Now(), tls: l.tls}
	l.g.mu.Lock()
	if l.g.conns == nil {
		l.g.conns = make(map[string]*guardConn)
	}
	l.g.conns[remote] = c
	l.g.mu.Unlock()
	return c, nil
}

// guardConn checks that a connection starts with the HTTP/2 preface, and
// logs why it was dropped if it ends before its worker spoke.
type guardConn struct {
	net.Conn
	g         *guard
	remote    string
	log       *slog.Logger
	handshake time.Duration
	start     time.Time
	tls       bool // the port speaks TLS: the first byte must be a handshake record's

	mu      sync.Mutex
	checked int    // guarded by mu; bytes of the preface checked
	why     string // guarded by mu; why it is being dropped, when known
	spoke   bool   // guarded by mu; a first message arrived on it
	closed  bool   // guarded by mu
	// handshaking is set during the TLS handshake: a Close then leaves
	// the log line to tlsHandshake, which knows why; logged says it is
	// written.
	handshaking, logged bool // guarded by mu
}

func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tls {
		if c.checked == 0 && n > 0 {
			c.checked = 1
			if p[0] != tlsHandshakeRecord {
				if bytes.HasPrefix([]byte(http2Preface), p[:min(n, len(http2Preface))]) {
					c.why = "a plaintext gRPC client on the TLS worker port: give the worker -tls-fingerprint, -tls-ca or -tls (tls_fingerprint, tls_ca_file in worker.toml)"
					tellPlaintextClient(c.Conn, p[:n])
				} else {
					c.why = fmt.Sprintf("not a TLS client: its first bytes are %q", firstBytes(p[:n]))
				}
				return 0, errNotTLS
			}
		}
	} else if c.checked < len(http2Preface) {
		k := min(n, len(http2Preface)-c.checked)
		if !bytes.Equal(p[:k], []byte(http2Preface[c.checked:c.checked+k])) {
			c.why = fmt.Sprintf("not a gRPC client: its first bytes are %q, not the HTTP/2 preface", firstBytes(p[:n]))
			if c.checked == 0 && p[0] == tlsHandshakeRecord {
				c.why = `a TLS client on the plaintext worker port: set tls in [protocols.grpc] ("auto", or tls_cert_file and tls_key_file), or give the worker no TLS flags`
			}
			return 0, errNotGRPC
		}
		c.checked += k
	}
	if err != nil && c.why == "" {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && !c.spoke:
			c.why = fmt.Sprintf("no complete HTTP/2 handshake within %s", c.handshake)
		case !c.spoke:
			c.why = fmt.Sprintf("closed by the peer before any message (%v)", err)
		}
	}
	return n, err
}

// tlsFailed starts the why of a connection whose TLS handshake failed.
const tlsFailed = "TLS handshake failed"

// tlsHandshake runs a TLS handshake on c: a connection closed meanwhile
// (gRPC's TLS closes it before it returns the error) is logged once the
// handshake's error is known, as why it was dropped.
func (c *guardConn) tlsHandshake(run func() error) error {
	c.mu.Lock()
	c.handshaking = true
	c.mu.Unlock()
	err := run()
	c.mu.Lock()
	c.handshaking = false
	if err != nil && c.why == "" {
		c.why = fmt.Sprintf("%s: %v", tlsFailed, err)
	}
	log := c.closed && !c.logged
	c.logged = c.logged || log
	why := c.why
	c.mu.Unlock()
	if log {
		c.logDropped(why)
	}
	return err
}

func (c *guardConn) Close() error {
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	log := first && !c.spoke && !c.handshaking
	c.logged = c.logged || log
	why := c.why
	c.mu.Unlock()
	if first {
		c.g.mu.Lock()
		if c.g.conns[c.remote] == c {
			delete(c.g.conns, c.remote)
		}
		c.g.mu.Unlock()
	}
	if log {
		c.logDropped(why)
	}
	return c.Conn.Close()
}

// logDropped logs that c was dropped before its worker spoke, and why.
func (c *guardConn) logDropped(why string) {
	if why == "" {
		why = "no message on it (no stream, or no answer to keepalive pings)"
	}
	args := []any{"why", why, "after", time.Since(c.start).Round(time.Millisecond)}
	if strings.HasPrefix(why, tlsFailed) {
		c.g.tlsSample.Log(backoff.AddrKey(c.remote), c.log, slog.LevelWarn, "worker port: dropped a connection before its worker spoke", args...)
		return
	}
	c.g.sample.Log(c.log, slog.LevelWarn, "worker port: dropped a connection before its worker spoke", args...)
}

// tellPlaintextClient tells a plaintext gRPC client on the TLS port, in
// the HTTP/2 it speaks, that the port speaks TLS: the server's SETTINGS,
// then, once its stream's HEADERS came (read is what was read of conn so
// far), a GOAWAY (INADEQUATE_SECURITY) that keeps the stream, with
// MsgPortSpeaksTLS as debug data: gRPC puts it in the stream's error when
// the connection then closes, so that the worker gives up saying why
// rather than retrying for ever. Best effort, within 2 seconds: the
// connection is dropped either way.
func tellPlaintextClient(conn net.Conn, read []byte) {
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	defer conn.SetDeadline(time.Time{})
	var rest []byte
	if len(read) > len(http2Preface) {
		rest = read[len(http2Preface):]
	}
	in := io.MultiReader(bytes.NewReader(rest), conn)
	if len(read) < len(http2Preface) {
		if _, err := io.CopyN(io.Discard, in, int64(len(http2Preface)-len(read))); err != nil {
			return
		}
	}
	fr := http2.NewFramer(conn, in)
	if fr.WriteSettings() != nil {
		return
	}
	for range 16 {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if _, ok := f.(*http2.HeadersFrame); ok {
			fr.WriteGoAway(f.Header().StreamID, http2.ErrCodeInadequateSecurity, []byte(MsgPortSpeaksTLS))
			return
		}
	}
}

// firstBytes is at most the first 32 bytes of b, for a log line.
func firstBytes(b []byte) []byte { return b[:min(len(b), 32)] }
