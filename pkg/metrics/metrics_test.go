package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// TestNilCountsNothing: a nil *Metrics is usable and counts nothing, so
// that components made without metrics need no check.
func TestNilCountsNothing(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.InitBuilders([]string{"b"})
	m.Commit(time.Second)
	m.LogBytes(1)
	m.Poll("p", time.Second, errors.New("x"))
	m.Delivery("r", nil)
	m.HTTP("/", "GET", 200, time.Second)
	if m.Tap(nil) != nil {
		t.Error("a nil Metrics' Tap(nil) is not nil")
	}
}

// TestOnceAndBounded: a build, published under each of its keys, is
// counted once; a result code out of range and a client's made-up method
// make no label of their own.
func TestOnceAndBounded(t *testing.T) {
	t.Parallel()
	m := New(Config{Builder: func(int64) (string, bool) { return "b", true }})
	tap := m.Tap(nil)
	b := store.Build{ID: 7, Number: 3, BuilderID: 1, WorkerID: 2, StartedAt: time.Now(), CompleteAt: time.Now(), Results: 99}
	for _, ev := range []string{"new", "finished"} {
		for _, k := range []string{"builders/1/builds/3/", "builds/7/", "workers/2/builds/7/"} {
			tap.Publish(k+ev, b)
		}
	}
	m.HTTP("/x", "BREW", 418, time.Millisecond)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, s := range f.Metric {
			key := f.GetName()
			for _, l := range s.Label {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			if s.Counter != nil {
				got[key] = s.Counter.GetValue()
			}
		}
	}
	for k, want := range map[string]float64{
		"gbb_builds_started_total builder=b":                     1,
		"gbb_builds_finished_total builder=b result=unknown":     1,
		"gbb_http_requests_total code=418 method=other route=/x": 1,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}
