package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

// testController records the control calls it gets; the engine behind the
// real one is tested in pkg/build and e2e.
type testController struct {
	mu    sync.Mutex
	calls []string
	err   error // returned by every call when set
}

func (c *testController) record(format string, args ...any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, fmt.Sprintf(format, args...))
	return c.err
}

func (c *testController) StopBuild(ctx context.Context, id int64, reason string) error {
	return c.record("stop %d %q", id, reason)
}

func (c *testController) Rebuild(ctx context.Context, id int64) (int64, map[int64]int64, error) {
	if err := c.record("rebuild %d", id); err != nil {
		return 0, nil, err
	}
	return 531, map[int64]int64{1: 831}, nil
}

func (c *testController) CancelBuildRequest(ctx context.Context, id int64, reason string) error {
	return c.record("cancel %d %q", id, reason)
}

func (c *testController) PauseWorker(ctx context.Context, id int64, reason string) error {
	return c.record("pause %d %q", id, reason)
}

func (c *testController) UnpauseWorker(ctx context.Context, id int64) error {
	return c.record("unpause %d", id)
}

func (c *testController) GracefulWorker(ctx context.Context, id int64) error {
	return c.record("graceful %d", id)
}

func (c *testController) KillWorker(ctx context.Context, id int64, reason string) error {
	return c.record("kill %d %q", id, reason)
}

// newControlServer serves the fixture's store with a testController.
func newControlServer(t *testing.T, c Controller) *fixture {
	t.Helper()
	f := newTestServer(t)
	srv := httptest.NewServer(New(Config{Store: f.db, Controller: c, MasterID: f.master.ID}).Handler())
	t.Cleanup(srv.Close)
	f.srv = srv
	return f
}

func TestControlRPC(t *testing.T) {
	t.Parallel()
	c := &testController{}
	f := newControlServer(t, c)
	rpc := func(method, params string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","method":%q,"id":6,"params":%s}`, method, params)
	}
	w := f.worker
	tests := []struct {
		path, body string
		want       any // the result
		call       string
	}{
		{fmt.Sprintf("/api/v2/builds/%d", f.running.ID), rpc("stop", `{"reason":"sample stop"}`), nil, fmt.Sprintf("stop %d %q", f.running.ID, "sample stop")},
		{fmt.Sprintf("/api/v2/builders/%d/builds/%d", f.runtests.ID, f.running.Number), rpc("stop", `{}`), nil, fmt.Sprintf("stop %d %q", f.running.ID, "")},
		{fmt.Sprintf("/api/v2/builders/runtests/builds/%d", f.running.Number), rpc("stop", `{"reason":null}`), nil, fmt.Sprintf("stop %d %q", f.running.ID, "")},
		{fmt.Sprintf("/api/v2/builds/%d", f.ok.ID), rpc("rebuild", `{}`), []any{531.0, map[string]any{"1": 831.0}}, fmt.Sprintf("rebuild %d", f.ok.ID)},
		{fmt.Sprintf("/api/v2/buildrequests/%d", f.brid), rpc("cancel", `{"reason":"no need"}`), nil, fmt.Sprintf("cancel %d %q", f.brid, "no need")},
		{fmt.Sprintf("/api/v2/workers/%d", w.ID), rpc("pause", `{"reason":"maintenance"}`), nil, fmt.Sprintf("pause %d %q", w.ID, "maintenance")},
		{"/api/v2/workers/bench-worker", rpc("unpause", `{}`), nil, fmt.Sprintf("unpause %d", w.ID)},
		{fmt.Sprintf("/api/v2/workers/%d", w.ID), rpc("stop", `{}`), nil, fmt.Sprintf("graceful %d", w.ID)},
		{fmt.Sprintf("/api/v2/workers/%d", w.ID), rpc("graceful", `{}`), nil, fmt.Sprintf("graceful %d", w.ID)},
		{fmt.Sprintf("/api/v2/workers/%d", w.ID), rpc("kill", `{"reason":"stuck"}`), nil, fmt.Sprintf("kill %d %q", w.ID, "stuck")},
	}
	for _, tt := range tests {
		c.mu.Lock()
		c.calls = nil
		c.mu.Unlock()
		status, body := f.post(t, tt.path, "application/json", tt.body)
		if status != http.StatusOK {
			t.Errorf("POST %s %s: %d %v", tt.path, tt.body, status, body)
			continue
		}
		want := map[string]any{"id": 6.0, "jsonrpc": "2.0", "result": tt.want}
		if diff := cmp.Diff(want, body); diff != "" {
			t.Errorf("POST %s %s reply:\n%s", tt.path, tt.body, diff)
		}
		c.mu.Lock()
		if diff := cmp.Diff([]string{tt.call}, c.calls); diff != "" {
			t.Errorf("POST %s %s calls:\n%s", tt.path, tt.body, diff)
		}
		c.mu.Unlock()
	}
}

func TestControlRPCErrors(t *testing.T) {
	t.Parallel()
	f := newControlServer(t, &testController{})
	notHere := newControlServer(t, &testController{err: fmt.Errorf("stop build 3: %w", build.ErrNotHere)})
	gone := newControlServer(t, &testController{err: fmt.Errorf("get build: %w", store.ErrNotFound)})
	// The master running the build is stopped or hung: nothing would act.
	inactive := newControlServer(t, &testController{err: fmt.Errorf("stop build 3: it runs on master 2: %w", store.ErrMasterInactive)})
	none := newTestServer(t) // no Controller
	build := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	tests := []struct {
		f          *fixture
		path, body string
		status     int
		code       float64
	}{
		{f, "/api/v2/builds/999", `{"jsonrpc":"2.0","method":"stop","id":1,"params":{}}`, 404, api.RPCInvalidRequest},
		{f, "/api/v2/buildrequests/999", `{"jsonrpc":"2.0","method":"cancel","id":1,"params":{}}`, 404, api.RPCInvalidRequest},
		{f, "/api/v2/workers/nobody", `{"jsonrpc":"2.0","method":"pause","id":1,"params":{}}`, 404, api.RPCInvalidRequest},
		{f, build, `{"jsonrpc":"2.0","method":"explode","id":1,"params":{}}`, 400, api.RPCMethodNotFound},
		{f, fmt.Sprintf("/api/v2/buildrequests/%d", f.brid), `{"jsonrpc":"2.0","method":"stop","id":1,"params":{}}`, 400, api.RPCMethodNotFound},
		{f, "/api/v2/workers/bench-worker", `{"jsonrpc":"2.0","method":"rebuild","id":1,"params":{}}`, 400, api.RPCMethodNotFound},
		{f, build, `{"jsonrpc":"2.0","method":"stop","id":1,"params":{"reason":5}}`, 400, api.RPCInvalidParams},
		{f, build, `{"jsonrpc":"2.0","method":"stop","id":1}`, 400, api.RPCInvalidRequest},
		{f, build, `{"method":"stop","id":1,"params":{}}`, 400, api.RPCInvalidRequest},
		{f, build, `{not json`, 400, api.RPCParseError},
		{notHere, build, `{"jsonrpc":"2.0","method":"stop","id":1,"params":{}}`, 409, api.RPCServerError},
		{gone, build, `{"jsonrpc":"2.0","method":"rebuild","id":1,"params":{}}`, 404, api.RPCInvalidRequest},
		{inactive, build, `{"jsonrpc":"2.0","method":"stop","id":1,"params":{}}`, 409, api.RPCServerError},
		{none, build, `{"jsonrpc":"2.0","method":"stop","id":1,"params":{}}`, 503, api.RPCInternalError},
	}
	for _, tt := range tests {
		status, body := tt.f.post(t, tt.path, "application/json", tt.body)
		e, _ := body["error"].(map[string]any)
		if status != tt.status || e == nil || e["code"] != tt.code || e["message"] == "" {
			t.Errorf("POST %s %s: %d %v, want %d with code %v", tt.path, tt.body, status, body, tt.status, tt.code)
		}
	}

	// Another site's page cannot make a browser stop a build: it can send
	// the call only as text/plain or a form.
	if status, body := f.post(t, build, "text/plain", `{"jsonrpc":"2.0","method":"stop","id":1,"params":{}}`); status != http.StatusUnsupportedMediaType {
		t.Errorf("stop as text/plain: %d %v, want 415", status, body)
	}
}
