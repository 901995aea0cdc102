package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/store"
)

// TestBuildReports: /api/v2/builds/N/reports (and under its builder)
// lists what each reporter did with the build's reports, with buildbot's
// envelope and query parameters; an unknown build is a 404.
func TestBuildReports(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	b := must(f.db.AddBuild(store.NewBuild{BuilderID: f.runtests.ID, BuildRequestID: f.brid, WorkerID: f.worker.ID, MasterID: f.master.ID}))(t)
	at := time.Unix(1_700_000_000, 0).UTC()
	check(t, f.db.SaveDelivery(store.Delivery{Reporter: "github_status", Seq: 1, BuildID: b.ID, Event: "started",
		State: store.DeliverySuperseded, Attempts: 2, LastError: "post to api.github.com: 502 Bad Gateway", CreatedAt: at, UpdatedAt: at}, true))
	check(t, f.db.SaveDelivery(store.Delivery{Reporter: "github_status", Seq: 2, BuildID: b.ID, Event: "finished",
		State: store.DeliveryDelivered, Attempts: 1, CreatedAt: at, UpdatedAt: at, DeliveredAt: at.Add(time.Second)}, true))
	check(t, f.db.SaveDelivery(store.Delivery{Reporter: "chat", Seq: 2, BuildID: b.ID, Event: "finished",
		State: store.DeliveryFailed, Attempts: 1, LastError: "post to chat.example.org: 404 Not Found", CreatedAt: at, UpdatedAt: at}, true))

	status, body := f.get(t, fmt.Sprintf("/api/v2/builds/%d/reports", b.ID))
	if status != 200 {
		t.Fatalf("status %d: %v", status, body)
	}
	want := map[string]any{
		"reports": []any{
			map[string]any{"reporter": "github_status", "event": "started", "state": "superseded", "attempts": float64(2),
				"last_error": "post to api.github.com: 502 Bad Gateway", "buildid": float64(b.ID), "reportid": float64(1),
				"created_at": float64(at.Unix()), "updated_at": float64(at.Unix()), "next_at": nil, "delivered_at": nil},
			map[string]any{"reporter": "chat", "event": "finished", "state": "failed", "attempts": float64(1),
				"last_error": "post to chat.example.org: 404 Not Found", "buildid": float64(b.ID), "reportid": float64(2),
				"created_at": float64(at.Unix()), "updated_at": float64(at.Unix()), "next_at": nil, "delivered_at": nil},
			map[string]any{"reporter": "github_status", "event": "finished", "state": "delivered", "attempts": float64(1),
				"last_error": nil, "buildid": float64(b.ID), "reportid": float64(2),
				"created_at": float64(at.Unix()), "updated_at": float64(at.Unix()), "next_at": nil, "delivered_at": float64(at.Unix() + 1)},
		},
		"meta": map[string]any{"total": float64(3)},
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	status, body = f.get(t, fmt.Sprintf("/api/v2/builders/runtests/builds/%d/reports?state=failed&field=reporter", b.Number))
	if diff := cmp.Diff(map[string]any{"reports": []any{map[string]any{"reporter": "chat"}}, "meta": map[string]any{"total": float64(1)}}, body); status != 200 || diff != "" {
		t.Errorf("filtered by state: %d (-want +got):\n%s", status, diff)
	}
	if status, _ := f.get(t, "/api/v2/builds/999/reports"); status != 404 {
		t.Errorf("reports of no build: %d, want 404", status)
	}
}
