package store

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// controlInbox is a control handler that keeps what it is given.
type controlInbox chan Control

func (c controlInbox) handle(m Control) {
	select {
	case c <- m:
	default:
		panic("control inbox full")
	}
}

func (c controlInbox) next(t *testing.T, what string) Control {
	t.Helper()
	select {
	case m := <-c:
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("after 30s, no control message: %s", what)
		return Control{}
	}
}

// TestSendControl: on PostgreSQL a control message reaches the master it
// is sent to, whole, and no other; a master that is not active (stopped,
// or never was) gets none and the sender is told so; a reason too long
// for a notification is cut on a rune boundary. On bbolt, whose one
// master acts itself, sending fails with ErrMasterInactive.
func TestSendControl(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		a := be.openAt(t, loc, Options{Events: newEventLog()})
		ma := must[Master](t)(a.EnsureMaster("a"))
		if be.name == "bbolt" {
			a.SetControl(func(Control) { t.Error("a bbolt store handed a control message") })
			for _, to := range []int64{ma.ID, ma.ID + 1} {
				err := a.SendControl(Control{To: to, What: ControlBuild, ID: 1, Action: "stop"})
				if !errors.Is(err, ErrMasterInactive) {
					t.Errorf("bbolt SendControl to master %d: %v, want ErrMasterInactive", to, err)
				}
			}
			return
		}
		b := be.openAt(t, loc, Options{Events: newEventLog()})
		mb := must[Master](t)(b.EnsureMaster("b"))
		aIn, bIn := make(controlInbox, 10), make(controlInbox, 10)
		a.SetControl(aIn.handle)
		b.SetControl(bIn.handle)

		stop := Control{To: mb.ID, What: ControlBuild, ID: 12, Action: "stop", Reason: "wrong branch"}
		ok(t, a.SendControl(stop))
		if got := bIn.next(t, "b hears a's stop"); got != stop {
			t.Errorf("b got %+v, want %+v", got, stop)
		}
		kill := Control{To: ma.ID, What: ControlWorker, ID: 3, Action: "kill", Reason: "stuck"}
		ok(t, b.SendControl(kill))
		// Notifications come in commit order: the stop for b reached a's
		// listener before this, and a's handler did not take it.
		if got := aIn.next(t, "a hears b's kill"); got != kill {
			t.Errorf("a got %+v, want %+v (a master acts only on what is sent to it)", got, kill)
		}

		long := Control{To: mb.ID, What: ControlRequest, ID: 5, Action: "cancel", Reason: strings.Repeat("é", 6000)}
		ok(t, a.SendControl(long))
		got := bIn.next(t, "b hears a cancel with a long reason")
		if !utf8.ValidString(got.Reason) || len(got.Reason) > maxControlReason+len("…") || !strings.HasPrefix(long.Reason, strings.TrimSuffix(got.Reason, "…")) {
			t.Errorf("long reason arrived as %d bytes (valid UTF-8: %v)", len(got.Reason), utf8.ValidString(got.Reason))
		}

		ok(t, b.SetMasterActive(mb.ID, false, time.Now()))
		if err := a.SendControl(stop); !errors.Is(err, ErrMasterInactive) {
			t.Errorf("send to a stopped master: %v, want ErrMasterInactive", err)
		}
		if err := a.SendControl(Control{To: mb.ID + 100, What: ControlBuild, ID: 1, Action: "stop"}); !errors.Is(err, ErrMasterInactive) {
			t.Errorf("send to an unknown master: %v, want ErrMasterInactive", err)
		}
	})
}
