package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/auth"
)

// filterLog is the real store, with the change filters it was asked
// for written down.
type filterLog struct {
	store.Store
	mu   sync.Mutex
	asks []store.ChangeFilter
}

func (l *filterLog) Changes(f store.ChangeFilter) ([]store.Change, error) {
	l.mu.Lock()
	l.asks = append(l.asks, f)
	l.mu.Unlock()
	return l.Store.Changes(f)
}

func (l *filterLog) CountChanges(f store.ChangeFilter) (int, error) {
	l.mu.Lock()
	l.asks = append(l.asks, f)
	l.mu.Unlock()
	return l.Store.CountChanges(f)
}

func (l *filterLog) take() []store.ChangeFilter {
	l.mu.Lock()
	defer l.mu.Unlock()
	asks := l.asks
	l.asks = nil
	return asks
}

// A filtered change list has the store filter (GET
// /api/v2/changes?branch=nobody&limit=1 loaded every change, 3 s with big
// changes), with the answers the query gives in memory: each query is
// compared with the same query written with __in, which the store does
// not take.
func TestChangesFilteredByStore(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	for i := range 12 {
		must(f.db.AddChange(store.Change{Author: "a", Revision: fmt.Sprint(i),
			Branch: []string{"main", "dev", "", "null"}[i%4], Project: []string{"p", "q"}[i%2],
			Repository: []string{"r1", "r2", "r3"}[i%3]}))(t)
	}
	log := &filterLog{Store: f.db}
	s := New(Config{
		Store: log, MasterID: f.master.ID,
		Access: func() auth.Access { return auth.Access{} },
		Guard:  func(h http.Handler) http.Handler { return h },
	})
	r := chi.NewRouter()
	r.Route("/api/v2", s.Routes)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	g := &fixture{srv: srv}

	for _, tt := range []struct {
		query string
		want  store.ChangeFilter // what the store is asked for
	}{
		{"branch=nobody&limit=1", store.ChangeFilter{Branch: "nobody", Limit: 1}},
		{"branch=main&limit=2", store.ChangeFilter{Branch: "main", Limit: 2}},
		{"branch=main&project=p&limit=5&offset=1&order=-changeid", store.ChangeFilter{Branch: "main", Project: "p", Limit: 5, Offset: 1, Desc: true}},
		{"repository=r2&order=changeid&limit=3", store.ChangeFilter{Repository: "r2", Limit: 3}},
		{"project=q", store.ChangeFilter{Project: "q"}},
		{"project=q&order=-revision&limit=2", store.ChangeFilter{Project: "q"}},
		{"branch=dev&author=a&limit=2", store.ChangeFilter{Branch: "dev"}},
		{"branch=null&limit=10", store.ChangeFilter{}}, // also the changes without a branch
		{"branch=null&project=p", store.ChangeFilter{Project: "p"}},
		{"branch=main&branch=dev", store.ChangeFilter{}}, // branch__in
	} {
		status, got := g.get(t, "/api/v2/changes?"+tt.query)
		asks := log.take()
		ref := tt.query
		for _, k := range []string{"branch", "project", "repository"} {
			ref = strings.ReplaceAll(ref, k+"=", k+"__in=")
		}
		_, want := g.get(t, "/api/v2/changes?"+ref)
		log.take()
		if status != 200 {
			t.Errorf("%s: %d %v", tt.query, status, got)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s answers otherwise than %s (-in memory +store):\n%s", tt.query, ref, diff)
		}
		for _, a := range asks {
			if a.Branch != tt.want.Branch || a.Project != tt.want.Project || a.Repository != tt.want.Repository {
				t.Errorf("%s: the store was asked for %+v, want the filters of %+v", tt.query, a, tt.want)
			}
			if a.Limit != 0 && (a.Limit != tt.want.Limit || a.Offset != tt.want.Offset || a.Desc != tt.want.Desc) {
				t.Errorf("%s: the store was asked for %+v, want %+v", tt.query, a, tt.want)
			}
		}
		if len(asks) == 0 {
			t.Errorf("%s: the store was asked for no changes", tt.query)
		}
	}
	// The counts and pages themselves.
	_, body := g.get(t, "/api/v2/changes?branch=main&limit=1&order=-changeid")
	if cs := body["changes"].([]any); len(cs) != 1 || cs[0].(map[string]any)["changeid"] != 9.0 ||
		body["meta"].(map[string]any)["total"] != 3.0 {
		t.Errorf("newest change of main: %v", body)
	}
}
