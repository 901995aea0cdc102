package reporter

import (
	"net/http"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// TestWantsResult follows buildbot 3.7's is_message_needed_by_results
// and _compute_shortcut_modes.
func TestWantsResult(t *testing.T) {
	t.Parallel()
	prev := func(r int) *store.Build { return &store.Build{Results: r} }
	tests := []struct {
		modes   []string
		results int
		prev    *store.Build
		want    bool
	}{
		{nil, store.Cancelled, nil, true},
		{[]string{"all"}, store.Success, nil, true},
		{[]string{"all"}, store.Exception, nil, true},
		{[]string{"all"}, store.Cancelled, nil, true},
		{[]string{"all"}, store.Retry, nil, false},
		{[]string{"all"}, store.Skipped, nil, false},
		{[]string{"warnings"}, store.Failure, nil, true}, // "warnings" alone is failing and warnings
		{[]string{"warnings"}, store.Warnings, nil, true},
		{[]string{"warnings"}, store.Success, nil, false},
		{[]string{"warnings", "exception"}, store.Failure, nil, false},
		{[]string{"failing"}, store.Failure, nil, true},
		{[]string{"failing"}, store.Exception, nil, false},
		{[]string{"passing"}, store.Success, nil, true},
		{[]string{"passing"}, store.Warnings, nil, false},
		{[]string{"problem"}, store.Failure, prev(store.Success), true},
		{[]string{"problem"}, store.Failure, prev(store.Failure), false},
		{[]string{"problem"}, store.Failure, nil, false},
		{[]string{"change"}, store.Success, prev(store.Failure), true},
		{[]string{"change"}, store.Success, prev(store.Success), false},
		{[]string{"change"}, store.Success, nil, false},
		{[]string{"exception"}, store.Exception, nil, true},
		{[]string{"cancelled"}, store.Cancelled, nil, true},
		{[]string{"cancelled"}, store.Failure, nil, false},
	}
	for _, tt := range tests {
		if got := WantsResult(tt.modes, tt.results, tt.prev); got != tt.want {
			t.Errorf("WantsResult(%v, %s, prev %v) = %v, want %v", tt.modes, ResultName(tt.results), tt.prev, got, tt.want)
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	}
	for _, tt := range tests {
		got, ok := retryAfter(http.Header{"Retry-After": {tt.v}}, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v %v, want %v %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}
