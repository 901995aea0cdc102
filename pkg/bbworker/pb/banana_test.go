package pb

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func decodeAll(b []byte, vocab bool) (any, error) {
	d := newDecoder(bytes.NewReader(b))
	d.vocab = vocab
	return d.expr()
}

func TestBananaRoundTrip(t *testing.T) {
	t.Parallel()
	for _, v := range []any{
		int64(0), int64(1), int64(127), int64(128), int64(math.MaxInt32), int64(math.MaxInt32) + 1,
		int64(math.MaxInt64), int64(-1), int64(math.MinInt32), int64(math.MinInt32) - 1, int64(math.MinInt64),
		1.5, math.Inf(-1), []byte{}, []byte("hello"), bytes.Repeat([]byte{0xff}, 1000),
		[]any{}, []any{[]byte("message"), int64(3), []any{[]byte("tuple"), []any{}}},
	} {
		for _, vocab := range []bool{false, true} {
			b, err := encode(nil, v, vocab)
			if err != nil {
				t.Fatalf("encode %v: %v", v, err)
			}
			got, err := decodeAll(b, vocab)
			if err != nil {
				t.Fatalf("decode %v (% x): %v", v, b, err)
			}
			if diff := cmp.Diff(v, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		}
	}
}

// TestBananaWire checks encodings against twisted's banana.encode.
func TestBananaWire(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v     any
		vocab bool
		want  []byte
	}{
		{int64(0), false, []byte{0x00, 0x81}},
		{int64(300), false, []byte{0x2c, 0x02, 0x81}},
		{int64(-5), false, []byte{0x05, 0x83}},
		{int64(1 << 31), false, []byte{0x00, 0x00, 0x00, 0x00, 0x08, 0x85}},
		{"abc", false, []byte{0x03, 0x82, 'a', 'b', 'c'}},
		{[]any{"version", int64(6)}, false, append([]byte{0x02, 0x80, 0x07, 0x82}, append([]byte("version"), 0x06, 0x81)...)},
		{[]any{"version", int64(6)}, true, []byte{0x02, 0x80, 0x13, 0x87, 0x06, 0x81}},
		{1.0, false, []byte{0x84, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}},
	} {
		got, err := encode(nil, c.v, c.vocab)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("encode %v: % x, want % x", c.v, got, c.want)
		}
	}
}

func TestBananaLimits(t *testing.T) {
	t.Parallel()
	nested := bytes.Repeat([]byte{0x01, 0x80}, maxDepth+1)
	for _, c := range []struct {
		name  string
		in    []byte
		vocab bool
	}{
		{"long prefix", append(bytes.Repeat([]byte{0x01}, prefixLimit+1), 0x82), false},
		{"long string", append(appendB128(nil, sizeLimit+1, typeString), 'x'), false},
		{"long list", appendB128(nil, sizeLimit+1, typeList), false},
		{"deep nesting", nested, false},
		{"huge int", append(bytes.Repeat([]byte{0x7f}, 10), 0x85), false},
		{"huge negative", append(bytes.Repeat([]byte{0x7f}, 10), 0x86), false},
		{"vocab outside pb", []byte{0x01, 0x87}, false},
		{"unknown vocab", []byte{0x7f, 0x87}, true},
		{"unknown type", []byte{0x01, 0x88}, false},
		{"too many items", append(appendB128(nil, maxExprItem+1, typeList), bytes.Repeat([]byte{0x00, 0x81}, maxExprItem+1)...), false},
	} {
		_, err := decodeAll(c.in, c.vocab)
		if !errors.Is(err, ErrBanana) {
			t.Errorf("%s: %v, want ErrBanana", c.name, err)
		}
	}
	// A header alone announcing a long string costs no long buffer, and
	// a truncated item is an unexpected EOF.
	_, err := decodeAll(appendB128(nil, sizeLimit, typeString), false)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated string: %v", err)
	}
}

func TestBananaAllocationBounded(t *testing.T) {
	// A list announcing sizeLimit items, then nothing: the decoder must
	// not allocate for the announced count.
	in := appendB128(nil, sizeLimit, typeList)
	var before, after runtimeMem
	before.read()
	for range 10 {
		decodeAll(in, false)
	}
	after.read()
	if per := (after.total - before.total) / 10; per > 64<<10 {
		t.Errorf("%d bytes allocated for an announced list", per)
	}
}

func FuzzBanana(f *testing.F) {
	for _, seed := range [][]byte{
		{0x02, 0x80, 0x13, 0x87, 0x06, 0x81},
		{0x03, 0x82, 'a', 'b', 'c'},
		{0x84, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0},
		append(appendB128(nil, 3, typeList), 0x1a, 0x87, 0x01, 0x81, 0x04, 0x82, 'r', 'o', 'o', 't'),
		bytes.Repeat([]byte{0x01, 0x80}, 40),
		append(bytes.Repeat([]byte{0x7f}, 10), 0x85),
		appendB128(nil, sizeLimit, typeString),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d := newDecoder(bytes.NewReader(in))
		d.vocab = true
		for range 8 {
			v, err := d.expr()
			if err != nil {
				return
			}
			// Whatever decodes, unjelly and re-encode take without panic.
			u := unjellier{}
			u.unjelly(v)
			if _, err := encode(nil, v, true); err != nil {
				t.Fatalf("decoded %v does not encode: %v", v, err)
			}
		}
	})
}

// rawDial connects to m and reads the server's dialect offer.
func rawDial(t *testing.T, addr string) (net.Conn, *decoder) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(time.Minute))
	d := newDecoder(nc)
	offer, err := d.expr()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{[]byte("pb"), []byte("none")}, offer); diff != "" {
		t.Fatalf("dialect offer (-want +got):\n%s", diff)
	}
	return nc, d
}

// closedByServer waits for the server to drop nc.
func closedByServer(t *testing.T, nc net.Conn) {
	t.Helper()
	_, err := io.Copy(io.Discard, nc)
	if err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

func TestHostilePeers(t *testing.T) {
	t.Parallel()
	m := newMaster(t, map[string]string{"w1": "sekrit"}, func(s *Server) { s.loginTimeout = time.Second })
	send := func(nc net.Conn, v any, vocab bool) {
		b, err := encode(nil, v, vocab)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(b)
	}
	t.Run("silent", func(t *testing.T) {
		nc, _ := rawDial(t, m.addr)
		start := time.Now()
		closedByServer(t, nc)
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("a silent connection held %v", d)
		}
	})
	t.Run("unknown dialect", func(t *testing.T) {
		nc, _ := rawDial(t, m.addr)
		send(nc, "klingon", false)
		closedByServer(t, nc)
	})
	t.Run("deep nesting", func(t *testing.T) {
		nc, _ := rawDial(t, m.addr)
		send(nc, "pb", false)
		nc.Write(bytes.Repeat([]byte{0x01, 0x80}, 1000))
		closedByServer(t, nc)
	})
	t.Run("logged in, then garbage", func(t *testing.T) {
		nc, _ := rawDial(t, m.addr)
		send(nc, "none", false)
		send(nc, []any{"version", int64(5)}, false)
		closedByServer(t, nc)
	})
	t.Run("wrong version", func(t *testing.T) {
		nc, d := rawDial(t, m.addr)
		send(nc, "pb", false)
		d.vocab = true
		v, err := d.expr()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]any{[]byte("version"), int64(6)}, v); diff != "" {
			t.Fatalf("version (-want +got):\n%s", diff)
		}
		send(nc, []any{"version", int64(7)}, true)
		closedByServer(t, nc)
	})
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

// pbClient is a minimal PB client, as twisted's, for protocol tests.
type pbClient struct {
	t   *testing.T
	nc  net.Conn
	dec *decoder
	req int64
}

func dialPB(t *testing.T, addr string) *pbClient {
	nc, d := rawDial(t, addr)
	c := &pbClient{t: t, nc: nc, dec: d}
	c.send("pb")
	d.vocab = true
	if v := c.read(); fmt.Sprint(v) != fmt.Sprint([]any{[]byte("version"), int64(6)}) {
		t.Fatalf("version: %v", v)
	}
	c.send([]any{"version", int64(6)})
	return c
}

func (c *pbClient) send(v any) {
	b, err := encode(nil, v, true)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nc.Write(b)
}

func (c *pbClient) read() any {
	c.t.Helper()
	v, err := c.dec.expr()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return v
}

// call sends a message and returns "answer" or "error" and its value.
func (c *pbClient) call(obj any, method string, args ...any) (string, any) {
	c.t.Helper()
	c.req++
	c.send([]any{"message", c.req, obj, method, int64(1), append([]any{"tuple"}, args...), []any{"dictionary"}})
	v := c.read().([]any)
	return string(v[0].([]byte)), v[2]
}

// login logs in as name with password, returning whether it was refused.
func (c *pbClient) login(name, password string) (string, any) {
	c.t.Helper()
	kind, v := c.call([]byte("root"), "login", []any{"unicode", []byte(name)})
	if kind != "answer" {
		c.t.Fatalf("login: %s %v", kind, v)
	}
	tup := v.([]any)
	challenge := tup[1].([]byte)
	challenger := tup[2].([]any)[1]
	h := md5.Sum([]byte(password))
	r := md5.Sum(append(h[:], challenge...))
	return c.call(challenger, "respond", r[:], []any{"remote", int64(99)})
}

func TestLoginProtocol(t *testing.T) {
	t.Parallel()
	m := newMaster(t, map[string]string{"w1": "sekrit"})
	c := dialPB(t, m.addr)
	for range maxLoginFailures - 1 {
		kind, v := c.login("w1", "guess")
		var u unjellier
		f, err := u.unjelly(v)
		if kind != "error" || err != nil || failureText(f) != "twisted.cred.error.UnauthorizedLogin: " {
			t.Fatalf("wrong password: %s %q %v", kind, failureText(f), err)
		}
	}
	kind, v := c.login("w1", "sekrit")
	if kind != "answer" {
		t.Fatalf("right password: %s %v", kind, v)
	}
	if p, ok := v.([]any); !ok || string(p[0].([]byte)) != "remote" {
		t.Fatalf("login answered %v, want a remote perspective", v)
	}

	// A guesser is dropped after maxLoginFailures.
	g := dialPB(t, m.addr)
	for range maxLoginFailures {
		if kind, _ := g.login("w2", "guess"); kind != "error" {
			t.Fatalf("unknown worker: %s", kind)
		}
	}
	closedByServer(t, g.nc)
	if !strings.Contains(m.logs.String(), "worker=w2") {
		t.Errorf("no log of the refused guesser:\n%s", m.logs)
	}
}
