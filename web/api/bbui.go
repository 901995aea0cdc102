package api

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/pkg/store"
)

// The endpoints that buildbot's own web app (its React UI) reads beyond
// the others: a change's builds, a buildset's properties, and buildbot
// 4's projects, a worker's builders and inline raw logs.

// projectRes is buildbot 4's projects. gbb has none: its builders'
// projectid is null.
var projectRes = &resource{plural: "projects", fields: map[string]kind{
	"active": kindBool, "description": kindString, "description_format": kindString,
	"description_html": kindString, "name": kindString, "projectid": kindInt, "slug": kindString,
}}

func (s *Server) listProjects(r *http.Request, _ *query) ([]map[string]any, error) {
	return nil, nil
}

func (s *Server) getProject(r *http.Request, _ *query) (map[string]any, error) {
	return nil, NotFound("no such project %s: gbb has no projects", chi.URLParam(r, "project"))
}

// listWorkerBuilders serves /workers/N/builders: the builders the worker
// is configured on, as buildbot 4's.
func (s *Server) listWorkerBuilders(r *http.Request, _ *query) ([]map[string]any, error) {
	wk, err := s.workerParam(r)
	if err != nil {
		return nil, err
	}
	var objs []map[string]any
	seen := map[int64]bool{}
	for _, bm := range wk.ConfiguredOn {
		if seen[bm.BuilderID] {
			continue
		}
		seen[bm.BuilderID] = true
		b, err := s.cfg.Store.Builder(bm.BuilderID)
		if err != nil {
			return nil, LookupErr(err, "builder %d", bm.BuilderID)
		}
		objs = append(objs, builderObj(b))
	}
	return objs, nil
}

// listChangeBuilds serves /changes/N/builds as buildbot's
// getBuildsForChange: the builds of the buildsets that build the change's
// sourcestamp (shared by content, see the store's findSourceStamp).
func (s *Server) listChangeBuilds(r *http.Request, q *query) ([]map[string]any, error) {
	id, err := idParam(r, "changeid", "change")
	if err != nil {
		return nil, err
	}
	c, err := s.cfg.Store.Change(id)
	if err != nil {
		return nil, LookupErr(err, "change %d", id)
	}
	bss, err := s.cfg.Store.BuildsetsOfSourceStamp(c.SourceStampID)
	if err != nil {
		return nil, err
	}
	var objs []map[string]any
	for _, bs := range bss {
		brs, err := s.cfg.Store.BuildRequests(store.BuildRequestFilter{BuildsetID: bs.ID})
		if err != nil {
			return nil, fmt.Errorf("list buildrequests of buildset %d: %w", bs.ID, err)
		}
		for _, br := range brs {
			builds, err := s.cfg.Store.Builds(store.BuildFilter{BuildRequestID: br.ID})
			if err != nil {
				return nil, fmt.Errorf("list builds of buildrequest %d: %w", br.ID, err)
			}
			for _, b := range builds {
				objs = append(objs, buildObj(b, q.props))
			}
		}
	}
	slices.SortFunc(objs, func(a, b map[string]any) int { return int(a["buildid"].(int64) - b["buildid"].(int64)) })
	return objs, nil
}

// buildsetProperties serves a buildset's properties as buildbot's single
// properties object, as buildProperties does a build's.
func (s *Server) buildsetProperties(w http.ResponseWriter, r *http.Request) {
	bs, err := s.buildsetParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	props := propertiesObj(bs.Properties, []string{"*"})
	jsonreply.Write(w, http.StatusOK, map[string]any{"properties": []any{props}, "meta": map[string]any{}})
}
