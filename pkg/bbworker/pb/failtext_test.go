package pb

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// stringBomb is a list of a big string under a reference and n
// dereferences of it: a 600 KB string, 1500 times, in under 1 MB.
func stringBomb(size, n int) []any {
	l := []any{"list", []any{"reference", int64(1), []any{"unicode", []byte(strings.Repeat("A", size))}}}
	for range n {
		l = append(l, []any{"dereference", int64(1)})
	}
	return l
}

// TestStringReferencesCounted: dereferences count the string bytes
// they stand for, so an error whose value shares a 600 KB string 1500
// times is refused instead of standing for 900 MB.
func TestStringReferencesCounted(t *testing.T) {
	for _, failure := range []bool{false, true} {
		var e any = stringBomb(600<<10, 1500)
		if failure {
			e = []any{"twisted.spread.pb.CopiedFailure", []any{"dictionary",
				[]any{[]any{"unicode", []byte("type")}, []any{"unicode", []byte("x")}},
				[]any{[]any{"unicode", []byte("value")}, e}}}
		}
		b := mustEncode(t, e)
		if len(b) > maxExprSize {
			t.Fatalf("the bomb is %d bytes, over banana's limit", len(b))
		}
		v, err := decodeAll(b, true)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtimeMem
		before.read()
		u := unjellier{}
		got, err := u.unjelly(v)
		text := ""
		if err == nil {
			text = failureText(got) // what the broker does with an error
		}
		after.read()
		if !errors.Is(err, errTooManyNodes) {
			t.Errorf("failure=%v: unjelly gave %v (text of %d bytes), want %v", failure, err, len(text), errTooManyNodes)
		}
		if n := after.total - before.total; n > 8<<20 {
			t.Errorf("failure=%v: %d bytes allocated for a %d-byte expression", failure, n, len(b))
		}
	}

	// Within the budget a string may be shared.
	v, _ := decodeAll(mustEncode(t, stringBomb(100, 10)), true)
	u := unjellier{}
	if got, err := u.unjelly(v); err != nil || len(got.([]any)) != 11 {
		t.Errorf("a small shared string: %v %v", got, err)
	}
}

// TestFailureTextBounded: a failure's text is written through a writer
// that stops at maxFailureText, whatever the value stands for: it used
// to be fmt.Sprint of the whole plain value, then cut.
func TestFailureTextBounded(t *testing.T) {
	big := strings.Repeat("A", 600<<10)
	shared := []any{big, big}
	val := make([]any, 200)
	for i := range val {
		val[i] = shared
	}
	for _, v := range []any{
		val,
		&instance{class: "twisted.spread.pb.CopiedFailure", state: map[string]any{"type": "x", "value": val}},
		&instance{class: "some.Class", state: val},
	} {
		var before, after runtimeMem
		before.read()
		text := failureText(v)
		after.read()
		if len(text) != maxFailureText+len("…") || !strings.HasSuffix(text, "A…") {
			t.Errorf("%T: text of %d bytes ending %q", v, len(text), text[max(0, len(text)-8):])
		}
		if n := after.total - before.total; n > 256<<10 {
			t.Errorf("%T: %d bytes allocated for the text", v, n)
		}
	}

	// Short values read as fmt.Sprint of their plain value.
	for _, v := range []any{
		"", "boom", int64(3), 2.5, true, nil,
		[]any{"a", int64(1), []any{}, map[string]any{"k": "v", "a": nil}},
		map[string]any{"z": []any{"x"}, "b": &remoteRef{luid: 4}},
		[]any{&instance{class: "some.Class"}},
	} {
		if got, want := failureText(v), fmt.Sprint(plain(v)); got != want {
			t.Errorf("failureText(%#v) = %q, want %q", v, got, want)
		}
	}
	f := &instance{class: "twisted.spread.pb.CopiedFailure", state: map[string]any{"type": "builtins.ValueError", "value": "bad"}}
	if got := failureText(f); got != "builtins.ValueError: bad" {
		t.Errorf("a failure's text: %q", got)
	}
	f = &instance{class: "some.Class", state: []any{"a", "b"}}
	if got := failureText(f); got != "some.Class: [a b]" {
		t.Errorf("an instance's text: %q", got)
	}
}

// TestErrorBombOverTheWire: a logged-in worker answering the master's
// call with such an error is dropped, and the call fails at once with
// the reason (errbomb.py).
func TestErrorBombOverTheWire(t *testing.T) {
	t.Parallel()
	m := newMaster(t, map[string]string{"w1": "sekrit"})
	c := dialPB(t, m.addr)
	if kind, v := c.login("w1", "sekrit"); kind != "answer" {
		t.Fatalf("login: %s %v", kind, v)
	}
	conn := <-m.conns
	printed := make(chan error, 1)
	go func() { printed <- conn.Print(ctxT(t), "hello") }()
	msg := c.read().([]any)
	if string(msg[0].([]byte)) != "message" {
		t.Fatalf("the master sent %v", msg)
	}
	c.send([]any{"error", msg[1], stringBomb(600<<10, 1500)})
	err := <-printed
	if !errors.Is(err, errTooManyNodes) {
		msg := fmt.Sprint(err)
		t.Errorf("Print answered with the bomb: %d bytes: %.200s", len(msg), msg)
	}
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	closedByServer(t, c.nc)
	<-conn.Done()
}
