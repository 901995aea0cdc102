package web

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

//go:embed templates
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// recentBuilds is how many builds the front page lists.
const recentBuilds = 20

type indexPage struct {
	Title, TitleURL, MasterName string
	Builders                    []builderRow
	Builds                      []buildRow
	Forces                      []forceForm
}

type builderRow struct {
	ID   int64
	Name string
	Last *buildRow // nil when the builder has no build
}

type buildRow struct {
	ID, Number    int64
	Builder       string
	Result, State string
	Started       string
}

type forceForm struct {
	Name, Label, Button string
	Reason              string // the reason field's value
	Builders            []store.Builder
	Params              []paramInput
	Error               string // a refused POST's error not about one param
}

// paramInput is one custom parameter of a force form, with the value to
// show and the error of a refused POST.
type paramInput struct {
	scheduler.ForceParam
	Label, Value string
	Checked      bool
	Error        string
}

// forceFormOf is the form of fi, filled from a refused POST when posted is
// not nil.
func forceFormOf(fi scheduler.ForceInfo, byName map[string]store.Builder, posted url.Values, rerr *rpcError) forceForm {
	f := forceForm{Name: fi.Name, Label: cmp.Or(fi.Label, fi.Name), Button: cmp.Or(fi.ButtonName, fi.Name), Reason: cmp.Or(fi.Reason, "force build")}
	for _, n := range fi.BuilderNames {
		if b, ok := byName[n]; ok {
			f.Builders = append(f.Builders, b)
		}
	}
	if posted != nil {
		f.Reason = posted.Get("reason")
	}
	matched := false
	for _, p := range fi.Params {
		in := paramInput{ForceParam: p, Label: cmp.Or(p.Label, p.Name)}
		if p.Default != nil {
			in.Value = fmt.Sprint(p.Default)
		}
		in.Checked = p.Default == true
		if posted != nil {
			in.Value = posted.Get(p.Name)
			in.Checked = in.Value == "on" || in.Value == "true"
		}
		if rerr != nil && rerr.field == p.Name {
			in.Error, matched = rerr.message, true
		}
		f.Params = append(f.Params, in)
	}
	if rerr != nil && !matched {
		f.Error = rerr.message
	}
	return f
}

// index serves the front page: builders, recent builds and force forms.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	page, err := s.indexData("", nil, nil)
	if err != nil {
		s.log.Error("render index", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	s.render(w, http.StatusOK, "index.html", page)
}

// indexData is the front page; posted and rerr, when set, are the refused
// POST of the force form of scheduler forced.
func (s *Server) indexData(forced string, posted url.Values, rerr *rpcError) (*indexPage, error) {
	page := &indexPage{Title: s.cfg.Title, TitleURL: s.cfg.TitleURL, MasterName: s.cfg.MasterName}
	builders, err := s.cfg.Store.Builders()
	if err != nil {
		return nil, err
	}
	builds, err := s.cfg.Store.Builds(store.BuildFilter{})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(builds, func(a, b store.Build) int { return cmp.Compare(b.ID, a.ID) })
	names := map[int64]string{}
	byName := map[string]store.Builder{}
	for _, b := range builders {
		names[b.ID] = b.Name
		byName[b.Name] = b
	}
	last := map[int64]*buildRow{}
	for i, b := range builds {
		row := buildRow{
			ID: b.ID, Number: b.Number, Builder: names[b.BuilderID],
			Result: resultWord(b.Complete, b.Results), State: b.StateString,
		}
		if !b.StartedAt.IsZero() {
			row.Started = b.StartedAt.UTC().Format(time.DateTime)
		}
		if last[b.BuilderID] == nil {
			last[b.BuilderID] = &row
		}
		if i < recentBuilds {
			page.Builds = append(page.Builds, row)
		}
	}
	for _, b := range builders {
		page.Builders = append(page.Builders, builderRow{ID: b.ID, Name: b.Name, Last: last[b.ID]})
	}
	for _, fi := range s.forceSchedulers() {
		if fi.Name == forced {
			page.Forces = append(page.Forces, forceFormOf(fi, byName, posted, rerr))
		} else {
			page.Forces = append(page.Forces, forceFormOf(fi, byName, nil, nil))
		}
	}
	return page, nil
}

func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// forceForm serves the front page's force forms: it forces a build, then
// sends the browser back to the front page.
func (s *Server) forceForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxRPCBody)
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		s.render(w, status, "force_error.html", "Bad form: "+err.Error())
		return
	}
	fr := scheduler.ForceRequest{
		Owner:      r.PostForm.Get("username"),
		Reason:     r.PostForm.Get("reason"),
		Branch:     r.PostForm.Get("branch"),
		Revision:   r.PostForm.Get("revision"),
		Repository: r.PostForm.Get("repository"),
		Project:    r.PostForm.Get("project"),
	}
	if v := r.PostForm.Get("builderid"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			s.render(w, http.StatusBadRequest, "force_error.html", "builderid must be an integer")
			return
		}
		fr.BuilderID = id
	}
	name := chi.URLParam(r, "scheduler")
	for _, fi := range s.forceSchedulers() {
		if fi.Name != name {
			continue
		}
		for _, p := range fi.Params {
			if v, ok := r.PostForm[p.Name]; ok {
				if fr.Properties == nil {
					fr.Properties = map[string]any{}
				}
				fr.Properties[p.Name] = v[0]
			}
		}
	}
	if _, _, rerr := s.force(r, name, fr); rerr != nil {
		if rerr.status != http.StatusBadRequest {
			s.render(w, rerr.status, "force_error.html", rerr.message)
			return
		}
		// Show the form again, with the values posted and the error
		// beside its field.
		page, err := s.indexData(name, r.PostForm, rerr)
		if err != nil {
			s.log.Error("render index", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		s.render(w, http.StatusBadRequest, "index.html", page)
		return
	}
	// A relative Location keeps a proxy's path prefix; http.Redirect would
	// make it absolute from our own path.
	w.Header().Set("Location", "../")
	w.WriteHeader(http.StatusSeeOther)
}
