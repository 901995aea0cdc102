package ui

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
	"github.com/gbb-ci/gbb/web/auth"
)

//go:embed templates static
var uiFS embed.FS

var pages = template.Must(template.ParseFS(uiFS, "templates/*.html"))

// staticFS is what /static/ serves; staticVersion, a hash of its files, is
// put in the links to them so that a new binary's files are fetched anew.
var staticFS, staticVersion = func() (fs.FS, string) {
	sub, err := fs.Sub(uiFS, "static")
	if err != nil {
		panic(err)
	}
	h := sha256.New()
	fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := fs.ReadFile(sub, path)
			h.Write(data)
		}
		return nil
	})
	return sub, hex.EncodeToString(h.Sum(nil))[:10]
}()

// Routes adds the pages, their forms and the static files to r. Every
// link a page makes is relative to the page (through pageBase.Root), so the
// site works under any path prefix that a proxy strips.
func (s *Server) Routes(r chi.Router) {
	r.Get("/", s.homePage)
	r.Get("/builders", s.buildersPage)
	r.Get("/builders/{builder}", s.builderPage)
	r.Get("/builders/{builder}/builds/{number}", s.buildPage)
	r.Get("/builders/{builder}/builds/{number}/steps/{step}/logs/{slug}", s.logPage)
	r.Get("/workers", s.workersPage)
	r.Get("/masters", s.mastersPage)
	r.Get("/changes", s.changesPage)
	r.Get("/pending", s.pendingPage)
	r.Get("/console", s.consolePage)
	r.Get("/grid", s.gridPage)
	r.Get("/waterfall", s.waterfallPage)
	r.Get("/badges/{file}", s.badge)
	r.Get("/static/*", s.static)
	// Browsers ask for /favicon.ico whatever a page links to.
	r.Get("/favicon.ico", s.favicon)
	r.Group(func(r chi.Router) {
		r.Use(s.cfg.Guard)
		r.Post("/force/{scheduler}", s.forceForm)
		r.Post("/builders/{builder}/force/{scheduler}", s.builderForceForm)
		r.Post("/builders/{builder}/builds/{number}/stop", s.stopForm)
		r.Post("/builders/{builder}/builds/{number}/rebuild", s.rebuildForm)
		r.Post("/buildrequests/{brid}/cancel", s.cancelForm)
		r.Post("/workers/{worker}/{action}", s.workerForm)
	})
}

func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=86400")
	http.StripPrefix("/static/", http.FileServerFS(staticFS)).ServeHTTP(w, r)
}

func (s *Server) favicon(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=86400")
	http.ServeFileFS(w, r, staticFS, "favicon.ico")
}

// pageBase is what every page's header and footer show.
type pageBase struct {
	// Root is the site's root relative to the page: "./" for /builders,
	// "../" for /builders/3, and so on.
	Root          string
	Site, SiteURL string // the configured title and title_url
	Title         string // this page's title
	Nav           string // the header entry to mark as current
	// Live lists the /sse/listen paths the page's script follows,
	// space-separated; empty means none.
	Live       string
	BuildID    int64 // set on a build page: step events of other builds are ignored
	MasterName string
	Static     string // staticVersion
	Auth       authView
	// can says whether the page's user may do an action (see Can).
	can func(action, builder, owner string) bool
}

func (s *Server) base(r *http.Request, nav, title, live string) pageBase {
	u := auth.UserOf(r)
	return pageBase{
		Root: rootOf(r.URL.Path), Site: s.cfg.Title, SiteURL: s.cfg.TitleURL, Title: title,
		Nav: nav, Live: live, MasterName: s.cfg.MasterName, Static: staticVersion,
		Auth: s.authView(r),
		can: func(action, builder, owner string) bool {
			return s.cfg.Access().Users == nil || auth.Allowed(s.cfg.Access().Rules, u, action, builder, owner)
		},
	}
}

// Can reports whether the page's user may do action on builder ("" for a
// worker action) to a build or request owned by owner, as api.Authorize would
// decide: the pages show only the controls their user may use.
func (p pageBase) Can(action, builder, owner string) bool {
	return p.can == nil || p.can(action, builder, owner)
}

// mayForce keeps the force forms the page's user may submit: a builder
// page's form if they may force its builder; a scheduler's form with only
// the builders they may force, and no "all" choice unless that is all of
// them (one left is fixed, as a builder page's).
func (p pageBase) mayForce(forms []forceForm, builder store.Builder) []forceForm {
	var out []forceForm
	for _, f := range forms {
		if f.BuilderID != 0 {
			if p.Can("force", builder.Name, "") {
				out = append(out, f)
			}
			continue
		}
		var ok []store.Builder
		for _, b := range f.Builders {
			if p.Can("force", b.Name, "") {
				ok = append(ok, b)
			}
		}
		switch {
		case len(ok) == 0:
			continue
		case len(ok) == 1 && len(f.Builders) > 1:
			f.BuilderID = ok[0].ID
		case len(ok) < len(f.Builders):
			f.NoAll = true
		}
		f.Builders = ok
		out = append(out, f)
	}
	return out
}

// RootOf is the relative path from a page at path to the site's root.
func RootOf(path string) string { return rootOf(path) }

// rootOf is the relative path from a page at path to the site's root.
func rootOf(path string) string {
	n := strings.Count(path, "/") - 1
	if n <= 0 {
		return "./"
	}
	return strings.Repeat("../", n)
}

// recentBuilds is how many builds the front page lists.
const recentBuilds = 20

type homePage struct {
	pageBase
	Running  []buildRow
	Builds   []buildRow
	Builders []builderRow
	Forces   []forceForm
	// FailedReports counts the reporters' deliveries given up (see
	// reports.go).
	FailedReports int
	Trends        *trends
}

type builderRow struct {
	ID          int64
	Name        string
	Description string
	Tags        []string
	Last        []buildRow // newest first
	Workers     []workerRef
}

type workerRef struct {
	ID     int64
	Name   string
	Online bool
}

// buildRow is a build as lists show it.
type buildRow struct {
	ID, Number, BuilderID int64
	Builder               string
	Result, State         string
	Started, Duration     string
	Step                  string // the running step, on the front page
	Worker                string
}

func (s *Server) buildRowOf(b store.Build, names map[int64]string) buildRow {
	row := buildRow{
		ID: b.ID, Number: b.Number, BuilderID: b.BuilderID, Builder: names[b.BuilderID],
		Result: api.ResultWord(b.Complete, b.Results), State: b.StateString,
		Started: fmtTime(b.StartedAt), Duration: duration(b.StartedAt, b.Complete, b.CompleteAt),
	}
	return row
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.DateTime)
}

// duration is how long something took, or has taken so far.
func duration(start time.Time, complete bool, end time.Time) string {
	if start.IsZero() {
		return ""
	}
	if !complete || end.IsZero() {
		end = time.Now()
	}
	return fmtDuration(end.Sub(start))
}

// fmtDuration is how every page and chart prints a duration: under a
// tenth of a second in milliseconds ("40ms", "<1ms"), under a minute with
// a tenth of a second ("0.3s", "12.3s"), a minute and more to the second
// ("1m5s", "2h0m3s"), as time.Duration prints them. Zero, and a negative
// duration (clocks that went back), is 0s.
func fmtDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if ms := d.Round(time.Millisecond); ms < 100*time.Millisecond {
		if ms == 0 {
			return "<1ms"
		}
		return strconv.FormatInt(ms.Milliseconds(), 10) + "ms"
	}
	if t := d.Round(100 * time.Millisecond); t < time.Minute {
		return strconv.FormatFloat(t.Seconds(), 'f', 1, 64) + "s"
	}
	return d.Round(time.Second).String()
}

type forceForm struct {
	Name, Label, Button string
	Action              string // the form's action, relative to the page
	BuilderID           int64  // fixed builder of a builder page's form, or 0
	NoAll               bool   // the user may not force every builder of the scheduler
	Reason              string // the reason field's value
	UserLabel           string // the label of the user name field
	Builders            []store.Builder
	Params              []paramInput
	Error               string // a refused POST's error not about one param
	Disabled            bool   // the scheduler is disabled: the form is shown, its fields disabled

	Codebases []codebaseInput // the fields of each codebase; nil: one branch, revision, repository and project
}

// paramInput is one custom parameter of a force form, with the value to
// show and the error of a refused POST.
type paramInput struct {
	scheduler.ForceParam
	Label, Value string
	Values       []string // a multiple_choice's selected values
	Checked      bool
	Error        string
}

// Selected reports whether c is among a multiple_choice's values.
func (p paramInput) Selected(c string) bool { return slices.Contains(p.Values, c) }

// forceFormOf is the form of fi, filled from a refused POST when posted is
// not nil.
func forceFormOf(fi scheduler.ForceInfo, byName map[string]store.Builder, posted url.Values, rerr *api.RPCError) forceForm {
	f := forceForm{Name: fi.Name, Label: cmp.Or(fi.Label, fi.Name), Button: cmp.Or(fi.ButtonName, fi.Name), Reason: cmp.Or(fi.Reason, "force build"), UserLabel: "Your name", Disabled: fi.Disabled}
	for _, n := range fi.BuilderNames {
		if b, ok := byName[n]; ok {
			f.Builders = append(f.Builders, b)
		}
	}
	if posted != nil {
		f.Reason = posted.Get("reason")
	}
	f.Codebases = codebaseInputs(fi, posted)
	matched := false
	for _, p := range fi.Params {
		in := paramInput{ForceParam: p, Label: cmp.Or(p.Label, p.Name)}
		if p.Type == "username" {
			f.UserLabel = strings.TrimSuffix(in.Label, ":")
		}
		if p.Default != nil {
			in.Value = fmt.Sprint(p.Default)
		}
		in.Values, _ = p.Default.([]string)
		in.Checked = p.Default == true
		if posted != nil {
			in.Value = posted.Get(p.Name)
			in.Values = posted[p.Name]
			in.Checked = in.Value == "on" || in.Value == "true"
		}
		if rerr != nil && rerr.Field() == p.Name && p.Type != "fixed" && p.Type != "username" { // those two have no field of their own
			in.Error, matched = rerr.Message(), true
		}
		f.Params = append(f.Params, in)
	}
	if rerr != nil && !matched {
		f.Error = rerr.Message()
	}
	return f
}

// forceForms are the forms of the force schedulers that may build builder
// (all of them for 0); forced, posted and rerr are a refused POST's.
func (s *Server) forceForms(root string, builder store.Builder, builders []store.Builder, forced string, posted url.Values, rerr *api.RPCError) []forceForm {
	byName := map[string]store.Builder{}
	for _, b := range builders {
		byName[b.Name] = b
	}
	var out []forceForm
	for _, fi := range s.api.ForceSchedulers() {
		if builder.ID != 0 && !slices.Contains(fi.BuilderNames, builder.Name) {
			continue
		}
		var f forceForm
		if fi.Name == forced {
			f = forceFormOf(fi, byName, posted, rerr)
		} else {
			f = forceFormOf(fi, byName, nil, nil)
		}
		if builder.ID != 0 {
			f.BuilderID = builder.ID
			f.Builders = []store.Builder{builder}
			s.onlyBuilderWorkers(&f, builder)
			f.Action = root + "builders/" + strconv.FormatInt(builder.ID, 10) + "/force/" + url.PathEscape(fi.Name)
		} else {
			f.Action = root + "force/" + url.PathEscape(fi.Name)
		}
		out = append(out, f)
	}
	return out
}

// homePage serves the front page: running builds, recent builds, builders
// at a glance and the force forms.
func (s *Server) homePage(w http.ResponseWriter, r *http.Request) {
	page, err := s.homeData(r, "", nil, nil)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "index.html", page)
}

// homeData is the front page; posted and rerr, when set, are the refused
// POST of the force form of scheduler forced.
func (s *Server) homeData(r *http.Request, forced string, posted url.Values, rerr *api.RPCError) (*homePage, error) {
	page := &homePage{pageBase: s.base(r, "home", "Home", "builds/*/* steps/*/* buildrequests/*/*")}
	builders, names, err := s.builderNames()
	if err != nil {
		return nil, err
	}
	running, err := s.cfg.Store.Builds(store.BuildFilter{Complete: new(false)})
	if err != nil {
		return nil, err
	}
	for _, b := range slices.Backward(running) {
		row := s.buildRowOf(b, names)
		steps, err := s.cfg.Store.Steps(b.ID)
		if err != nil {
			return nil, err
		}
		for _, st := range slices.Backward(steps) {
			if !st.StartedAt.IsZero() && !st.Complete {
				row.Step = cmp.Or(st.StateString, st.Name)
				break
			}
		}
		page.Running = append(page.Running, row)
	}
	recent, err := s.recentBuilds(recentBuilds)
	if err != nil {
		return nil, err
	}
	if page.FailedReports, err = s.cfg.Store.FailedDeliveries(); err != nil {
		return nil, err
	}
	for _, b := range recent {
		page.Builds = append(page.Builds, s.buildRowOf(b, names))
	}
	for _, b := range builders {
		last, err := s.lastBuilds(b.ID, 0, 1)
		if err != nil {
			return nil, err
		}
		row := builderRow{ID: b.ID, Name: b.Name}
		for _, l := range last {
			row.Last = append(row.Last, s.buildRowOf(l, names))
		}
		page.Builders = append(page.Builders, row)
	}
	if page.Trends, err = s.cachedTrends(time.Now()); err != nil {
		return nil, err
	}
	page.Forces = page.mayForce(s.forceForms(page.Root, store.Builder{}, builders, forced, posted, rerr), store.Builder{})
	return page, nil
}

// builderNames lists the builders, by name, and maps their ids to names.
func (s *Server) builderNames() ([]store.Builder, map[int64]string, error) {
	builders, err := s.cfg.Store.Builders()
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(builders, func(a, b store.Builder) int { return cmp.Compare(a.Name, b.Name) })
	names := make(map[int64]string, len(builders))
	for _, b := range builders {
		names[b.ID] = b.Name
	}
	return builders, names, nil
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

type errorPage struct {
	pageBase
	Message string
}

// pageError shows err as a page: its own status and message for an
// api.Error, 500 (logged) for anything else.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *api.Error
	if errors.As(err, &ae) {
		s.ErrorPage(w, r, ae.Status(), ae.Error())
		return
	}
	s.log.Error("render page", "path", r.URL.Path, "err", err)
	s.ErrorPage(w, r, http.StatusInternalServerError, "internal error")
}

// ErrorPage answers status with the error page saying msg.
func (s *Server) ErrorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, status, "error.html", &errorPage{pageBase: s.base(r, "", http.StatusText(status), ""), Message: msg})
}

// forceForm serves the front page's force forms: it forces a build (the
// force that api.Authorize decoded from the form and allowed), then sends
// the browser back to the front page.
func (s *Server) forceForm(w http.ResponseWriter, r *http.Request) {
	c, rerr, ok := s.force(w, r)
	if !ok {
		return
	}
	if rerr != nil {
		// Show the form again, with the values posted and the error
		// beside its field.
		page, err := s.homeData(r, c.Scheduler, c.Form, rerr)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		// The page is at /force/NAME: its links must start one level up.
		page.Root = rootOf(r.URL.Path)
		s.render(w, http.StatusBadRequest, "index.html", page)
		return
	}
	s.SeeOther(w, r, "")
}

// builderForceForm serves a builder page's force forms: it forces a build
// of that builder, then sends the browser back to the builder's page.
func (s *Server) builderForceForm(w http.ResponseWriter, r *http.Request) {
	c, rerr, ok := s.force(w, r)
	if !ok {
		return
	}
	if rerr != nil {
		page, err := s.builderData(r, c.Builder, c.Scheduler, c.Form, rerr)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		s.render(w, http.StatusBadRequest, "builder.html", page)
		return
	}
	s.SeeOther(w, r, "builders/"+strconv.FormatInt(c.Builder.ID, 10))
}

// force acts on a force form's call. It answers the request and returns
// false unless the force was done or refused for a bad parameter (400),
// which the caller shows beside the form.
func (s *Server) force(w http.ResponseWriter, r *http.Request) (*api.Call, *api.RPCError, bool) {
	c, ok := s.api.CallOf(w, r)
	if !ok {
		return nil, nil, false
	}
	_, rerr := s.api.Act(r.Context(), c)
	if rerr != nil && rerr.Status() != http.StatusBadRequest {
		s.ErrorPage(w, r, rerr.Status(), rerr.Message())
		return nil, nil, false
	}
	return c, rerr, true
}

// SeeOther sends the browser to target, a path from the site's root. A
// relative Location keeps a proxy's path prefix; http.Redirect would make
// it absolute from our own path.
func (s *Server) SeeOther(w http.ResponseWriter, r *http.Request, target string) {
	w.Header().Set("Location", rootOf(r.URL.Path)+target)
	w.WriteHeader(http.StatusSeeOther)
}

// onlyBuilderWorkers keeps, in the worker_choice params of f, a builder
// page's form, only "-any-" and the workers of builder: the scheduler's
// choices are those of all its builders, and this form forces one.
func (s *Server) onlyBuilderWorkers(f *forceForm, builder store.Builder) {
	var mine []string
	listed := false
	for i, p := range f.Params {
		if p.Type != "worker_choice" {
			continue
		}
		if !listed {
			workers, err := s.cfg.Store.Workers()
			if err != nil {
				s.log.Error("list workers for a force form", "err", err)
				return
			}
			for _, w := range workers {
				if slices.ContainsFunc(w.ConfiguredOn, func(bm store.BuilderMaster) bool { return bm.BuilderID == builder.ID }) {
					mine = append(mine, w.Name)
				}
			}
			listed = true
		}
		f.Params[i].Choices = slices.DeleteFunc(slices.Clone(p.Choices), func(c string) bool {
			return c != scheduler.AnyWorker && !slices.Contains(mine, c)
		})
	}
}
