package reporter

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
)

// httpStatusPush posts the build as JSON to a URL, as buildbot's
// HttpStatusPush: the build as the data API gives it, with its builder,
// buildset, properties and (once finished) steps, and its page's URL.
type httpStatusPush struct {
	rc   config.Reporter
	http *http.Client
}

func newHTTPStatusPush(rc config.Reporter, d Deps) (Sender, error) {
	if rc.URL == "" {
		return nil, fmt.Errorf("reporter %s: url is required", rc.Name)
	}
	if err := checkURLTemplate(rc.Name, rc.URL); err != nil {
		return nil, err
	}
	return &httpStatusPush{rc: rc, http: d.HTTP}, nil
}

func (h *httpStatusPush) Send(ctx context.Context, r *Report) error {
	u, err := renderURL(r, h.rc.URL)
	if err != nil {
		return Permanent(fmt.Errorf("render url: %w", err))
	}
	header := http.Header{}
	for k, v := range h.rc.Headers {
		s, err := r.Render(v)
		if err != nil {
			return Permanent(fmt.Errorf("render header %s: %w", k, err))
		}
		// A property (anyone's who can force a build) must not start
		// another header or end the request's head.
		if strings.ContainsAny(s, "\r\n\x00") {
			return Permanent(fmt.Errorf("header %s: the rendered value holds a line break or NUL: not sent", k))
		}
		header.Set(k, s)
	}
	switch {
	case h.rc.BearerToken != "":
		tok, err := r.Render(h.rc.BearerToken)
		if err != nil {
			return Permanent(fmt.Errorf("render bearer_token: %w", err))
		}
		header.Set("Authorization", "Bearer "+tok)
	case h.rc.User != "":
		pw, err := r.Render(h.rc.Password)
		if err != nil {
			return Permanent(fmt.Errorf("render password: %w", err))
		}
		header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(h.rc.User+":"+pw)))
	}
	var body any
	if r.Event == WorkerMissing {
		body = missingJSON(r.Missing)
	} else {
		body = buildJSON(r)
	}
	return postJSON(ctx, h.http, u, header, body)
}

// unix is a time as the data API gives it: seconds, or nil when zero.
func unix(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

// buildJSON is the build of r with buildbot's data API names, as
// HttpStatusPush sends it (reporters/utils.py getDetailsForBuild).
func buildJSON(r *Report) map[string]any {
	b := r.Build
	props := map[string]any{}
	for name, p := range b.Properties {
		props[name] = []any{r.Props[name], p.Source}
	}
	var results any = b.Results
	if !b.Complete {
		results = nil
	}
	var stamps []map[string]any
	for _, ss := range r.Buildset.SourceStamps {
		stamps = append(stamps, map[string]any{
			"ssid": ss.ID, "branch": ss.Branch, "revision": ss.Revision, "repository": ss.Repository,
			"project": ss.Project, "codebase": ss.Codebase, "created_at": unix(ss.CreatedAt),
		})
	}
	out := map[string]any{
		"buildid":        b.ID,
		"number":         b.Number,
		"builderid":      b.BuilderID,
		"buildrequestid": b.BuildRequestID,
		"workerid":       b.WorkerID,
		"masterid":       b.MasterID,
		"started_at":     unix(b.StartedAt),
		"complete":       b.Complete,
		"complete_at":    unix(b.CompleteAt),
		"results":        results,
		"results_text":   ResultName(b.Results),
		"state_string":   b.StateString,
		"properties":     props,
		"url":            r.URL,
		"builder": map[string]any{
			"builderid": r.Builder.ID, "name": r.Builder.Name, "description": r.Builder.Description,
			"tags": nonNil(r.Builder.Tags),
		},
		"buildset": map[string]any{
			"bsid": r.Buildset.ID, "reason": r.Buildset.Reason, "external_idstring": r.Buildset.ExternalID,
			"submitted_at": unix(r.Buildset.SubmittedAt), "sourcestamps": nonNil(stamps),
		},
		"blamelist": nonNil(r.Blamelist),
		"event":     r.Event,
	}
	if r.Event == Finished {
		var steps []map[string]any
		for _, s := range r.Steps {
			steps = append(steps, map[string]any{
				"stepid": s.ID, "number": s.Number, "name": s.Name, "results": s.Results,
				"state_string": s.StateString, "started_at": unix(s.StartedAt), "complete_at": unix(s.CompleteAt),
				"hidden": s.Hidden, "urls": nonNil(s.URLs),
			})
		}
		out["steps"] = nonNil(steps)
	}
	if r.Previous != nil {
		out["prev_build"] = map[string]any{"buildid": r.Previous.ID, "number": r.Previous.Number, "results": r.Previous.Results}
	}
	return out
}

// missingJSON is a WorkerMissing report as JSON.
func missingJSON(m *MissingWorker) map[string]any {
	return map[string]any{
		"event": WorkerMissing, "workername": m.Name, "last_connection": unix(m.LastSeen),
		"missing_timeout": int64(m.Timeout / time.Second), "notify": nonNil(m.Admins), "url": m.URL,
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// buildTitle is "builder #N".
func buildTitle(r *Report) string {
	return fmt.Sprintf("%s #%d", r.Builder.Name, r.Build.Number)
}
