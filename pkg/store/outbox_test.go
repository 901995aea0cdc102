package store

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestOutboxWrittenWithBuildEvents: with the outbox on, a build's start
// and finish (EndBuild, FinishBuild, AbandonBuilds after a crash) each
// write their entry in the transaction of the event; the entries survive
// a reopen; off, nothing is written.
func TestOutboxWrittenWithBuildEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		db := be.openUnchecked(t, loc, Options{}) // closed below, then reopened
		a, _, m := setup(t, db)

		// Off: a build writes nothing.
		b0 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, MasterID: m.ID}))
		ok(t, db.FinishBuild(b0.ID, Success, t0))
		if es := must[[]OutboxEntry](t)(db.OutboxAfter(0, 100)); len(es) != 0 {
			t.Fatalf("outbox off, entries written: %+v", es)
		}

		var notified atomic.Int64
		db.SetOutbox(func() { notified.Add(1) })
		cur := must[int64](t)(db.OutboxCursor("r"))
		if cur != 0 {
			t.Fatalf("cursor of a new reporter on an empty outbox: %d", cur)
		}
		b1 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, MasterID: m.ID}))
		ok(t, db.EndBuild(b1.ID, "done", Failure, t0))
		b2 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, MasterID: m.ID}))
		ok(t, db.FinishBuild(b2.ID, Cancelled, t0))
		b3 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, MasterID: m.ID}))
		ok(t, db.AddWorkerMissing("w1", t0))
		if n := notified.Load(); n != 6 {
			t.Errorf("notified %d times, want 6", n)
		}

		// A crash: the reopened store abandons b3, and its Finished entry is
		// written with it.
		ok(t, db.Check())
		ok(t, db.Close())
		db = be.openAt(t, loc, Options{})
		db.SetOutbox(func() {})
		must[[]int64](t)(db.AbandonBuilds(m.ID, t0))

		got := must[[]OutboxEntry](t)(db.OutboxAfter(0, 100))
		type ev struct {
			Seq     int64
			Event   string
			BuildID int64
			Worker  string
		}
		var gotEv []ev
		for _, e := range got {
			gotEv = append(gotEv, ev{e.Seq, e.Event, e.BuildID, e.Worker})
		}
		want := []ev{
			{1, OutboxStarted, b1.ID, ""},
			{2, OutboxFinished, b1.ID, ""},
			{3, OutboxStarted, b2.ID, ""},
			{4, OutboxFinished, b2.ID, ""},
			{5, OutboxStarted, b3.ID, ""},
			{6, OutboxWorkerMissing, 0, "w1"},
			{7, OutboxFinished, b3.ID, ""},
		}
		if diff := cmp.Diff(want, gotEv); diff != "" {
			t.Errorf("outbox (-want +got):\n%s", diff)
		}
		if seq, found := must2[int64, bool](t)(db.OutboxFinishedSeq(b3.ID)); !found || seq != 7 {
			t.Errorf("finished seq of build %d: %d %v", b3.ID, seq, found)
		}
		if seq, found := must2[int64, bool](t)(db.OutboxFinishedSeq(b0.ID)); found {
			t.Errorf("finished seq of a build finished with the outbox off: %d", seq)
		}
		if es := must[[]OutboxEntry](t)(db.OutboxAfter(5, 1)); len(es) != 1 || es[0].Seq != 6 {
			t.Errorf("OutboxAfter(5, 1): %+v", es)
		}
		// A reporter added now starts at the end; "r" kept its cursor.
		if c := must[int64](t)(db.OutboxCursor("new")); c != 7 {
			t.Errorf("cursor of a new reporter: %d, want 7", c)
		}
		if c := must[int64](t)(db.OutboxCursor("r")); c != 0 {
			t.Errorf("cursor of r after reopen: %d, want 0", c)
		}
	})
}

// TestDeliveries: a delivery's record, the cursor it moves, the failed
// count, and the pruning of entries every reporter is done with.
func TestDeliveries(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, _, m := setup(t, db)
		db.SetOutbox(func() {})
		must[int64](t)(db.OutboxCursor("r1"))
		must[int64](t)(db.OutboxCursor("r2"))
		b := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, MasterID: m.ID}))
		ok(t, db.FinishBuild(b.ID, Success, t0))

		d1 := Delivery{Reporter: "r1", Seq: 1, BuildID: b.ID, Event: OutboxStarted, State: DeliveryPending, Attempts: 1, LastError: "503", CreatedAt: t0, UpdatedAt: t0, NextAt: t0.Add(time.Second)}
		ok(t, db.SaveDelivery(d1, false))
		if c := must[int64](t)(db.OutboxCursor("r1")); c != 0 {
			t.Errorf("a pending delivery moved the cursor to %d", c)
		}
		d1.State, d1.Attempts, d1.DeliveredAt = DeliveryDelivered, 2, t0.Add(time.Second)
		ok(t, db.SaveDelivery(d1, true))
		d2 := Delivery{Reporter: "r1", Seq: 2, BuildID: b.ID, Event: OutboxFinished, State: DeliveryFailed, Attempts: 3, LastError: "gone", CreatedAt: t0, UpdatedAt: t0}
		ok(t, db.SaveDelivery(d2, true))
		if c := must[int64](t)(db.OutboxCursor("r1")); c != 2 {
			t.Errorf("cursor of r1: %d, want 2", c)
		}
		if diff := cmp.Diff([]Delivery{d1, d2}, must[[]Delivery](t)(db.Deliveries(b.ID))); diff != "" {
			t.Errorf("deliveries (-want +got):\n%s", diff)
		}
		if n := must[int](t)(db.FailedDeliveries()); n != 1 {
			t.Errorf("failed deliveries: %d, want 1", n)
		}
		got, found, err := db.Delivery("r1", b.ID, 2)
		if err != nil || !found || got.State != DeliveryFailed {
			t.Errorf("Delivery(r1, %d, 2) = %+v %v %v", b.ID, got, found, err)
		}

		// r2 has done nothing: nothing goes. Once r2 is gone, all goes.
		ok(t, db.PruneOutbox([]string{"r1", "r2"}))
		if es := must[[]OutboxEntry](t)(db.OutboxAfter(0, 100)); len(es) != 2 {
			t.Errorf("pruned what r2 still needs: %+v", es)
		}
		ok(t, db.SkipOutbox("r2", 1))
		ok(t, db.PruneOutbox([]string{"r1", "r2"}))
		if es := must[[]OutboxEntry](t)(db.OutboxAfter(0, 100)); len(es) != 1 || es[0].Seq != 2 {
			t.Errorf("after r2 skipped 1: %+v", es)
		}
		pending := Delivery{Reporter: "r2", Seq: 2, BuildID: b.ID, Event: OutboxFinished, State: DeliveryPending, Attempts: 2, LastError: "503", CreatedAt: t0, UpdatedAt: t0, NextAt: t0.Add(time.Minute)}
		ok(t, db.SaveDelivery(pending, false))
		ok(t, db.PruneOutbox([]string{"r1"}))
		if es := must[[]OutboxEntry](t)(db.OutboxAfter(0, 100)); len(es) != 0 {
			t.Errorf("after r2 was removed: %+v", es)
		}
		// r2's pending delivery is given up: it will not be tried again.
		if d, found, err := db.Delivery("r2", b.ID, 2); err != nil || !found || d.State != DeliveryFailed || !strings.HasPrefix(d.LastError, "reporter removed from the config; 503") || !d.NextAt.IsZero() {
			t.Errorf("pending delivery of a removed reporter: %+v %v %v", d, found, err)
		}
		if n := must[int](t)(db.FailedDeliveries()); n != 2 {
			t.Errorf("failed deliveries: %d, want 2", n)
		}
		if c := must[int64](t)(db.OutboxCursor("r2")); c != 2 {
			t.Errorf("a reporter added back starts at the end: cursor %d, want 2", c)
		}
		if _, found := must2[int64, bool](t)(db.OutboxFinishedSeq(b.ID)); found {
			t.Errorf("the finished index outlived its entry")
		}
		// Deliveries stay, for the build's page.
		if ds := must[[]Delivery](t)(db.Deliveries(b.ID)); len(ds) != 3 {
			t.Errorf("deliveries after prune: %+v", ds)
		}
		// The janitor deleting the build deletes its deliveries.
		b2 := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, MasterID: m.ID}))
		ok(t, db.FinishBuild(b2.ID, Success, t0))
		if n := must[int](t)(db.DeleteBuildsBefore(t0.Add(time.Hour))); n != 1 {
			t.Fatalf("janitor deleted %d builds, want 1", n)
		}
		if ds := must[[]Delivery](t)(db.Deliveries(b.ID)); len(ds) != 0 {
			t.Errorf("deliveries of a deleted build: %+v", ds)
		}
		if n := must[int](t)(db.FailedDeliveries()); n != 0 {
			t.Errorf("failed deliveries of a deleted build still counted: %d", n)
		}
	})
}
