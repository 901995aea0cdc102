package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// maxChunkLines bounds the lines one logchunks reply carries, so that a
// request without limit never loads a whole big log; a client reads on from
// firstline plus the lines it got.
const MaxChunkLines = 10000

// Error is an error with its HTTP status and the message the client sees.
type Error struct {
	status int
	msg    string
}

func (e *Error) Error() string { return e.msg }

// Status is the HTTP status e is answered with.
func (e *Error) Status() int { return e.status }

// NotFound is a 404 with the message format and args make.
func NotFound(format string, args ...any) error {
	return &Error{status: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400 with the message format and args make.
func BadRequest(format string, args ...any) error {
	return &Error{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// LookupErr turns a store error about the thing that format and args name
// ("build %d") into a 404 when it is missing, or wraps it.
func LookupErr(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return NotFound("no such "+format, args...)
	}
	return fmt.Errorf("get "+format+": %w", append(args, err)...)
}

// fail writes err as a JSON error: its own status for an Error, 400 for
// a bad query and 500, logged, for anything else.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	var qe *queryError
	switch {
	case errors.As(err, &ae):
		jsonreply.Error(w, ae.status, ae.msg)
	case errors.As(err, &qe):
		jsonreply.Error(w, http.StatusBadRequest, qe.msg)
	default:
		s.log.Error("api request failed", "path", r.URL.Path, "err", err)
		jsonreply.Error(w, http.StatusInternalServerError, "internal error")
	}
}

// list serves a collection of res: fn makes its objects, then the query
// filters, orders and slices them.
func (s *Server) list(res *resource, fn func(r *http.Request, q *query) ([]map[string]any, error)) http.Handler {
	return &endpoint{res: res, serve: func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r.URL.Query(), res)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		objs, err := fn(r, q)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		objs, total := q.apply(objs)
		if objs == nil {
			objs = []map[string]any{}
		}
		jsonreply.Write(w, http.StatusOK, map[string]any{res.plural: objs, "meta": map[string]any{"total": total}})
	}}
}

// one serves a single object of res, as buildbot does: a one-element list
// and an empty meta. Only the field selection of the query applies.
func (s *Server) one(res *resource, fn func(r *http.Request, q *query) (map[string]any, error)) http.Handler {
	return &endpoint{res: res, serve: func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r.URL.Query(), res)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		obj, err := fn(r, q)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		jsonreply.Write(w, http.StatusOK, map[string]any{res.plural: []any{q.project(obj)}, "meta": map[string]any{}})
	}}
}

// Routes adds the API's resources and controls to r, which is mounted
// at /api/v2.
func (s *Server) Routes(r chi.Router) {
	r.Method(http.MethodGet, "/builders", s.list(builderRes, s.listBuilders))
	r.Route("/builders/{builder}", func(r chi.Router) {
		r.Method(http.MethodGet, "/", s.one(builderRes, s.getBuilder))
		r.Method(http.MethodGet, "/builds", s.list(buildRes, s.listBuilds))
		r.Route("/builds/{number}", s.buildRoutes)
		r.Method(http.MethodGet, "/buildrequests", s.list(buildrequestRes, s.listBuildRequests))
		r.Method(http.MethodGet, "/workers", s.list(workerRes, s.listWorkers))
		r.Method(http.MethodGet, "/forceschedulers", s.list(forceschedulerRes, s.listForceSchedulers))
	})
	r.Method(http.MethodGet, "/builds", s.list(buildRes, s.listBuilds))
	r.Route("/builds/{buildid}", s.buildRoutes)
	r.Route("/steps/{stepid}", s.stepRoutes)
	r.Route("/logs/{logid}", s.logRoutes)

	r.Method(http.MethodGet, "/workers", s.list(workerRes, s.listWorkers))
	r.Method(http.MethodGet, "/workers/{worker}", s.one(workerRes, s.getWorker))
	r.Method(http.MethodGet, "/workers/{worker}/builders", s.list(builderRes, s.listWorkerBuilders))
	r.With(s.cfg.Guard).Post("/workers/{worker}", s.control)

	r.Method(http.MethodGet, "/buildrequests", s.list(buildrequestRes, s.listBuildRequests))
	r.Method(http.MethodGet, "/buildrequests/{brid}", s.one(buildrequestRes, s.getBuildRequest))
	r.With(s.cfg.Guard).Post("/buildrequests/{brid}", s.control)
	r.Method(http.MethodGet, "/buildrequests/{brid}/builds", s.list(buildRes, s.listBuilds))

	r.Method(http.MethodGet, "/buildsets", s.list(buildsetRes, s.listBuildsets))
	r.Method(http.MethodGet, "/buildsets/{bsid}", s.one(buildsetRes, s.getBuildset))
	r.Method(http.MethodGet, "/buildsets/{bsid}/changes", s.list(changeRes, s.listChanges))
	r.Method(http.MethodGet, "/buildsets/{bsid}/properties", &endpoint{res: propertiesRes, serve: s.buildsetProperties})
	r.Method(http.MethodGet, "/sourcestamps", s.list(sourcestampRes, s.listSourceStamps))
	r.Method(http.MethodGet, "/sourcestamps/{ssid}", s.one(sourcestampRes, s.getSourceStamp))
	r.Method(http.MethodGet, "/sourcestamps/{ssid}/changes", s.list(changeRes, s.listChanges))
	r.Method(http.MethodGet, "/changes", s.list(changeRes, s.listChanges))
	r.Method(http.MethodGet, "/changes/{changeid}", s.one(changeRes, s.getChange))
	r.Method(http.MethodGet, "/changes/{changeid}/builds", s.list(buildRes, s.listChangeBuilds))

	r.Method(http.MethodGet, "/schedulers", s.list(schedulerRes, s.listSchedulers))
	r.Method(http.MethodGet, "/schedulers/{schedulerid}", s.one(schedulerRes, s.getScheduler))
	r.With(s.cfg.Guard).Post("/schedulers/{schedulerid}", s.control)

	r.Method(http.MethodGet, "/forceschedulers", s.list(forceschedulerRes, s.listForceSchedulers))
	r.Method(http.MethodGet, "/forceschedulers/{scheduler}", s.one(forceschedulerRes, s.getForceScheduler))
	r.With(s.cfg.Guard).Post("/forceschedulers/{scheduler}", s.control)

	r.Method(http.MethodGet, "/masters", s.list(masterRes, s.listMasters))
	r.Method(http.MethodGet, "/masters/{masterid}", s.one(masterRes, s.getMaster))
	r.Method(http.MethodGet, "/projects", s.list(projectRes, s.listProjects))
	r.Method(http.MethodGet, "/projects/{project}", s.one(projectRes, s.getProject))

	r.Method(http.MethodGet, "/application.spec", s.list(specRes, s.applicationSpec(r)))
}

func (s *Server) buildRoutes(r chi.Router) {
	r.Method(http.MethodGet, "/", s.one(buildRes, s.getBuild))
	r.With(s.cfg.Guard).Post("/", s.control)
	r.Method(http.MethodGet, "/steps", s.list(stepRes, s.listSteps))
	r.Route("/steps/{step}", s.stepRoutes)
	r.Method(http.MethodGet, "/properties", &endpoint{res: propertiesRes, serve: s.buildProperties})
	r.Method(http.MethodGet, "/changes", s.list(changeRes, s.listChanges))
	r.Method(http.MethodGet, "/reports", s.list(reportRes, s.listReports)) // gbb's extension: the reporters' deliveries
}

func (s *Server) stepRoutes(r chi.Router) {
	r.Method(http.MethodGet, "/", s.one(stepRes, s.getStep))
	r.Method(http.MethodGet, "/logs", s.list(logRes, s.listLogs))
	r.Route("/logs/{slug}", s.logRoutes)
}

func (s *Server) logRoutes(r chi.Router) {
	r.Method(http.MethodGet, "/", s.one(logRes, s.getLog))
	r.Method(http.MethodGet, "/contents", &endpoint{res: logchunkRes, serve: s.logContents})
	r.Get("/raw", s.logRaw)
	r.Get("/raw_inline", s.logRaw)
}

// idParam reads the integer path parameter name; what names the resource in
// the 404 of a non-integer.
func idParam(r *http.Request, name, what string) (int64, error) {
	v := chi.URLParam(r, name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, NotFound("no such %s %s", what, v)
	}
	return id, nil
}

// The resolvers find the object a path names, by id or through its
// parents. The pages use them too.

// BuilderParam is the builder that the path parameter builder names, by
// id or by name.
func (s *Server) BuilderParam(r *http.Request) (store.Builder, error) {
	v := chi.URLParam(r, "builder")
	if id, err := strconv.ParseInt(v, 10, 64); err == nil {
		b, err := s.cfg.Store.Builder(id)
		if err != nil {
			return b, LookupErr(err, "builder %d", id)
		}
		return b, nil
	}
	b, err := s.cfg.Store.BuilderByName(v)
	if err != nil {
		return b, LookupErr(err, "builder %s", v)
	}
	return b, nil
}

// BuildParam is the build that buildid, or builder and number, name.
func (s *Server) BuildParam(r *http.Request) (store.Build, error) {
	if chi.URLParam(r, "buildid") != "" {
		id, err := idParam(r, "buildid", "build")
		if err != nil {
			return store.Build{}, err
		}
		b, err := s.cfg.Store.Build(id)
		if err != nil {
			return b, LookupErr(err, "build %d", id)
		}
		return b, nil
	}
	bld, err := s.BuilderParam(r)
	if err != nil {
		return store.Build{}, err
	}
	n, err := idParam(r, "number", "build number")
	if err != nil {
		return store.Build{}, err
	}
	b, err := s.cfg.Store.BuildByNumber(bld.ID, n)
	if err != nil {
		return b, LookupErr(err, "build %d of builder %s", n, bld.Name)
	}
	return b, nil
}

// StepParam is the step that stepid, or a build and step, name.
func (s *Server) StepParam(r *http.Request) (store.Step, error) {
	if chi.URLParam(r, "stepid") != "" {
		id, err := idParam(r, "stepid", "step")
		if err != nil {
			return store.Step{}, err
		}
		st, err := s.cfg.Store.Step(id)
		if err != nil {
			return st, LookupErr(err, "step %d", id)
		}
		return st, nil
	}
	b, err := s.BuildParam(r)
	if err != nil {
		return store.Step{}, err
	}
	v := chi.URLParam(r, "step")
	var st store.Step
	if n, perr := strconv.Atoi(v); perr == nil {
		st, err = s.cfg.Store.StepByNumber(b.ID, n)
	} else {
		st, err = s.cfg.Store.StepByName(b.ID, v)
	}
	if err != nil {
		return st, LookupErr(err, "step %s of build %d", v, b.ID)
	}
	return st, nil
}

func (s *Server) logParam(r *http.Request) (store.Log, error) {
	if chi.URLParam(r, "logid") != "" {
		id, err := idParam(r, "logid", "log")
		if err != nil {
			return store.Log{}, err
		}
		l, err := s.cfg.Store.Log(id)
		if err != nil {
			return l, LookupErr(err, "log %d", id)
		}
		return l, nil
	}
	st, err := s.StepParam(r)
	if err != nil {
		return store.Log{}, err
	}
	slug := chi.URLParam(r, "slug")
	l, err := s.cfg.Store.LogBySlug(st.ID, slug)
	if err != nil {
		return l, LookupErr(err, "log %s of step %d", slug, st.ID)
	}
	return l, nil
}

func (s *Server) listBuilders(r *http.Request, _ *query) ([]map[string]any, error) {
	bs, err := s.cfg.Store.Builders()
	if err != nil {
		return nil, fmt.Errorf("list builders: %w", err)
	}
	objs := make([]map[string]any, len(bs))
	for i, b := range bs {
		objs[i] = builderObj(b)
	}
	return objs, nil
}

func (s *Server) getBuilder(r *http.Request, _ *query) (map[string]any, error) {
	b, err := s.BuilderParam(r)
	if err != nil {
		return nil, err
	}
	return builderObj(b), nil
}

// listBuilds serves /builds, /builders/B/builds and /buildrequests/N/builds.
func (s *Server) listBuilds(r *http.Request, q *query) ([]map[string]any, error) {
	var f store.BuildFilter
	if chi.URLParam(r, "builder") != "" {
		b, err := s.BuilderParam(r)
		if err != nil {
			return nil, err
		}
		f.BuilderID = b.ID
	}
	if chi.URLParam(r, "brid") != "" {
		br, err := s.buildRequestParam(r)
		if err != nil {
			return nil, err
		}
		f.BuildRequestID = br.ID
	}
	var bs []store.Build
	if pf, ok := q.buildPage(f); ok {
		total, err := s.cfg.Store.CountBuilds(pf)
		if err != nil {
			return nil, fmt.Errorf("count builds: %w", err)
		}
		if q.limit > 0 {
			if bs, err = s.cfg.Store.Builds(pf); err != nil {
				return nil, fmt.Errorf("list builds: %w", err)
			}
		}
		q.storeSliced(total)
	} else {
		var err error
		if bs, err = s.cfg.Store.Builds(f); err != nil {
			return nil, fmt.Errorf("list builds: %w", err)
		}
	}
	objs := make([]map[string]any, len(bs))
	for i, b := range bs {
		objs[i] = buildObj(b, q.props)
	}
	return objs, nil
}

// buildPage is the store query that answers q on the builds that f
// selects, when q has a limit and the store can do all the rest: filters
// only by equality on builderid, buildrequestid, workerid (ids, not null
// or 0) and complete, and orders by buildid, or by number within one
// builder, or not at all (by id, as the store lists). Otherwise q runs
// in memory on every build that f selects.
func (q *query) buildPage(f store.BuildFilter) (store.BuildFilter, bool) {
	if q.limit < 0 {
		return f, false
	}
	for _, fl := range q.filters {
		if fl.op != "eq" {
			return f, false
		}
		var field *int64
		switch fl.field {
		case "builderid":
			field = &f.BuilderID
		case "buildrequestid":
			field = &f.BuildRequestID
		case "workerid":
			field = &f.WorkerID
		case "complete":
			c, ok := fl.values[0].(bool)
			if !ok || f.Complete != nil && *f.Complete != c {
				return f, false
			}
			f.Complete = &c
			continue
		default:
			return f, false
		}
		id, ok := fl.values[0].(int64)
		if !ok || id <= 0 || *field != 0 && *field != id {
			return f, false
		}
		*field = id
	}
	switch {
	case len(q.order) > 1:
		return f, false
	case len(q.order) == 1:
		k := q.order[0]
		if k.field != "buildid" && (k.field != "number" || f.BuilderID == 0) {
			return f, false
		}
		f.Desc = k.desc
	}
	f.Offset, f.Limit = q.offset, q.limit
	return f, true
}

func (s *Server) getBuild(r *http.Request, q *query) (map[string]any, error) {
	b, err := s.BuildParam(r)
	if err != nil {
		return nil, err
	}
	return buildObj(b, q.props), nil
}

// buildProperties serves a build's properties as buildbot's single
// properties object: {"properties": [{"name": [value, "source"]}], "meta": {}}.
func (s *Server) buildProperties(w http.ResponseWriter, r *http.Request) {
	b, err := s.BuildParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	props := propertiesObj(b.Properties, []string{"*"})
	jsonreply.Write(w, http.StatusOK, map[string]any{"properties": []any{props}, "meta": map[string]any{}})
}

func (s *Server) listSteps(r *http.Request, _ *query) ([]map[string]any, error) {
	b, err := s.BuildParam(r)
	if err != nil {
		return nil, err
	}
	steps, err := s.cfg.Store.Steps(b.ID)
	if err != nil {
		return nil, fmt.Errorf("list steps of build %d: %w", b.ID, err)
	}
	objs := make([]map[string]any, len(steps))
	for i, st := range steps {
		objs[i] = stepObj(st)
	}
	return objs, nil
}

func (s *Server) getStep(r *http.Request, _ *query) (map[string]any, error) {
	st, err := s.StepParam(r)
	if err != nil {
		return nil, err
	}
	return stepObj(st), nil
}

func (s *Server) listLogs(r *http.Request, _ *query) ([]map[string]any, error) {
	st, err := s.StepParam(r)
	if err != nil {
		return nil, err
	}
	logs, err := s.cfg.Store.Logs(st.ID)
	if err != nil {
		return nil, fmt.Errorf("list logs of step %d: %w", st.ID, err)
	}
	objs := make([]map[string]any, len(logs))
	for i, l := range logs {
		objs[i] = logObj(l)
	}
	return objs, nil
}

func (s *Server) getLog(r *http.Request, _ *query) (map[string]any, error) {
	l, err := s.logParam(r)
	if err != nil {
		return nil, err
	}
	return logObj(l), nil
}

// logContents serves buildbot's logchunks: the lines from offset (default
// 0), at most limit of them (default all, bounded by maxChunkLines), as
// stored, channel letters included.
func (s *Server) logContents(w http.ResponseWriter, r *http.Request) {
	l, err := s.logParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v := r.URL.Query()
	first, limit := int64(0), int64(-1)
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"offset", &first}, {"limit", &limit}} {
		if s := v.Get(p.name); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				jsonreply.Error(w, http.StatusBadRequest, fmt.Sprintf("%s must be a non-negative integer, not %q", p.name, s))
				return
			}
			*p.dst = n
		}
	}
	if limit < 0 || limit > MaxChunkLines {
		limit = MaxChunkLines
	}
	last := min(first+limit-1, l.NumLines-1)
	content := ""
	if limit > 0 && first <= last {
		content, err = s.cfg.Store.LogLines(l.ID, first, last)
		if err != nil {
			s.fail(w, r, LookupErr(err, "log %d", l.ID))
			return
		}
	}
	chunk := map[string]any{"content": content, "firstline": first, "logid": l.ID}
	q, err := parseQuery(url.Values{"field": v["field"]}, logchunkRes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	jsonreply.Write(w, http.StatusOK, map[string]any{"logchunks": []any{q.project(chunk)}, "meta": map[string]any{}})
}

// logRaw serves a whole log as a download (/raw), or to be shown
// (/raw_inline, buildbot 4's), as buildbot 3.7: stdio logs lose
// their channel letters, lines are joined by "\n" with no final newline, and
// the file is named BUILDER_build_N_step_STEP_log_SLUG.
func (s *Server) logRaw(w http.ResponseWriter, r *http.Request) {
	l, err := s.logParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name, err := s.logFilename(l)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctype := "text/plain; charset=utf-8"
	if l.Type == "h" {
		ctype = "text/html; charset=utf-8"
	}
	w.Header().Set("Content-Type", ctype)
	if strings.HasSuffix(r.URL.Path, "/raw_inline") {
		// buildbot 4's raw_inline, shown in the browser: an HTML log is
		// sandboxed, so that what a build wrote runs no script as the site.
		w.Header().Set("Content-Security-Policy", "sandbox; frame-ancestors 'none'")
	} else {
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	fn := func(line string) string { return line }
	if l.Type == "s" {
		fn = func(line string) string {
			if line == "" || line == "\n" {
				return line
			}
			return line[1:]
		}
	}
	tw := &trimWriter{w: w}
	if err := s.cfg.Store.WriteLog(l.ID, tw, fn); err != nil {
		// The status is sent: all that is left is to cut the reply short.
		s.log.Error("write raw log", "log", l.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// logFilename is buildbot's name for a downloaded log.
func (s *Server) logFilename(l store.Log) (string, error) {
	st, err := s.cfg.Store.Step(l.StepID)
	if err != nil {
		return "", LookupErr(err, "step %d", l.StepID)
	}
	b, err := s.cfg.Store.Build(st.BuildID)
	if err != nil {
		return "", LookupErr(err, "build %d", st.BuildID)
	}
	bld, err := s.cfg.Store.Builder(b.BuilderID)
	if err != nil {
		return "", LookupErr(err, "builder %d", b.BuilderID)
	}
	return strings.Join([]string{bld.Name, "build", strconv.FormatInt(b.Number, 10), "step", st.Name, "log", l.Slug}, "_"), nil
}

// trimWriter holds back a final "\n", so that the text it passes on has no
// trailing newline, as buildbot's raw logs.
type trimWriter struct {
	w       io.Writer
	pending bool // a "\n" is held back
}

func (t *trimWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	out := p
	if t.pending {
		out = append([]byte{'\n'}, p...)
	}
	t.pending = out[len(out)-1] == '\n'
	if t.pending {
		out = out[:len(out)-1]
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *Server) listWorkers(r *http.Request, _ *query) ([]map[string]any, error) {
	ws, err := s.cfg.Store.Workers()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	var builderID int64
	if chi.URLParam(r, "builder") != "" {
		b, err := s.BuilderParam(r)
		if err != nil {
			return nil, err
		}
		builderID = b.ID
	}
	objs := make([]map[string]any, 0, len(ws))
	for _, wk := range ws {
		if builderID != 0 && !slices.ContainsFunc(wk.ConfiguredOn, func(bm store.BuilderMaster) bool { return bm.BuilderID == builderID }) {
			continue
		}
		objs = append(objs, workerObj(wk))
	}
	return objs, nil
}

func (s *Server) getWorker(r *http.Request, _ *query) (map[string]any, error) {
	wk, err := s.workerParam(r)
	if err != nil {
		return nil, err
	}
	return workerObj(wk), nil
}

func (s *Server) buildRequestParam(r *http.Request) (store.BuildRequest, error) {
	id, err := idParam(r, "brid", "buildrequest")
	if err != nil {
		return store.BuildRequest{}, err
	}
	br, err := s.cfg.Store.BuildRequest(id)
	if err != nil {
		return br, LookupErr(err, "buildrequest %d", id)
	}
	return br, nil
}

func (s *Server) listBuildRequests(r *http.Request, q *query) ([]map[string]any, error) {
	var f store.BuildRequestFilter
	if chi.URLParam(r, "builder") != "" {
		b, err := s.BuilderParam(r)
		if err != nil {
			return nil, err
		}
		f.BuilderID = b.ID
	}
	var brs []store.BuildRequest
	if pf, ok := q.buildRequestPage(f); ok {
		total, err := s.cfg.Store.CountBuildRequests(pf)
		if err != nil {
			return nil, fmt.Errorf("count buildrequests: %w", err)
		}
		if q.limit > 0 {
			if brs, err = s.cfg.Store.BuildRequests(pf); err != nil {
				return nil, fmt.Errorf("list buildrequests: %w", err)
			}
		}
		q.storeSliced(total)
	} else {
		var err error
		if brs, err = s.cfg.Store.BuildRequests(f); err != nil {
			return nil, fmt.Errorf("list buildrequests: %w", err)
		}
	}
	objs := make([]map[string]any, len(brs))
	for i, br := range brs {
		objs[i] = buildrequestObj(br)
	}
	return objs, nil
}

// buildRequestPage is the store query that answers q on the requests f
// selects, when q has a limit and the store can do all the rest: filters
// only by equality on builderid, buildsetid (ids), claimed and complete,
// and orders by buildrequestid or not at all. Otherwise q runs in memory
// on every request that f selects.
func (q *query) buildRequestPage(f store.BuildRequestFilter) (store.BuildRequestFilter, bool) {
	if q.limit < 0 {
		return f, false
	}
	for _, fl := range q.filters {
		if fl.op != "eq" || len(fl.values) != 1 {
			return f, false
		}
		switch fl.field {
		case "builderid", "buildsetid":
			field := &f.BuilderID
			if fl.field == "buildsetid" {
				field = &f.BuildsetID
			}
			id, ok := fl.values[0].(int64)
			if !ok || id <= 0 || *field != 0 && *field != id {
				return f, false
			}
			*field = id
		case "claimed", "complete":
			field := &f.Claimed
			if fl.field == "complete" {
				field = &f.Complete
			}
			c, ok := fl.values[0].(bool)
			if !ok || *field != nil && **field != c {
				return f, false
			}
			*field = &c
		default:
			return f, false
		}
	}
	switch {
	case len(q.order) > 1:
		return f, false
	case len(q.order) == 1:
		if q.order[0].field != "buildrequestid" {
			return f, false
		}
		f.Desc = q.order[0].desc
	}
	f.Offset, f.Limit = q.offset, q.limit
	return f, true
}

func (s *Server) getBuildRequest(r *http.Request, _ *query) (map[string]any, error) {
	br, err := s.buildRequestParam(r)
	if err != nil {
		return nil, err
	}
	return buildrequestObj(br), nil
}

func (s *Server) listBuildsets(r *http.Request, q *query) ([]map[string]any, error) {
	var bss []store.Buildset
	if pf, ok := q.buildsetPage(); ok {
		total, err := s.cfg.Store.CountBuildsets(pf)
		if err != nil {
			return nil, err
		}
		if q.limit > 0 {
			if bss, err = s.cfg.Store.BuildsetPage(pf); err != nil {
				return nil, err
			}
		}
		q.storeSliced(total)
	} else {
		var err error
		if bss, err = s.cfg.Store.Buildsets(nil); err != nil {
			return nil, fmt.Errorf("list buildsets: %w", err)
		}
	}
	objs := make([]map[string]any, len(bss))
	for i, bs := range bss {
		objs[i] = buildsetObj(bs)
	}
	return objs, nil
}

// buildsetPage is the store query that answers q on every buildset, when q
// has a limit, filters by equality on complete at most, and orders by bsid
// or not at all. Otherwise q runs in memory on every buildset.
func (q *query) buildsetPage() (store.BuildsetFilter, bool) {
	var f store.BuildsetFilter
	if q.limit < 0 || len(q.order) > 1 {
		return f, false
	}
	for _, fl := range q.filters {
		if fl.field != "complete" || fl.op != "eq" || len(fl.values) != 1 {
			return f, false
		}
		c, ok := fl.values[0].(bool)
		if !ok || f.Complete != nil && *f.Complete != c {
			return f, false
		}
		f.Complete = &c
	}
	if len(q.order) == 1 {
		if q.order[0].field != "bsid" {
			return f, false
		}
		f.Desc = q.order[0].desc
	}
	f.Offset, f.Limit = q.offset, q.limit
	return f, true
}

func (s *Server) getBuildset(r *http.Request, _ *query) (map[string]any, error) {
	id, err := idParam(r, "bsid", "buildset")
	if err != nil {
		return nil, err
	}
	bs, err := s.cfg.Store.Buildset(id)
	if err != nil {
		return nil, LookupErr(err, "buildset %d", id)
	}
	return buildsetObj(bs), nil
}

func (s *Server) getSourceStamp(r *http.Request, _ *query) (map[string]any, error) {
	id, err := idParam(r, "ssid", "sourcestamp")
	if err != nil {
		return nil, err
	}
	ss, err := s.cfg.Store.SourceStamp(id)
	if err != nil {
		return nil, LookupErr(err, "sourcestamp %d", id)
	}
	return sourcestampObj(ss), nil
}

// ForceSchedulers lists the force schedulers, none without a Forcer.
func (s *Server) ForceSchedulers() []scheduler.ForceInfo {
	if s.cfg.Forcer == nil {
		return nil
	}
	return s.cfg.Forcer.ForceSchedulers()
}

func (s *Server) listForceSchedulers(r *http.Request, _ *query) ([]map[string]any, error) {
	var builder string
	if chi.URLParam(r, "builder") != "" {
		b, err := s.BuilderParam(r)
		if err != nil {
			return nil, err
		}
		builder = b.Name
	}
	var objs []map[string]any
	for _, fi := range s.ForceSchedulers() {
		if builder != "" && !slices.Contains(fi.BuilderNames, builder) {
			continue
		}
		objs = append(objs, forceschedulerObj(fi))
	}
	return objs, nil
}

func (s *Server) getForceScheduler(r *http.Request, _ *query) (map[string]any, error) {
	name := chi.URLParam(r, "scheduler")
	for _, fi := range s.ForceSchedulers() {
		if fi.Name == name {
			return forceschedulerObj(fi), nil
		}
	}
	return nil, NotFound("no such forcescheduler %s", name)
}

func (s *Server) listMasters(r *http.Request, _ *query) ([]map[string]any, error) {
	ms, err := s.cfg.Store.Masters()
	if err != nil {
		return nil, fmt.Errorf("list masters: %w", err)
	}
	leader := s.Leader()
	objs := make([]map[string]any, len(ms))
	for i, m := range ms {
		objs[i] = masterResObj(m)
		objs[i]["leader"] = m.Active && m.ID == leader
	}
	return objs, nil
}

func (s *Server) getMaster(r *http.Request, _ *query) (map[string]any, error) {
	id, err := idParam(r, "masterid", "master")
	if err != nil {
		return nil, err
	}
	ms, err := s.cfg.Store.Masters()
	if err != nil {
		return nil, fmt.Errorf("list masters: %w", err)
	}
	for _, m := range ms {
		if m.ID == id {
			o := masterResObj(m)
			o["leader"] = m.Active && m.ID == s.Leader()
			return o, nil
		}
	}
	return nil, NotFound("no such master %d", id)
}
