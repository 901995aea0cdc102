package reporter

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestOnTry: the dispatcher tells OnTry of every try, by reporter: each
// failed one with its error, each delivery with nil (the metrics'
// deliveries and failures).
func TestOnTry(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	f := newFixture(t)
	var mu sync.Mutex
	tries := map[string][2]int{} // guarded by mu; reporter → delivered, failed
	f.onTry = func(name string, err error) {
		mu.Lock()
		defer mu.Unlock()
		c := tries[name]
		if err == nil {
			c[0]++
		} else {
			c[1]++
		}
		tries[name] = c
	}
	var n atomic.Int64
	ep.setFail(func(w http.ResponseWriter, r *http.Request) bool {
		return n.Add(1) <= 2 && down503(w, r) // the first two tries fail
	})
	f.start([]config.Reporter{push("push", ep.srv.URL)}, nil)
	b := f.build("runtests", "main")
	ep.wait(t, 1)
	f.finish(b, store.Success)
	ep.wait(t, 1)
	f.deliveries(b.ID, func(ds []store.Delivery) bool {
		return len(ds) == 2 && ds[0].State == store.DeliveryDelivered && ds[1].State == store.DeliveryDelivered
	})
	f.stop()
	mu.Lock()
	defer mu.Unlock()
	if got := tries["push"]; got != [2]int{2, 2} {
		t.Errorf("OnTry of push: %d delivered, %d failed; want 2 and 2 (%v)", got[0], got[1], tries)
	}
}
