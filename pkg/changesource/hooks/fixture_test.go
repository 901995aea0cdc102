package hooks

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/internal/teststore"
	"github.com/gbb-ci/gbb/pkg/store"
)

// fixture is a real store and, over loopback, the change hooks of
// testHooks storing into it, mounted as the web server mounts them.
type fixture struct {
	db  *store.DB
	srv *httptest.Server
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

// hookServer serves testHooks on db at /change_hook/{dialect}; the caller
// closes it.
func hookServer(db *store.DB) *httptest.Server { return hookServerWith(db, testHooks) }

// hookServerWith serves hooks on db at /change_hook/{dialect}; the caller
// closes it.
func hookServerWith(db store.Store, hooks map[string]Config) *httptest.Server {
	h := New(StoreSink{DB: db}, hooks, nil)
	r := chi.NewRouter()
	r.Post("/change_hook/{dialect}", func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, chi.URLParam(r, "dialect"))
	})
	return httptest.NewServer(r)
}

func newTestServer(t testing.TB) *fixture {
	t.Helper()
	db := teststore.Open(t)
	f := &fixture{db: db, srv: hookServer(db)}
	t.Cleanup(f.srv.Close)
	return f
}
