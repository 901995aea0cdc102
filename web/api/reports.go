package api

import (
	"net/http"

	"github.com/gbb-ci/gbb/pkg/store"
)

// reportRes is gbb's extension /api/v2/builds/N/reports: what each
// reporter did with the build's reports. It is read like the build (no
// rule beyond the build's own), and holds no token nor rendered URL: the
// store never has them, and the errors are recorded without them.
var reportRes = &resource{plural: "reports", fields: map[string]kind{
	"reporter": kindString, "event": kindString, "state": kindString, "attempts": kindInt,
	"last_error": kindString, "buildid": kindInt, "reportid": kindInt,
	"created_at": kindInt, "updated_at": kindInt, "next_at": kindInt, "delivered_at": kindInt,
}}

func reportObj(d store.Delivery) map[string]any {
	var lastErr any
	if d.LastError != "" {
		lastErr = d.LastError
	}
	return map[string]any{
		"reporter":     d.Reporter,
		"event":        d.Event,
		"state":        d.State,
		"attempts":     d.Attempts,
		"last_error":   lastErr,
		"buildid":      d.BuildID,
		"reportid":     d.Seq,
		"created_at":   unixTime(d.CreatedAt),
		"updated_at":   unixTime(d.UpdatedAt),
		"next_at":      unixTime(d.NextAt),
		"delivered_at": unixTime(d.DeliveredAt),
	}
}

func (s *Server) listReports(r *http.Request, _ *query) ([]map[string]any, error) {
	b, err := s.BuildParam(r)
	if err != nil {
		return nil, err
	}
	ds, err := s.cfg.Store.Deliveries(b.ID)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(ds))
	for _, d := range ds {
		out = append(out, reportObj(d))
	}
	return out, nil
}
