package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// readingPublisher reads the store for every event it is given, as the
// metrics tap does (it looks up the builder's name).
type readingPublisher struct {
	st     atomic.Pointer[PG]
	events atomic.Int64
	errs   atomic.Int64
}

func (r *readingPublisher) Publish(key string, record any) {
	r.events.Add(1)
	if st := r.st.Load(); st != nil {
		if _, err := st.Builders(); err != nil {
			r.errs.Add(1)
		}
	}
}

// TestPublisherReadsWhileWritesWait: two masters with small pools add
// buildsets of one sourcestamp (whose row every one of them updates) while
// each master's publisher reads the store. Publishing must not wait for a
// pool connection that a transaction waiting to publish holds; before
// publication waited with its connection released, this stalled until the
// statement timeout ("add buildset: timeout").
func TestPublisherReadsWhileWritesWait(t *testing.T) {
	url := pg.NewDatabase(t) + "&pool_max_conns=2"
	var stores []*PG
	var pubs []*readingPublisher
	for range 2 {
		pub := &readingPublisher{}
		st, err := OpenPG(url, Options{Events: pub})
		if err != nil {
			t.Fatalf("open with pool_max_conns in the URL: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		pub.st.Store(st)
		stores, pubs = append(stores, st), append(pubs, pub)
	}
	// A Lock dials its own connection from the same URL.
	l, ok, err := stores[0].Lock("leader")
	if err != nil || !ok {
		t.Fatalf("lock with pool_max_conns in the URL: %v %v", ok, err)
	}
	defer l.Unlock()
	b, err := stores[0].EnsureBuilder("b")
	if err != nil {
		t.Fatal(err)
	}
	ss := []SourceStamp{{Repository: "r", Branch: "main", Revision: "abc"}}
	const writers, each = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for i := range writers {
		wg.Go(func() {
			st := stores[i%2]
			for range each {
				if _, _, err := st.AddBuildset(NewBuildset{SourceStamps: ss, BuilderIDs: []int64{b.ID}}); err != nil {
					errs <- fmt.Errorf("writer %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n, err := stores[1].CountBuildsets(BuildsetFilter{})
	if err != nil || n != writers*each {
		t.Errorf("%d buildsets (%v), want %d", n, err, writers*each)
	}
	for i, p := range pubs {
		if p.errs.Load() != 0 {
			t.Errorf("master %d: %d reads failed in Publish", i, p.errs.Load())
		}
	}
	for _, st := range stores {
		if err := st.Check(); err != nil {
			t.Error(err)
		}
	}
}
