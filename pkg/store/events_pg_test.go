package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// eventLog is a Publisher that keeps every event, and signals each.
type eventLog struct {
	mu     sync.Mutex
	events []bufferedEvent // guarded by mu
	more   chan struct{}   // a token after each event
}

func newEventLog() *eventLog { return &eventLog{more: make(chan struct{}, 1)} }

func (l *eventLog) Publish(key string, rec any) {
	l.mu.Lock()
	l.events = append(l.events, bufferedEvent{key, rec})
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
}

func keysOf(es []bufferedEvent) []string {
	var keys []string
	for _, e := range es {
		keys = append(keys, e.key)
	}
	return keys
}

func (l *eventLog) snapshot() []bufferedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bufferedEvent(nil), l.events...)
}

// TestEventsAcrossMasters: on PostgreSQL, two masters share the store, and
// each publishes on its bus the events of the other's writes (LISTEN/
// NOTIFY), the same keys with the same records in the same order as the
// writer published them, batches too big for a notification included, and
// none of its own twice.
func TestEventsAcrossMasters(t *testing.T) {
	t.Parallel()
	onPostgres(t, func(t *testing.T, be backend) {
		loc := be.newLoc(t)
		aLog, bLog := newEventLog(), newEventLog()
		a := be.openAt(t, loc, Options{Events: aLog})
		b := be.openAt(t, loc, Options{Events: bLog})

		m := must[Master](t)(a.EnsureMaster("a"))
		bldr := must[Builder](t)(a.EnsureBuilder("x"))
		ok(t, a.UpdateBuilder(bldr.ID, "d", []string{"t"}, []int64{m.ID}))
		w := must[Worker](t)(a.EnsureWorker("w"))
		ok(t, a.WorkerConnected(w.ID, m.ID, map[string]string{"os": "freebsd"}))
		// One transaction of many changes: more than a notification holds.
		var many []Change
		for i := range 40 {
			many = append(many, Change{Revision: fmt.Sprint("r", i), Comments: strings.Repeat("long message ", 40), When: t0})
		}
		changes := must[[]Change](t)(a.AddChanges(many))
		_, brids := must2[int64, map[int64]int64](t)(a.AddBuildset(NewBuildset{BuilderIDs: []int64{bldr.ID}, ChangeIDs: []int64{changes[0].ID}, SubmittedAt: t0}))
		ok(t, a.ClaimBuildRequest(brids[bldr.ID], m.ID, t0))
		build := must[Build](t)(a.AddBuild(NewBuild{BuilderID: bldr.ID, BuildRequestID: brids[bldr.ID], WorkerID: w.ID, MasterID: m.ID, StartedAt: t0}))
		ok(t, a.SetBuildProperty(build.ID, "p", Property{Value: json.RawMessage(`{"k":[1,2]}`), Source: "s"}))
		s := must[Step](t)(a.StartNewStep(build.ID, "compile", t0))
		l := must[Log](t)(a.AddLog(s.ID, "stdio", "s"))
		must[int64](t)(a.AppendLog(l.ID, "oline\n"))
		ok(t, a.FinishLog(l.ID))
		ok(t, a.EndStep(s.ID, "done", Success, t0))
		ok(t, a.EndBuild(build.ID, "done", Success, t0))
		ok(t, a.CompleteBuildRequest(brids[bldr.ID], Success, t0))
		want := aLog.snapshot()
		if len(want) < 40 {
			t.Fatalf("a published %d events for its writes", len(want))
		}
		waitFor := func(l *eventLog, n int, what string) []bufferedEvent {
			t.Helper()
			deadline := time.After(30 * time.Second)
			for {
				got := l.snapshot()
				if len(got) >= n {
					return got
				}
				select {
				case <-l.more:
				case <-deadline:
					t.Fatalf("after 30s, %s: %d events of %d:\nwant %v\ngot  %v", what, len(got), n, keysOf(want), keysOf(got))
				}
			}
		}
		diff := func(want, got []bufferedEvent) string {
			return cmp.Diff(want, got, cmp.AllowUnexported(bufferedEvent{}))
		}
		if d := diff(want, waitFor(bLog, len(want), "b hears a's")); d != "" {
			t.Errorf("b heard a's events differently (-a published +b published):\n%s", d)
		}
		// And a write of b's, which a hears.
		must[Change](t)(b.AddChange(Change{Revision: "from b", When: t0}))
		bOwn := bLog.snapshot()[len(want):]
		if d := diff(bOwn, waitFor(aLog, len(want)+len(bOwn), "a hears b's")[len(want):]); d != "" {
			t.Errorf("a heard b's event differently (-b published +a published):\n%s", d)
		}
		// Nothing more: a master's own events do not come back to it
		// (PostgreSQL delivers notifications in commit order, so an echo
		// of a's would have reached a before b's event did).
		if d := diff(append(want, bOwn...), aLog.snapshot()); d != "" {
			t.Errorf("a's bus (-want +got):\n%s", d)
		}
		if d := diff(append(want, bOwn...), bLog.snapshot()); d != "" {
			t.Errorf("b's bus (-want +got):\n%s", d)
		}
	})
}
