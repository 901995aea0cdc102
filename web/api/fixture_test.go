package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/internal/teststore"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/auth"
)

var t0 = time.Unix(1795861479, 0)

// fixture is a real store with two builders, a worker and a build
// request, and the API over it on loopback, mounted at /api/v2 as the
// server mounts it.
type fixture struct {
	db             *store.DB
	srv            *httptest.Server
	master         store.Master
	runtests, noop store.Builder
	worker         store.Worker
	brid           int64
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func must2[A, B any](a A, b B, err error) func(testing.TB) (A, B) {
	return func(t testing.TB) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newTestServer(t testing.TB) *fixture {
	t.Helper()
	db := teststore.Open(t)
	f := &fixture{db: db}
	f.master = must(db.EnsureMaster("master-1"))(t)
	f.runtests = must(db.EnsureBuilder("runtests"))(t)
	f.noop = must(db.EnsureBuilder("noop"))(t)
	for _, b := range []store.Builder{f.runtests, f.noop} {
		check(t, db.UpdateBuilder(b.ID, "", nil, []int64{f.master.ID}))
	}
	w := must(db.EnsureWorker("bench-worker"))(t)
	check(t, db.WorkerConnected(w.ID, f.master.ID, map[string]string{"host": "bench"}))
	must(db.EnsureWorker("idle-worker"))(t)
	f.worker = must(db.Worker(w.ID))(t)
	_, brids := must2(db.AddBuildset(store.NewBuildset{Reason: "test", BuilderIDs: []int64{f.runtests.ID}, SubmittedAt: t0}))(t)
	f.brid = brids[f.runtests.ID]
	check(t, db.ClaimBuildRequest(f.brid, f.master.ID, t0))

	s := New(Config{
		Store: db, MasterID: f.master.ID,
		Access: func() auth.Access { return auth.Access{} },
		Guard:  func(h http.Handler) http.Handler { return h },
	})
	r := chi.NewRouter()
	r.Route("/api/v2", s.Routes)
	f.srv = httptest.NewServer(r)
	t.Cleanup(f.srv.Close)
	return f
}

// get fetches path and decodes its JSON body.
func (f *fixture) get(t *testing.T, path string) (int, map[string]any) {
	t.Helper()
	resp := must(http.Get(f.srv.URL + path))(t)
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: status %d, body not JSON: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, body
}
