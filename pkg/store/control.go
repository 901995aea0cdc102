package store

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Control is a control action sent from the master that a user asked
// (through the API) to the master that holds what it acts on, as
// buildbot's ("control", "builds", ID, "stop") and ("control", "worker",
// ID, ACTION) messages: a running build and a claimed build request are
// held by the master that runs them, a connected worker by the master its
// connection reached. Every other state is in the store, which all
// masters share, so a message carries only what that master alone can
// do: interrupt a build, disconnect a worker, update what it keeps in
// memory.
//
// On PostgreSQL a message is a NOTIFY on the channel gbb_control (see
// pg_control.go), which every master's listener receives and only the
// addressee acts on. As NOTIFY, delivery is at most once: a master whose
// listener is reconnecting misses the message (the user asks again). A
// bbolt store has one master, which acts on its own builds and workers
// itself: it has no other master to send to.
type Control struct {
	// To is the id of the master that acts.
	To int64 `json:"to"`
	// What is the kind of ID: ControlBuild, ControlRequest or
	// ControlWorker.
	What string `json:"what"`
	ID   int64  `json:"id"`
	// Action is buildbot's: "stop" on a build, "cancel" on a request,
	// "pause", "unpause", "graceful" (buildbot's "stop") or "kill" on a
	// worker.
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// The kinds of what a Control acts on.
const (
	ControlBuild   = "build"
	ControlRequest = "buildrequest"
	ControlWorker  = "worker"
)

// ErrMasterInactive is returned (wrapped) by SendControl when the master
// addressed is not active: stopped, presumed dead, or (on bbolt) not this
// one. No master would act on the message.
var ErrMasterInactive = errors.New("store: that master is not active")

// maxControlReason is the longest reason a Control carries, in bytes: a
// NOTIFY payload holds at most 8000. A longer one is cut.
const maxControlReason = 4000

// cutReason returns c with its reason cut to maxControlReason bytes, on
// a rune boundary.
func cutReason(c Control) Control {
	if len(c.Reason) <= maxControlReason {
		return c
	}
	i := maxControlReason
	for i > 0 && !utf8.RuneStart(c.Reason[i]) {
		i--
	}
	c.Reason = c.Reason[:i] + "…"
	return c
}

func (c Control) String() string {
	return fmt.Sprintf("%s of %s %d for master %d", c.Action, c.What, c.ID, c.To)
}

// SendControl on bbolt fails with ErrMasterInactive: the one master of a
// bbolt store acts on its builds and workers itself, and no other master
// can run on the same file.
func (db *DB) SendControl(c Control) error {
	return fmt.Errorf("send %s: %w (a bbolt store has one master)", c, ErrMasterInactive)
}

// SetControl on bbolt does nothing: no other master sends to this one.
func (db *DB) SetControl(fn func(Control)) {}
