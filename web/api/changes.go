package api

import (
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/store"
)

// SchedulerInfo describes a configured scheduler for /api/v2/schedulers.
type SchedulerInfo struct {
	// ID is buildbot's schedulerid. The master keeps each scheduler's id
	// by name in its store, so it holds across restarts and reconfigs.
	ID      int64
	Name    string
	Enabled bool
}

var (
	changeRes = &resource{plural: "changes", fields: map[string]kind{
		"author": kindString, "branch": kindString, "category": kindString, "changeid": kindInt,
		"codebase": kindString, "comments": kindString, "committer": kindString, "files": kindList,
		"parent_changeids": kindList, "project": kindString, "properties": kindObject,
		"repository": kindString, "revision": kindString, "revlink": kindString,
		"sourcestamp": kindObject, "when_timestamp": kindInt,
	}}
	schedulerRes = &resource{plural: "schedulers", fields: map[string]kind{
		"enabled": kindBool, "master": kindObject, "name": kindString, "schedulerid": kindInt,
	}}
)

// changeObj is c as buildbot's changes, with its sourcestamp embedded.
func changeObj(c store.Change, ss store.SourceStamp) map[string]any {
	files := make([]any, 0, len(c.Files))
	for _, f := range c.Files {
		files = append(files, f)
	}
	parents := make([]any, 0, len(c.ParentChangeIDs)) // a change stored before gbb kept them: []
	for _, id := range c.ParentChangeIDs {
		parents = append(parents, id)
	}
	return map[string]any{
		"author":           c.Author,
		"branch":           nullString(c.Branch),
		"category":         nullString(c.Category),
		"changeid":         c.ID,
		"codebase":         c.Codebase,
		"comments":         c.Comments,
		"committer":        nullString(c.Committer),
		"files":            files,
		"parent_changeids": parents,
		"project":          c.Project,
		"properties":       propertiesObj(c.Properties, []string{"*"}),
		"repository":       c.Repository,
		"revision":         nullString(c.Revision),
		"revlink":          nullString(c.RevLink),
		"sourcestamp":      sourcestampObj(ss),
		"when_timestamp":   unixTime(c.When),
	}
}

func (s *Server) changeObjs(cs []store.Change) ([]map[string]any, error) {
	objs := make([]map[string]any, 0, len(cs))
	for _, c := range cs {
		ss, err := s.cfg.Store.SourceStamp(c.SourceStampID)
		if err != nil {
			return nil, fmt.Errorf("sourcestamp %d of change %d: %w", c.SourceStampID, c.ID, err)
		}
		objs = append(objs, changeObj(c, ss))
	}
	return objs, nil
}

// listChanges serves /changes, /sourcestamps/N/changes, and the changes of
// a buildset or of a build's buildset: those the scheduler built it for.
func (s *Server) listChanges(r *http.Request, q *query) ([]map[string]any, error) {
	var ids []int64
	all := true
	switch {
	case chi.URLParam(r, "bsid") != "":
		bs, err := s.buildsetParam(r)
		if err != nil {
			return nil, err
		}
		ids, all = bs.ChangeIDs, false
	case chi.URLParam(r, "buildid") != "" || chi.URLParam(r, "number") != "":
		b, err := s.BuildParam(r)
		if err != nil {
			return nil, err
		}
		br, err := s.cfg.Store.BuildRequest(b.BuildRequestID)
		if err != nil {
			return nil, LookupErr(err, "buildrequest %d", b.BuildRequestID)
		}
		bs, err := s.cfg.Store.Buildset(br.BuildsetID)
		if err != nil {
			return nil, LookupErr(err, "buildset %d", br.BuildsetID)
		}
		ids, all = bs.ChangeIDs, false
	}
	var cs []store.Change
	if pf, ok := q.changePage(); ok && all && chi.URLParam(r, "ssid") == "" {
		total, err := s.cfg.Store.CountChanges(pf)
		if err != nil {
			return nil, err
		}
		if q.limit > 0 {
			if cs, err = s.cfg.Store.Changes(pf); err != nil {
				return nil, fmt.Errorf("list changes: %w", err)
			}
		}
		q.storeSliced(total)
	} else if all {
		// The store narrows by what it can; the query does the rest
		// (and again what the store did, to the same result).
		f, _ := q.changeFilter()
		var err error
		if cs, err = s.cfg.Store.Changes(f); err != nil {
			return nil, fmt.Errorf("list changes: %w", err)
		}
	} else {
		for _, id := range ids {
			c, err := s.cfg.Store.Change(id)
			if err != nil {
				return nil, LookupErr(err, "change %d", id)
			}
			cs = append(cs, c)
		}
	}
	if chi.URLParam(r, "ssid") != "" {
		ss, err := s.sourceStampParam(r)
		if err != nil {
			return nil, err
		}
		cs = slices.DeleteFunc(cs, func(c store.Change) bool { return c.SourceStampID != ss.ID })
	}
	return s.changeObjs(cs)
}

// changePage is the store query that answers q on every change: q has a
// limit, only filters the store takes (see changeFilter), and orders by
// changeid or not at all. Otherwise q runs in memory on the changes the
// store's part of the filters selects.
func (q *query) changePage() (store.ChangeFilter, bool) {
	f, rest := q.changeFilter()
	if q.limit < 0 || rest > 0 || len(q.order) > 1 {
		return f, false
	}
	if len(q.order) == 1 {
		if q.order[0].field != "changeid" {
			return f, false
		}
		f.Desc = q.order[0].desc
	}
	f.Offset, f.Limit = q.offset, q.limit
	return f, true
}

// changeFilter is the part of q's filters the store's ChangeFilter takes:
// one equality each on branch, repository and project, with a value that
// matches just that text. rest is how many filters it leaves out. Left
// out: an empty value (ChangeFilter's zero matches all) and branch=null
// (which matches the changes without a branch, stored as "", as well as
// a branch named "null").
func (q *query) changeFilter() (f store.ChangeFilter, rest int) {
	for _, fl := range q.filters {
		var dst *string
		switch fl.field {
		case "branch":
			dst = &f.Branch
		case "repository":
			dst = &f.Repository
		case "project":
			dst = &f.Project
		}
		v, _ := fl.values[0].(string)
		if dst == nil || fl.op != "eq" || len(fl.values) != 1 || *dst != "" || v == "" ||
			fl.field == "branch" && v == "null" {
			rest++
			continue
		}
		*dst = v
	}
	return f, rest
}

func (s *Server) getChange(r *http.Request, _ *query) (map[string]any, error) {
	id, err := idParam(r, "changeid", "change")
	if err != nil {
		return nil, err
	}
	c, err := s.cfg.Store.Change(id)
	if err != nil {
		return nil, LookupErr(err, "change %d", id)
	}
	objs, err := s.changeObjs([]store.Change{c})
	if err != nil {
		return nil, err
	}
	return objs[0], nil
}

func (s *Server) buildsetParam(r *http.Request) (store.Buildset, error) {
	id, err := idParam(r, "bsid", "buildset")
	if err != nil {
		return store.Buildset{}, err
	}
	bs, err := s.cfg.Store.Buildset(id)
	if err != nil {
		return bs, LookupErr(err, "buildset %d", id)
	}
	return bs, nil
}

func (s *Server) sourceStampParam(r *http.Request) (store.SourceStamp, error) {
	id, err := idParam(r, "ssid", "sourcestamp")
	if err != nil {
		return store.SourceStamp{}, err
	}
	ss, err := s.cfg.Store.SourceStamp(id)
	if err != nil {
		return ss, LookupErr(err, "sourcestamp %d", id)
	}
	return ss, nil
}

// listSourceStamps serves /sourcestamps. The store makes a sourcestamp for
// each change and for each source of a buildset, so these are all of them.
func (s *Server) listSourceStamps(r *http.Request, _ *query) ([]map[string]any, error) {
	byID := map[int64]store.SourceStamp{}
	cs, err := s.cfg.Store.Changes(store.ChangeFilter{})
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	for _, c := range cs {
		if _, ok := byID[c.SourceStampID]; ok {
			continue
		}
		ss, err := s.cfg.Store.SourceStamp(c.SourceStampID)
		if err != nil {
			return nil, fmt.Errorf("sourcestamp %d of change %d: %w", c.SourceStampID, c.ID, err)
		}
		byID[ss.ID] = ss
	}
	bss, err := s.cfg.Store.Buildsets(nil)
	if err != nil {
		return nil, fmt.Errorf("list buildsets: %w", err)
	}
	for _, bs := range bss {
		for _, ss := range bs.SourceStamps {
			byID[ss.ID] = ss
		}
	}
	ids := slices.Sorted(maps.Keys(byID))
	objs := make([]map[string]any, len(ids))
	for i, id := range ids {
		objs[i] = sourcestampObj(byID[id])
	}
	return objs, nil
}

func (s *Server) schedulerObj(si SchedulerInfo) (map[string]any, error) {
	var master any
	if s.cfg.MasterID != 0 {
		ms, err := s.cfg.Store.Masters()
		if err != nil {
			return nil, fmt.Errorf("list masters: %w", err)
		}
		if i := slices.IndexFunc(ms, func(m store.Master) bool { return m.ID == s.cfg.MasterID }); i >= 0 {
			master = masterObj(ms[i])
		}
	}
	return map[string]any{
		"enabled":     si.Enabled,
		"master":      master,
		"name":        si.Name,
		"schedulerid": si.ID,
	}, nil
}

func (s *Server) schedulers() []SchedulerInfo {
	if s.cfg.Schedulers == nil {
		return nil
	}
	return s.cfg.Schedulers()
}

func (s *Server) listSchedulers(r *http.Request, _ *query) ([]map[string]any, error) {
	var objs []map[string]any
	for _, si := range s.schedulers() {
		o, err := s.schedulerObj(si)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

func (s *Server) getScheduler(r *http.Request, _ *query) (map[string]any, error) {
	id, err := idParam(r, "schedulerid", "scheduler")
	if err != nil {
		return nil, err
	}
	for _, si := range s.schedulers() {
		if si.ID == id {
			return s.schedulerObj(si)
		}
	}
	return nil, NotFound("no such scheduler %d", id)
}
