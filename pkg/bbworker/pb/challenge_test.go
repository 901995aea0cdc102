package pb

import (
	"runtime"
	"strings"
	"testing"
)

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	return s.HeapAlloc
}

// TestChallengesNotHoarded: before a login a connection holds one
// challenge at most, and a name over maxNameLen is refused with a
// failure rather than kept: logins without responses, with long names,
// held every name (up to 640 KB each, 1024 a connection) until the
// login timeout.
func TestChallengesNotHoarded(t *testing.T) {
	m := newMaster(t, map[string]string{"w1": "sekrit"})
	c := dialPB(t, m.addr)

	long := strings.Repeat("n", 32<<10)
	before := heapInUse()
	for i := range maxLoginFailures {
		kind, v := c.call([]byte("root"), "login", []any{"unicode", []byte(long)})
		if kind != "error" {
			t.Fatalf("login %d with a %d-byte name: %s, want a failure", i, len(long), kind)
		}
		var u unjellier
		f, _ := u.unjelly(v)
		if text := failureText(f); !strings.Contains(text, "UnauthorizedLogin: worker name longer than 128 bytes") {
			t.Fatalf("login with a long name: %q", text)
		}
	}
	closedByServer(t, c.nc) // a refusal counts as a failed login

	// Logins without responses, on one connection: one challenge held.
	c = dialPB(t, m.addr)
	const logins = 600
	name := strings.Repeat("w", 128)
	for i := range logins {
		if kind, v := c.call([]byte("root"), "login", []any{"unicode", []byte(name)}); kind != "answer" {
			t.Fatalf("login %d: %s %v", i, kind, v)
		}
	}
	m.srv.mu.Lock()
	var held []int
	for b := range m.srv.brokers {
		b.mu.Lock()
		held = append(held, len(b.locals))
		b.mu.Unlock()
	}
	m.srv.mu.Unlock()
	if len(held) != 1 || held[0] > 2 {
		t.Errorf("after %d logins without responses, the connections hold %v objects, want root and one challenger", logins, held)
	}
	if grew := int64(heapInUse()) - int64(before); grew > 4<<20 {
		t.Errorf("the heap grew by %d bytes", grew)
	}

	// The latest challenge still logs in; an earlier one is gone.
	kind, v := c.login("w1", "sekrit")
	if kind != "answer" {
		t.Fatalf("login after the hoard: %s %v", kind, v)
	}
}
