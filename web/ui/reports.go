package ui

import (
	"github.com/gbb-ci/gbb/pkg/store"
)

// reportRow is one reporter's delivery of one report, as the build page
// shows it. It holds no token nor URL: the store has none.
type reportRow struct {
	Reporter, Event, State string
	Attempts               int
	LastError              string
	Updated, Next          string
	Delivered              string
}

// buildReports fills the deliveries of a build's reports.
func (s *Server) buildReports(page *buildPage, b store.Build) error {
	ds, err := s.cfg.Store.Deliveries(b.ID)
	if err != nil {
		return err
	}
	for _, d := range ds {
		row := reportRow{Reporter: d.Reporter, Event: d.Event, State: d.State, Attempts: d.Attempts,
			LastError: d.LastError, Updated: fmtTime(d.UpdatedAt), Delivered: fmtTime(d.DeliveredAt)}
		if d.State == store.DeliveryPending && !d.NextAt.IsZero() {
			row.Next = fmtTime(d.NextAt)
		}
		page.Reports = append(page.Reports, row)
	}
	return nil
}
