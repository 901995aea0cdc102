package pb

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// referenceChain is the probe's payload: root.login's arguments hold a
// chain of D references, each a list holding the one before twice, and
// then a dictionary keyed by the last: 2^D values in about 60*D bytes.
func referenceChain(d int) []any {
	args := []any{"tuple", []any{"reference", int64(1), []any{"list", []any{"unicode", []byte("a")}, []any{"unicode", []byte("a")}}}}
	for i := 2; i <= d; i++ {
		args = append(args, []any{"reference", int64(i), []any{"list", []any{"dereference", int64(i - 1)}, []any{"dereference", int64(i - 1)}}})
	}
	return append(args, []any{"dictionary", []any{[]any{"dereference", int64(d)}, []any{"None"}}})
}

// Not parallel: it measures allocations, which are counted process-wide.
func TestReferenceChainRefused(t *testing.T) {
	for _, d := range []int{22, 40} {
		// Decoded from the wire, as the server does.
		b, err := encode(nil, referenceChain(d), true)
		if err != nil {
			t.Fatal(err)
		}
		v, err := decodeAll(b, true)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtimeMem
		before.read()
		start := time.Now()
		u := unjellier{}
		_, err = u.unjelly(v)
		took := time.Since(start)
		after.read()
		if !errors.Is(err, errTooManyNodes) {
			t.Errorf("D=%d (%d bytes): unjelly gave %v, want %v", d, len(b), err, errTooManyNodes)
		}
		if per := after.total - before.total; per > 4<<20 {
			t.Errorf("D=%d (%d bytes): %d bytes allocated", d, len(b), per)
		}
		t.Logf("D=%d: %d bytes in, %d bytes allocated, %v", d, len(b), after.total-before.total, took)
	}

	// A shared value within the budget stays shared: plain turns it once.
	v, _ := decodeAll(mustEncode(t, referenceChain(12)[:13]), true)
	u := unjellier{}
	got, err := u.unjelly(v)
	if err != nil {
		t.Fatalf("a chain of 12: %v", err)
	}
	var before, after runtimeMem
	before.read()
	p := plain(got).([]any)
	after.read()
	if len(p) != 12 {
		t.Fatalf("plain gave %d items", len(p))
	}
	if n := after.total - before.total; n > 64<<10 {
		t.Errorf("plain of a chain of 12 shared lists allocated %d bytes", n)
	}

	// A failure whose value is a large shared structure has bounded text.
	u = unjellier{}
	got, err = u.unjelly(v)
	if err != nil {
		t.Fatal(err)
	}
	if s := failureText(got); len(s) > maxFailureText+len("…") {
		t.Errorf("failure text of %d bytes", len(s))
	}
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := encode(nil, v, true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDictionaryKeys(t *testing.T) {
	t.Parallel()
	u := unjellier{}
	v, err := u.unjelly([]any{[]byte("dictionary"),
		[]any{int64(3), []any{[]byte("None")}},
		[]any{[]any{[]byte("unicode"), []byte("k")}, int64(1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(map[string]any); m["3"] != nil || m["k"] != int64(1) || len(m) != 2 {
		t.Errorf("dictionary: %v", m)
	}
	u = unjellier{}
	_, err = u.unjelly([]any{[]byte("dictionary"),
		[]any{[]any{[]byte("list"), int64(1)}, []any{[]byte("None")}},
	})
	if err == nil || !strings.Contains(err.Error(), "dictionary key") {
		t.Errorf("a list as a key: %v", err)
	}
}

// TestReferenceChainOverTheWire sends the probe's 2 KB message before
// login: the server drops the connection at once and stays up.
func TestReferenceChainOverTheWire(t *testing.T) {
	t.Parallel()
	m := newMaster(t, map[string]string{"w1": "sekrit"})
	c := dialPB(t, m.addr)
	start := time.Now()
	c.send([]any{"message", int64(1), "root", "login", int64(1), referenceChain(40), []any{"dictionary"}})
	v := c.read().([]any)
	if kind := string(v[0].([]byte)); kind != "error" {
		t.Fatalf("login with a reference chain: %s %v", kind, v)
	}
	closedByServer(t, c.nc)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refused after %v", d)
	}
	// The drop is logged with the address and why.
	waitFor(t, 30*time.Second, "the dropped connection logged with its address and reason", func() bool {
		l := m.logs.String()
		return strings.Contains(l, "pb: dropped a connection before login") && strings.Contains(l, "stands for more than") &&
			strings.Contains(l, c.nc.LocalAddr().String())
	})
	// The server still serves.
	if kind, v := dialPB(t, m.addr).login("w1", "sekrit"); kind != "answer" {
		t.Fatalf("login after the attack: %s %v", kind, v)
	}
}
