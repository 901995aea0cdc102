package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// TestReportsOnPages: the build page lists the reporters' deliveries of
// its reports with their last error, the front page counts the failed
// ones, and the API serves them under the build.
func TestReportsOnPages(t *testing.T) {
	t.Parallel()
	f := newUIServer(t)
	at := time.Unix(1_795_861_479, 0).UTC()
	check(t, f.db.SaveDelivery(store.Delivery{Reporter: "github_status", Seq: 1, BuildID: f.ok.ID, Event: "finished",
		State: store.DeliveryDelivered, Attempts: 3, LastError: "post to api.github.com: 502 Bad Gateway", CreatedAt: at, UpdatedAt: at, DeliveredAt: at}, true))
	check(t, f.db.SaveDelivery(store.Delivery{Reporter: "chat", Seq: 1, BuildID: f.ok.ID, Event: "finished",
		State: store.DeliveryFailed, Attempts: 1, LastError: "post to chat.example.org: 404 Not Found", CreatedAt: at, UpdatedAt: at}, true))

	status, page := f.page(t, fmt.Sprintf("/builders/%d/builds/%d", f.runtests.ID, f.ok.Number))
	if status != 200 {
		t.Fatalf("build page: %d", status)
	}
	for _, want := range []string{
		`<section id="reports-section">`,
		`<tr class="report delivered">`, `<td class="report-reporter">github_status</td>`, `<td class="report-attempts">3</td>`,
		`<tr class="report failed">`, `<td class="report-error">post to chat.example.org: 404 Not Found</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("build page lacks %q", want)
		}
	}
	status, page = f.page(t, fmt.Sprintf("/builders/%d/builds/%d", f.runtests.ID, f.failed.Number))
	if status != 200 || !strings.Contains(page, `<p class="empty">No reports.</p>`) {
		t.Errorf("a build without reports: %d", status)
	}
	if _, page := f.page(t, "/"); !strings.Contains(page, `<p id="failed-reports" class="result failure">1 report delivery was given up`) {
		t.Errorf("front page lacks the failed deliveries' count")
	}
	status, body := f.get(t, fmt.Sprintf("/api/v2/builds/%d/reports", f.ok.ID))
	if reports, _ := body["reports"].([]any); status != 200 || len(reports) != 2 {
		t.Errorf("API: %d %v", status, body)
	}
}
