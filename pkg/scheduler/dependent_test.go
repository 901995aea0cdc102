package scheduler

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// bsSummary is what these tests compare of a buildset.
type bsSummary struct {
	Scheduler, Reason string
	Parent            int64
	Stamps            []store.SourceStamp
	Props             map[string]string
}

func (e *changeEnv) summaries() []bsSummary {
	e.t.Helper()
	all, err := e.db.Buildsets(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	out := []bsSummary{}
	for _, bs := range all {
		s := bsSummary{Scheduler: bs.SchedulerName, Reason: bs.Reason, Parent: bs.ParentBuildID, Stamps: plainStamps(bs.SourceStamps), Props: map[string]string{}}
		for k, p := range bs.Properties {
			s.Props[k] = string(p.Value)
		}
		out = append(out, s)
	}
	return out
}

// completeBuildset completes every request of buildset bsid with results.
func (e *changeEnv) completeBuildset(bsid int64, results int) {
	e.t.Helper()
	reqs, err := e.db.BuildRequests(store.BuildRequestFilter{BuildsetID: bsid})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, br := range reqs {
		if err := e.db.CompleteBuildRequest(br.ID, results, time.Time{}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func TestDependent(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		if _, err := e.db.EnsureBuilder("down"); err != nil {
			t.Fatal(err)
		}
		cfg := []config.Scheduler{
			{Type: "triggerable", Name: "up", BuilderNames: []string{"b"}},
			{Type: "triggerable", Name: "other", BuilderNames: []string{"b"}},
			{Type: "dependent", Name: "dep", Upstream: "up", BuilderNames: []string{"down"}, Properties: map[string]any{"x": "y"}},
		}
		s := New(cfg, e.db, e.wake, nil)
		stop := runSet(t, s)
		ss := func(rev string) []store.SourceStamp {
			return []store.SourceStamp{{Codebase: "a", Branch: "main", Revision: rev, Repository: "ra"}, {Codebase: "b", Revision: rev + "b", Repository: "rb"}}
		}
		trigger := func(name, rev string) int64 {
			bsid, _, err := s.Trigger(context.Background(), name, TriggerRequest{SourceStamps: ss(rev), Reason: "r"})
			if err != nil {
				t.Fatal(err)
			}
			s.BuildsetsChanged()
			synctest.Wait()
			return bsid
		}
		done := func(bsid int64, results int) {
			e.completeBuildset(bsid, results)
			s.BuildsetsChanged()
			synctest.Wait()
		}
		ok := trigger("up", "r1")
		warn := trigger("up", "r2")
		failed := trigger("up", "r3")
		other := trigger("other", "r4")
		done(failed, store.Failure)
		done(other, store.Success)
		done(warn, store.Warnings)
		pending := trigger("up", "r5")
		done(ok, store.Success)

		dep := func(rev string) bsSummary {
			return bsSummary{Scheduler: "dep", Reason: "downstream", Stamps: ss(rev), Props: map[string]string{"x": `"y"`, "scheduler": `"dep"`}}
		}
		var got []bsSummary
		for _, bs := range e.summaries() {
			if bs.Scheduler == "dep" {
				got = append(got, bs)
			}
		}
		if diff := cmp.Diff([]bsSummary{dep("r2"), dep("r1")}, got); diff != "" {
			t.Fatalf("dependent buildsets (-want +got):\n%s", diff)
		}

		// The upstream buildset waited for survives a restart; one
		// completed while the master was down builds at its start.
		stop()
		e.reopen()
		e.completeBuildset(pending, store.Success)
		s = New(cfg, e.db, e.wake, nil)
		stop = runSet(t, s)
		synctest.Wait()
		if all := e.summaries(); len(all) != 8 || !cmp.Equal(all[7], dep("r5")) {
			t.Fatalf("after a restart: %+v", all)
		}

		// Disabled, it waits for no new upstream buildset.
		if err := s.SetEnabled("dep", false); err != nil {
			t.Fatal(err)
		}
		done(trigger("up", "r6"), store.Success)
		if err := s.SetEnabled("dep", true); err != nil {
			t.Fatal(err)
		}
		s.BuildsetsChanged()
		synctest.Wait()
		if n := len(e.summaries()); n != 9 {
			t.Errorf("%d buildsets, want 9: a disabled dependent scheduler built", n)
		}
		stop()
	})
}

func TestNightlyTriggerable(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		cfg := []config.Scheduler{{Type: "nightly_triggerable", Name: "nt", BuilderNames: []string{"b"}, Cron: "*/10 * * * *", Properties: map[string]any{"p": "sched", "q": "sched"}}}
		s := New(cfg, e.db, e.wake, nil)
		stop := runSet(t, s)
		synctest.Wait()
		trig := func(rev, q string) {
			p, _ := NewProperty(q, "Trigger")
			bsid, brids, err := s.Trigger(context.Background(), "nt", TriggerRequest{
				SourceStamps: []store.SourceStamp{{Branch: "main", Revision: rev}},
				Properties:   store.Properties{"q": p}, WaitedFor: true,
			})
			if err != nil || bsid != 0 || len(brids) != 0 {
				t.Fatalf("Trigger = %d, %v, %v; want 0, none, nil", bsid, brids, err)
			}
		}
		trig("r1", "one")
		trig("r2", "two") // the last trigger wins
		if n := len(e.summaries()); n != 0 {
			t.Fatalf("a trigger built at once: %d buildsets", n)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		want := []bsSummary{{
			Scheduler: "nt", Reason: "The NightlyTriggerable scheduler named 'nt' triggered this build",
			Stamps: []store.SourceStamp{{Branch: "main", Revision: "r2"}},
			Props:  map[string]string{"p": `"sched"`, "q": `"two"`, "scheduler": `"nt"`},
		}}
		if diff := cmp.Diff(want, e.summaries()); diff != "" {
			t.Fatalf("buildsets (-want +got):\n%s", diff)
		}
		time.Sleep(10 * time.Minute) // not triggered since: nothing
		synctest.Wait()
		if n := len(e.summaries()); n != 1 {
			t.Fatalf("%d buildsets, want 1: built without a trigger", n)
		}

		// A trigger survives a restart.
		trig("r3", "three")
		stop()
		e.reopen()
		s = New(cfg, e.db, e.wake, nil)
		stop = runSet(t, s)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		all := e.summaries()
		if len(all) != 2 || all[1].Stamps[0].Revision != "r3" {
			t.Fatalf("after a restart: %+v", all)
		}

		// Disabled, it keeps the trigger and builds it once enabled.
		trig("r4", "four")
		if err := s.SetEnabled("nt", false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := len(e.summaries()); n != 2 {
			t.Fatalf("%d buildsets: a disabled scheduler built", n)
		}
		if err := s.SetEnabled("nt", true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if all := e.summaries(); len(all) != 3 || all[2].Stamps[0].Revision != "r4" {
			t.Fatalf("after enabling: %+v", all)
		}
		stop()
	})
}

// TestDependentCrash: a master killed between adding a dependent buildset
// and recording it builds it neither twice nor never.
func TestDependentCrash(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		cfg := []config.Scheduler{
			{Type: "triggerable", Name: "up", BuilderNames: []string{"b"}},
			{Type: "dependent", Name: "dep", Upstream: "up", BuilderNames: []string{"b"}},
		}
		s := New(cfg, e.db, e.wake, nil)
		stop := runSet(t, s)
		up1, _, err := s.Trigger(context.Background(), "up", TriggerRequest{SourceStamps: []store.SourceStamp{{Revision: "r1"}}})
		if err != nil {
			t.Fatal(err)
		}
		s.BuildsetsChanged()
		synctest.Wait()
		e.completeBuildset(up1, store.Success)
		s.BuildsetsChanged()
		synctest.Wait()
		stop()
		all := e.summaries()
		if len(all) != 2 {
			t.Fatalf("%d buildsets, want 2", len(all))
		}
		bs, err := e.db.Buildset(2)
		if err != nil {
			t.Fatal(err)
		}
		// As if killed after the add: the state still waits for up1.
		crashed := func(at time.Time) {
			v, _ := json.Marshal(map[string]any{"seen": up1, "upstream": []int64{up1}, "building": map[string]any{"bsid": up1, "at": at}})
			if err := e.db.SetState(stateObject("dep"), dependentKey, v); err != nil {
				t.Fatal(err)
			}
		}
		crashed(bs.SubmittedAt)
		e.reopen()
		s = New(cfg, e.db, e.wake, nil)
		stop = runSet(t, s)
		synctest.Wait()
		stop()
		if n := len(e.summaries()); n != 2 {
			t.Fatalf("%d buildsets after a crash after the add, want 2", n)
		}
		// As if killed before the add: it builds at the start.
		crashed(time.Now().Add(time.Hour))
		e.reopen()
		s = New(cfg, e.db, e.wake, nil)
		stop = runSet(t, s)
		synctest.Wait()
		stop()
		if n := len(e.summaries()); n != 3 {
			t.Fatalf("%d buildsets after a crash before the add, want 3", n)
		}
	})
}

// TestNightlyTriggerableReconfig: a trigger recorded before a reconfig
// that changes the scheduler is built at the new scheduler's time.
func TestNightlyTriggerableReconfig(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		sc := config.Scheduler{Type: "nightly_triggerable", Name: "nt", BuilderNames: []string{"b"}, Cron: "0 * * * *"}
		s := New([]config.Scheduler{sc}, e.db, e.wake, nil)
		stop := runSet(t, s)
		defer stop()
		synctest.Wait()
		if _, _, err := s.Trigger(context.Background(), "nt", TriggerRequest{SourceStamps: []store.SourceStamp{{Revision: "r1"}}}); err != nil {
			t.Fatal(err)
		}
		sc.Cron = "*/5 * * * *"
		s.Reconfigure([]config.Scheduler{sc})
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if all := e.summaries(); len(all) != 1 || all[0].Stamps[0].Revision != "r1" {
			t.Fatalf("buildsets %+v, want the trigger's", all)
		}
	})
}

// TestNightlyTriggerableStoredTrigger: a trigger recorded in the store by
// RecordNightlyTrigger, as a master that does not lead records it, is
// built at the leader's scheduler's next time, once; a master killed
// after adding a trigger's buildset, before recording it built, builds it
// no second time, and one killed before the add builds it at the next
// time. A trigger an older gbb kept in the scheduler's own state is built.
func TestNightlyTriggerableStoredTrigger(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		cfg := []config.Scheduler{{Type: "nightly_triggerable", Name: "nt", BuilderNames: []string{"b"}, Cron: "0 * * * *"}}
		revs := func() []string {
			var out []string
			for _, s := range e.summaries() {
				out = append(out, s.Stamps[0].Revision)
			}
			return out
		}
		record := func(rev string) string {
			t.Helper()
			if err := RecordNightlyTrigger(e.db, "nt", TriggerRequest{SourceStamps: []store.SourceStamp{{Revision: rev}}}); err != nil {
				t.Fatal(err)
			}
			v, _, err := e.db.GetState(stateObject("nt"), nightlyPendingKey)
			if err != nil {
				t.Fatal(err)
			}
			var tr recordedTrigger
			if err := json.Unmarshal(v, &tr); err != nil || tr.ID == "" {
				t.Fatalf("the recorded trigger %s: %v", v, err)
			}
			return tr.ID
		}
		setState := func(state map[string]any) {
			t.Helper()
			v, _ := json.Marshal(state)
			if err := e.db.SetState(stateObject("nt"), nightlyTrigKey, v); err != nil {
				t.Fatal(err)
			}
		}
		restart := func(stop func()) func() {
			stop()
			e.reopen()
			stop = runSet(t, New(cfg, e.db, e.wake, nil))
			synctest.Wait()
			return stop
		}
		hour := func(want ...string) {
			t.Helper()
			time.Sleep(time.Hour)
			synctest.Wait()
			if diff := cmp.Diff(want, revs()); diff != "" {
				t.Fatalf("buildsets' revisions (-want +got):\n%s", diff)
			}
		}

		// An older gbb's state, the trigger in it.
		setState(map[string]any{"last_build": time.Now(), "trigger": map[string]any{"source_stamps": []map[string]any{{"revision": "r0"}}}})
		stop := runSet(t, New(cfg, e.db, e.wake, nil))
		synctest.Wait()
		hour("r0")
		hour("r0")

		record("r1") // by another master, through the store only
		hour("r0", "r1")
		hour("r0", "r1") // built once

		// Killed after the add of r2's buildset.
		stop()
		id := record("r2")
		b, err := e.db.BuilderByName("b")
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		if _, _, err := e.db.AddBuildset(store.NewBuildset{Reason: "The NightlyTriggerable scheduler named 'nt' triggered this build", SchedulerName: "nt",
			SourceStamps: []store.SourceStamp{{Revision: "r2"}}, BuilderIDs: []int64{b.ID}, SubmittedAt: at}); err != nil {
			t.Fatal(err)
		}
		setState(map[string]any{"last_build": at.Add(-time.Hour), "building": at, "building_id": id})
		stop = restart(func() {})
		hour("r0", "r1", "r2")

		// Killed before the add of r3's buildset.
		id = record("r3")
		stop()
		setState(map[string]any{"last_build": time.Now(), "building": time.Now().Add(time.Minute), "building_id": id})
		stop = restart(func() {})
		hour("r0", "r1", "r2", "r3")

		stop()
	})
}
