package protocol

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestDrainingRefuses: a worker's Draining (sent by a peer speaking the
// wire protocol, as a real worker does) closes WorkerConn.Draining; of the
// three commands in flight, the one it lists goes on to its Complete, the
// one it had completed before keeps its result, and the one it does not
// list (it refused it) ends ErrWorkerDraining at once, without waiting for
// the stream to end. A command started afterwards is not sent at all.
func TestDrainingRefuses(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	stream, err := NewMasterClient(cc).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if m, err := loginStream(stream, &Hello{ProtocolVersion: Version, Name: "w"}, "pw"); err != nil || m.GetWelcome() == nil {
		t.Fatalf("after hello: %v, %v; want a Welcome", m, err)
	}
	c := waitAttach(t, m)

	type ran struct {
		res Result
		err error
	}
	run := func(name string) <-chan ran {
		rc := make(chan ran, 1)
		go func() {
			res, err := c.Run(context.Background(), shell(name), nil)
			rc <- ran{res, err}
		}()
		return rc
	}
	// startCommand reads StartCommands (Pings are skipped) until argv[0]
	// is name, and returns its id.
	ids := map[string]uint64{}
	startCommand := func(name string) uint64 {
		t.Helper()
		for ids[name] == 0 {
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("waiting for the command %s: %v", name, err)
			}
			if sc := m.GetStartCommand(); sc != nil {
				ids[sc.GetShell().GetArgv()[0]] = sc.GetCommandId()
			}
		}
		return ids[name]
	}
	complete := func(id uint64, code int32) {
		t.Helper()
		if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Complete{Complete: &Complete{CommandId: id, ExitCode: code}}}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(what string, rc <-chan ran) ran {
		t.Helper()
		select {
		case r := <-rc:
			return r
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not end", what)
			return ran{}
		}
	}

	running, ended, refused := run("running"), run("ended"), run("refused")
	runningID, endedID, _ := startCommand("running"), startCommand("ended"), startCommand("refused")
	select {
	case <-c.Draining():
		t.Fatal("Draining closed before the worker said so")
	default:
	}
	complete(endedID, 3)
	if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Draining{Draining: &Draining{Running: []uint64{runningID}}}}); err != nil {
		t.Fatal(err)
	}

	if r := wait("the refused command", refused); !errors.Is(r.err, ErrWorkerDraining) {
		t.Fatalf("the command the worker refused: %+v, %v; want ErrWorkerDraining", r.res, r.err)
	}
	select {
	case <-c.Draining():
	default:
		t.Fatal("Draining not closed after the worker's Draining")
	}
	if r := wait("the ended command", ended); r.err != nil || r.res.ExitCode != 3 {
		t.Fatalf("the command that ended before the drain: %+v, %v; want exit 3", r.res, r.err)
	}
	if _, err := c.Run(context.Background(), shell("later"), nil); !errors.Is(err, ErrWorkerDraining) {
		t.Fatalf("a command started while the worker drains: %v, want ErrWorkerDraining", err)
	}
	select {
	case r := <-running:
		t.Fatalf("the running command ended before its Complete: %+v, %v", r.res, r.err)
	default:
	}
	complete(runningID, 0)
	if r := wait("the running command", running); r.err != nil || r.res.ExitCode != 0 {
		t.Fatalf("the running command: %+v, %v; want exit 0", r.res, r.err)
	}
	// "later" was never sent: the next message the worker reads is none
	// (it closes its side, the master ends the stream).
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			break
		}
		if sc := msg.GetStartCommand(); sc != nil {
			t.Fatalf("the master sent %v to a draining worker", sc)
		}
	}
	<-c.Done()
}
