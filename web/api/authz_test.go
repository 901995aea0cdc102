package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/web/auth"
)

// TestAuthorizeRefusesWithoutAnswering checks that Authorize answers
// nothing itself: it returns each refusal, saying whether it is a form's,
// for the guard to render; and that a force form and the JSON-RPC force
// that says the same decode into the same ForceRequest.
func TestAuthorizeRefusesWithoutAnswering(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	var s *Server
	var refused *Refusal
	var acted *Call
	guard := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			r, refused = s.Authorize(rec, r)
			if rec.Body.Len() > 0 || len(rec.Header()) > 0 {
				t.Errorf("Authorize answered %s %q itself", rec.Header(), rec.Body)
			}
			if refused != nil {
				if refused.Form {
					w.WriteHeader(refused.Status)
					return
				}
				refused.Write(w)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	s = New(Config{
		Store: f.db, MasterID: f.master.ID,
		Access: func() auth.Access { return auth.Access{} },
		Guard:  guard,
	})
	router := chi.NewRouter()
	keep := func(w http.ResponseWriter, r *http.Request) {
		acted, _ = s.CallOf(w, r)
		w.WriteHeader(http.StatusNoContent)
	}
	router.With(guard).Post("/force/{scheduler}", keep)
	router.With(guard).Post("/nowhere", keep)
	router.Route("/api/v2", func(r chi.Router) {
		r.With(guard).Post("/forceschedulers/{scheduler}", keep)
	})

	const token = "abababababababababababababababababababababababababababababababab"
	form := func(path string, v url.Values) *http.Request {
		req := httptest.NewRequest("POST", path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: auth.AnonCSRFCookie, Value: token})
		return req
	}
	rpc := func(path, body string) *http.Request {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	for _, tc := range []struct {
		name string
		req  *http.Request
		want *Refusal // nil: let through
		body string   // what the guard's Write answers, for a refusal that is no form
	}{
		{"form without token", form("/force/f", url.Values{"reason": {"r"}}),
			&Refusal{Status: 403, Message: "missing or stale CSRF token: reload the page and try again", Form: true}, ""},
		{"form with a bad builderid", form("/force/f", url.Values{auth.CSRFField: {token}, "builderid": {"x"}}),
			&Refusal{Status: 400, Message: "builderid must be an integer", Form: true}, ""},
		{"call with a bad builderid", rpc("/api/v2/forceschedulers/f", `{"jsonrpc":"2.0","method":"force","id":7,"params":{"builderid":"x"}}`),
			&Refusal{Status: 400, Message: "builderid must be an integer", rpc: true, code: RPCInvalidParams, id: json.RawMessage("7")},
			`{"error":{"code":-32602,"message":"builderid must be an integer"},"id":7,"jsonrpc":"2.0"}`},
		{"a route with no control", form("/nowhere", url.Values{auth.CSRFField: {token}}),
			&Refusal{Status: 403, Message: "no control is known for /nowhere"}, `{"error":"no control is known for /nowhere"}`},
		{"form", form("/force/f", url.Values{auth.CSRFField: {token}, "builderid": {"2"}, "reason": {"r"}, "branch": {"b"}, "username": {"u"}}), nil, ""},
	} {
		refused, acted = nil, nil
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, tc.req)
		if diff := cmp.Diff(tc.want, refused, cmp.AllowUnexported(Refusal{})); diff != "" {
			t.Errorf("%s: refusal (-want +got):\n%s", tc.name, diff)
		}
		if tc.body != "" && strings.TrimSpace(rec.Body.String()) != tc.body {
			t.Errorf("%s: answered %s, want %s", tc.name, rec.Body, tc.body)
		}
		if (tc.want == nil) != (acted != nil) {
			t.Errorf("%s: refused %v, yet acted on %+v", tc.name, refused, acted)
		}
	}

	// The same force, as a form and as a call.
	router.ServeHTTP(httptest.NewRecorder(), form("/force/f", url.Values{auth.CSRFField: {token}, "builderid": {"2"}, "reason": {"r"}, "branch": {"b"}, "username": {"u"}}))
	if acted == nil || acted.Force == nil {
		t.Fatalf("the form was not decoded into a force: %+v", acted)
	}
	byForm := *acted
	router.ServeHTTP(httptest.NewRecorder(), rpc("/api/v2/forceschedulers/f", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":2,"reason":"r","branch":"b","username":"u"}}`))
	if acted == nil || acted.Force == nil {
		t.Fatalf("the call was not decoded into a force: %+v", acted)
	}
	want := scheduler.ForceRequest{BuilderID: 2, Reason: "r", Branch: "b", Owner: "u"}
	if diff := cmp.Diff(want, *byForm.Force); diff != "" {
		t.Errorf("the form's force (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, *acted.Force); diff != "" {
		t.Errorf("the call's force (-want +got):\n%s", diff)
	}
	if byForm.Scheduler != "f" || acted.Scheduler != "f" || !cmp.Equal(byForm.Builders, acted.Builders) {
		t.Errorf("form: scheduler %q builders %q; call: scheduler %q builders %q", byForm.Scheduler, byForm.Builders, acted.Scheduler, acted.Builders)
	}
}
