package protocol

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startMultiWorker runs a worker that names several masters until the
// test ends; attempts counts its failed attempts to connect; done is
// closed when Run returned, with its result in *runErr. Unless refusalOK,
// Run must return nil.
func startMultiWorker(t *testing.T, maxBackoff time.Duration, password string, refusalOK bool, addrs ...string) (attempts *atomic.Int64, done <-chan struct{}, runErr *error) {
	t.Helper()
	var ms []MasterAddr
	for _, a := range addrs {
		ms = append(ms, MasterAddr{Addr: a})
	}
	attempts = &atomic.Int64{}
	c := NewClient(ClientConfig{
		Masters: ms, Name: "w1", Password: password, Executor: newTestExecutor(),
		MinBackoff: time.Millisecond, MaxBackoff: maxBackoff,
		OnAttempt: func(err error) {
			if err != nil {
				attempts.Add(1)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	d := make(chan struct{})
	runErr = new(error)
	go func() { *runErr = c.Run(ctx); close(d) }()
	t.Cleanup(func() {
		cancel()
		<-d
		if *runErr != nil && !refusalOK {
			t.Errorf("Client.Run: %v", *runErr)
		}
	})
	return attempts, d, runErr
}

func echoOn(t *testing.T, c *WorkerConn, word string) {
	t.Helper()
	res, out, err := collect(t, t.Context(), c, shell("echo", word))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run on the worker's connection: %+v, %v", res, err)
	}
	if diff := cmp.Diff([]string{"stdout:" + word}, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// TestSeveralMastersFailover: a worker that names two masters serves the
// first; when it stops, the second; when that one stops and the first is
// back, the first again. It is logged in at one master at a time.
func TestSeveralMastersFailover(t *testing.T) {
	t.Parallel()
	a := startMaster(t, "127.0.0.1:0")
	b := startMaster(t, "127.0.0.1:0")
	startMultiWorker(t, 20*time.Millisecond, "pw", false, a.addr, b.addr)

	ca := waitAttach(t, a)
	echoOn(t, ca, "on-a")
	select {
	case <-b.attach:
		t.Fatal("the worker logged in at the second master while at the first")
	default:
	}

	a.stop()
	<-ca.Done()
	cb := waitAttach(t, b)
	echoOn(t, cb, "on-b")

	a2 := startMaster(t, a.addr)
	b.stop()
	<-cb.Done()
	ca2 := waitAttach(t, a2)
	echoOn(t, ca2, "back-on-a")
}

// TestSeveralMastersRefusal: a master that refuses the worker's password
// is logged and left alone while the worker serves another, and is not
// hammered while the other is away; when every master refuses it, Run
// ends with their refusals.
func TestSeveralMastersRefusal(t *testing.T) {
	t.Parallel()
	a := startMasterPassword(t, "127.0.0.1:0", "other")
	b := startMaster(t, "127.0.0.1:0")
	attempts, _, _ := startMultiWorker(t, 50*time.Millisecond, "pw", false, a.addr, b.addr)
	cb := waitAttach(t, b)
	echoOn(t, cb, "on-b")
	if n := a.lis.accepted.Load(); n != 1 {
		t.Errorf("the refusing master saw %d connections before the worker served the other, want 1", n)
	}
	if !strings.Contains(a.log.String(), "wrong name or password") {
		t.Errorf("the refusing master did not log the refusal:\n%s", a.log.String())
	}

	// The good master goes away: the worker tries it round after round,
	// and the refusing one only after its hold (10 MaxBackoffs).
	b.stop()
	<-cb.Done()
	before := attempts.Load()
	waitCond(t, "40 failed attempts after the good master stopped", func() bool { return attempts.Load()-before >= 40 })
	if n := a.lis.accepted.Load(); n > 10 {
		t.Errorf("the refusing master saw %d connections while the worker tried the other %d times: it is hammered", n, attempts.Load()-before)
	}

	// Both refuse: Run gives up, naming both.
	c := startMasterPassword(t, "127.0.0.1:0", "other")
	d := startMasterPassword(t, "127.0.0.1:0", "other")
	_, done, runErr := startMultiWorker(t, 50*time.Millisecond, "nope", true, c.addr, d.addr)
	select {
	case <-done:
		if err := *runErr; !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), c.addr) || !strings.Contains(err.Error(), d.addr) {
			t.Errorf("Run = %v, want ErrAuthFailed from both masters", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run goes on though every master refuses the worker")
	}
}

// waitCond polls cond until it holds, for up to 30s.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
