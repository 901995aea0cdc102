package master

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/metrics"
	"github.com/gbb-ci/gbb/pkg/store"
)

// counterOf returns the value of the series of family name whose label
// change_source is src (a histogram's sample count), or -1.
func counterOf(t *testing.T, m *metrics.Metrics, name, src string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if l.GetName() == "change_source" && l.GetValue() == src {
					if s.Histogram != nil {
						return float64(s.Histogram.GetSampleCount())
					}
					return s.Counter.GetValue()
				}
			}
		}
	}
	return -1
}

// TestPollerMetrics: each poll a poller runs is counted by change source,
// with its duration, and a failed one as an error.
func TestPollerMetrics(t *testing.T) {
	t.Parallel()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no repository here", http.StatusNotFound)
	}))
	defer srv.Close()
	m := metrics.New(metrics.Config{})
	p := newPollers(t.TempDir(), st, nil, nil, slog.New(slog.DiscardHandler))
	p.metrics = m
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		p.stop()
	}()
	p.apply(ctx, []config.ChangeSource{{Type: "git_poller", Name: "gone", RepoURL: srv.URL + "/repo.git",
		PollInterval: config.Duration{Duration: time.Hour}, PollAtLaunch: true}})
	deadline := time.Now().Add(30 * time.Second)
	for counterOf(t, m, "gbb_poller_runs_total", "gone") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no poll counted after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := counterOf(t, m, "gbb_poller_errors_total", "gone"); got != 1 {
		t.Errorf("poller errors = %v, want 1", got)
	}
	if got := counterOf(t, m, "gbb_poller_duration_seconds", "gone"); got != 1 {
		t.Errorf("poll durations observed = %v, want 1", got)
	}
}
