package reporter

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// heldEndpoint holds every request until released, and counts them.
type heldEndpoint struct {
	url     string
	arrived chan struct{}
	release chan struct{}
	mu      sync.Mutex
	n       int // guarded by mu: requests answered
}

func newHeldEndpoint(t *testing.T) *heldEndpoint {
	h := &heldEndpoint{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	h.url = newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		h.arrived <- struct{}{}
		select {
		case <-h.release:
		case <-r.Context().Done():
			return // the client gave up: not delivered
		}
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
	})
	return h
}

func (h *heldEndpoint) answered() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// TestReconfigMovedLinesRestartsNothing: a reconfig whose reporters only
// moved in the file (a comment added at its top) does not restart them,
// and the delivery under way is not sent twice.
func TestReconfigMovedLinesRestartsNothing(t *testing.T) {
	t.Parallel()
	h := newHeldEndpoint(t)
	var logs syncBuffer
	f := newFixture(t)
	f.log = slog.New(slog.NewTextHandler(&logs, nil))
	parse := func(top string) config.Reporter {
		cfg, err := config.Parse("master.toml", []byte(top+"[[reporters]]\ntype = \"http_status_push\"\nurl = \""+h.url+"\"\nreport_start = false\n"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Reporters[0]
	}
	before, after := parse(""), parse("# a comment\n\n")
	if before.Line == after.Line {
		t.Fatalf("the reporter did not move: line %d", before.Line)
	}
	f.start([]config.Reporter{before}, nil)
	b := f.build("runtests", "main")
	f.finish(b, store.Success)
	<-h.arrived
	if err := f.d.SetConfig([]config.Reporter{after}, nil, "http://ci.example.org/"); err != nil {
		t.Fatal(err)
	}
	close(h.release)
	f.deliveries(b.ID, func(ds []store.Delivery) bool { return len(ds) == 1 && ds[0].State == store.DeliveryDelivered })
	f.stop()
	if n := h.answered(); n != 1 {
		t.Errorf("%d reports, want 1", n)
	}
	if strings.Contains(logs.String(), "reporter stopped") {
		t.Errorf("the reporter was restarted:\n%s", logs.String())
	}
}

// TestReconfigChangeFinishesDeliveryUnderWay: a reconfig that changes a
// reporter restarts it, but the delivery under way runs to its end and
// is recorded: it is not sent again by the new one.
func TestReconfigChangeFinishesDeliveryUnderWay(t *testing.T) {
	t.Parallel()
	h := newHeldEndpoint(t)
	f := newFixture(t)
	rc := push("push", h.url)
	rc.ReportStart = false
	f.start([]config.Reporter{rc}, nil)
	b := f.build("runtests", "main")
	f.finish(b, store.Success)
	<-h.arrived
	changed := rc
	changed.Headers = map[string]string{"X-Changed": "yes"}
	if err := f.d.SetConfig([]config.Reporter{changed}, nil, "http://ci.example.org/"); err != nil {
		t.Fatal(err)
	}
	close(h.release)
	ds := f.deliveries(b.ID, func(ds []store.Delivery) bool { return len(ds) == 1 && ds[0].State == store.DeliveryDelivered })
	// A later build goes through the new reporter.
	b2 := f.build("runtests", "main")
	f.finish(b2, store.Success)
	f.deliveries(b2.ID, func(ds []store.Delivery) bool { return len(ds) == 1 && ds[0].State == store.DeliveryDelivered })
	f.stop()
	if n := h.answered(); n != 2 {
		t.Errorf("%d reports, want 2 (one per build): %+v", n, ds)
	}
}
