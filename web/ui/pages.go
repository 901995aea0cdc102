package ui

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

// Sizes of the pages' lists.
const (
	builderLastResults = 8    // results per builder on /builders
	buildsPerPage      = 25   // builds per page of a builder's history
	changesPerPage     = 50   // changes per page of /changes
	consoleChanges     = 30   // changes (rows) of /console
	consoleScanBuilds  = 1000 // newest builds /console looks at
	gridBuilds         = 20   // builds (cells) per builder of /grid
)

// pageParam reads ?page=, 1-based, of a list of pages pages long: a
// missing value is 1; one that is not a positive integer, or past the
// last page, is a 400 saying so.
func pageParam(r *http.Request, pages int64) (int64, error) {
	v := r.URL.Query().Get("page")
	if v == "" {
		return 1, nil
	}
	p, err := strconv.ParseInt(v, 10, 64)
	if err != nil || p < 1 {
		return 0, api.BadRequest("page must be a positive integer, not %q", v)
	}
	if last := max(pages, 1); p > last {
		return 0, api.BadRequest("page %d is past the last page (%d)", p, last)
	}
	return p, nil
}

// pager links the pages of a list.
type pager struct {
	Page, Pages int64 // Pages is 0 when unknown
	Prev, Next  string
}

func makePager(base url.Values, page int64, more bool, pages int64) pager {
	p := pager{Page: page, Pages: pages}
	link := func(n int64) string {
		v := url.Values{}
		maps.Copy(v, base)
		v.Set("page", strconv.FormatInt(n, 10))
		return "?" + v.Encode()
	}
	if page > 1 {
		p.Prev = link(page - 1)
	}
	if more {
		p.Next = link(page + 1)
	}
	return p
}

// workersByBuilder maps each builder id to the workers configured for it.
func workersByBuilder(workers []store.Worker) map[int64][]workerRef {
	out := map[int64][]workerRef{}
	for _, wk := range workers {
		ref := workerRef{ID: wk.ID, Name: wk.Name, Online: len(wk.ConnectedTo) > 0}
		seen := map[int64]bool{}
		for _, bm := range wk.ConfiguredOn {
			if !seen[bm.BuilderID] {
				seen[bm.BuilderID] = true
				out[bm.BuilderID] = append(out[bm.BuilderID], ref)
			}
		}
	}
	return out
}

type buildersPage struct {
	pageBase
	Tags     []string // every tag, for the filter
	Tag      string   // the tag shown, or ""
	Builders []builderRow
}

func (s *Server) buildersPage(w http.ResponseWriter, r *http.Request) {
	page := &buildersPage{pageBase: s.base(r, "builders", "Builders", "builds/*/* workers/*/*"), Tag: r.URL.Query().Get("tag")}
	builders, names, err := s.builderNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	workers, err := s.cfg.Store.Workers()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	byBuilder := workersByBuilder(workers)
	tags := map[string]bool{}
	for _, b := range builders {
		for _, t := range b.Tags {
			tags[t] = true
		}
		if page.Tag != "" && !slices.Contains(b.Tags, page.Tag) {
			continue
		}
		row := builderRow{ID: b.ID, Name: b.Name, Description: b.Description, Tags: b.Tags, Workers: byBuilder[b.ID]}
		last, err := s.lastBuilds(b.ID, 0, builderLastResults)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		for _, l := range last {
			row.Last = append(row.Last, s.buildRowOf(l, names))
		}
		page.Builders = append(page.Builders, row)
	}
	page.Tags = slices.Sorted(maps.Keys(tags))
	if page.Tag != "" {
		page.Title = "Builders tagged " + page.Tag
	}
	s.render(w, http.StatusOK, "builders.html", page)
}

type builderPage struct {
	pageBase
	Builder store.Builder
	Workers []workerRef
	Builds  []buildRow
	Pager   pager
	Pending []requestRow
	Forces  []forceForm
	Chart   durationChart // the last chartBuilds builds
}

// requestRow is a build request not yet claimed.
type requestRow struct {
	ID, BuilderID int64
	Builder       string
	Reason        string
	Submitted     string
	Priority      int
	Source        string
	Owner         string // who forced it, for the cancel control
}

func (s *Server) builderPage(w http.ResponseWriter, r *http.Request) {
	b, err := s.api.BuilderParam(r)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	page, err := s.builderData(r, b, "", nil, nil)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "builder.html", page)
}

// builderData is a builder's page; forced, posted and rerr, when set, are
// a refused POST of a force form.
func (s *Server) builderData(r *http.Request, b store.Builder, forced string, posted url.Values, rerr *api.RPCError) (*builderPage, error) {
	page := &builderPage{pageBase: s.base(r, "builders", b.Name, "builds/*/* buildrequests/*/*"), Builder: b}
	if forced != "" {
		// A refused force is shown at .../force/NAME, two levels down.
		page.Root = rootOf(r.URL.Path)
	}
	builders, names, err := s.builderNames()
	if err != nil {
		return nil, err
	}
	workers, err := s.cfg.Store.Workers()
	if err != nil {
		return nil, err
	}
	page.Workers = workersByBuilder(workers)[b.ID]
	count, err := s.cfg.Store.CountBuilds(store.BuildFilter{BuilderID: b.ID})
	if err != nil {
		return nil, err
	}
	last, err := s.lastBuilds(b.ID, 0, chartBuilds)
	if err != nil {
		return nil, err
	}
	total := int64(count)
	pages := (total + buildsPerPage - 1) / buildsPerPage
	p, err := pageParam(r, pages)
	if err != nil {
		return nil, err
	}
	builds := last[:min(buildsPerPage, len(last))] // the first page is the chart's newest
	if p > 1 {
		if builds, err = s.lastBuilds(b.ID, (p-1)*buildsPerPage, buildsPerPage); err != nil {
			return nil, err
		}
	}
	for _, bd := range builds {
		page.Builds = append(page.Builds, s.buildRowOf(bd, names))
	}
	root := page.Root
	page.Chart = durationChartOf(b.Name, last, time.Now(), func(b store.Build) string { return root + buildPath(b) })
	page.Pager = makePager(nil, p, p < pages, pages)
	pending, err := s.pendingRequests(names, b.ID)
	if err != nil {
		return nil, err
	}
	page.Pending = pending
	page.Forces = page.mayForce(s.forceForms(page.Root, b, builders, forced, posted, rerr), b)
	return page, nil
}

// pendingRequests lists the requests not yet claimed, of one builder or
// of all (builderID 0), oldest first. It reads the store's index of
// incomplete requests, never the whole history.
func (s *Server) pendingRequests(names map[int64]string, builderID int64) ([]requestRow, error) {
	brs, err := s.cfg.Store.BuildRequests(store.BuildRequestFilter{Complete: new(false), Claimed: new(false)})
	if err != nil {
		return nil, err
	}
	sets := map[int64]store.Buildset{}
	var out []requestRow
	for _, br := range brs {
		if builderID != 0 && br.BuilderID != builderID {
			continue
		}
		bs, ok := sets[br.BuildsetID]
		if !ok {
			if bs, err = s.cfg.Store.Buildset(br.BuildsetID); err != nil {
				return nil, err
			}
			sets[br.BuildsetID] = bs
		}
		out = append(out, requestRow{
			ID: br.ID, BuilderID: br.BuilderID, Builder: names[br.BuilderID], Reason: bs.Reason,
			Submitted: fmtTime(br.SubmittedAt), Priority: br.Priority, Source: sourceText(bs.SourceStamps),
			Owner: api.PropString(bs.Properties, "owner"),
		})
	}
	return out, nil
}

// sourceText sums up sourcestamps: "branch@revision" of each.
func sourceText(sss []store.SourceStamp) string {
	var parts []string
	for _, ss := range sss {
		t := ss.Branch
		if ss.Revision != "" {
			t += "@" + shortRev(ss.Revision)
		}
		if ss.Codebase != "" {
			t = ss.Codebase + ": " + t
		}
		if t != "" {
			parts = append(parts, t)
		}
	}
	return strings.Join(parts, ", ")
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

type buildPage struct {
	pageBase
	Builder     store.Builder
	Build       buildRow
	Running     bool
	Finished    string
	Reason      string
	Source      []store.SourceStamp
	Steps       []stepRow
	Properties  []propRow
	Changes     []changeRow
	Responsible []string
	Controls    bool // stop and rebuild are available
	WorkerID    int64
	Owner       string // who forced it, for the stop and rebuild controls
	Reports     []reportRow
}

type stepRow struct {
	Number   int
	Name     string
	Result   string
	State    string
	Duration string
	Hidden   bool
	Logs     []inlineLog
	URLs     []store.StepURL
}

type propRow struct {
	Name, Value, Source string
}

func (s *Server) buildPage(w http.ResponseWriter, r *http.Request) {
	b, err := s.api.BuildParam(r)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	bld, err := s.cfg.Store.Builder(b.BuilderID)
	if err != nil {
		s.pageError(w, r, api.LookupErr(err, "builder %d", b.BuilderID))
		return
	}
	title := fmt.Sprintf("%s #%d", bld.Name, b.Number)
	page := &buildPage{
		pageBase: s.base(r, "builders", title, fmt.Sprintf("builds/%d/* steps/*/*", b.ID)),
		Builder:  bld, Build: s.buildRowOf(b, map[int64]string{bld.ID: bld.Name}),
		Running: !b.Complete, Finished: fmtTime(b.CompleteAt), Controls: s.cfg.Controller != nil,
		Owner: api.PropString(b.Properties, "owner"),
	}
	page.BuildID, page.WorkerID = b.ID, b.WorkerID
	if wk, err := s.cfg.Store.Worker(b.WorkerID); err == nil {
		page.Build.Worker = wk.Name
	}
	steps, err := s.cfg.Store.Steps(b.ID)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	for _, st := range steps {
		logs, err := s.cfg.Store.Logs(st.ID)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		row := stepRow{
			Number: st.Number, Name: st.Name, Result: stepResult(st), State: st.StateString,
			Duration: duration(st.StartedAt, st.Complete, st.CompleteAt), Hidden: st.Hidden, URLs: st.URLs,
		}
		for _, l := range logs {
			il, err := s.inlineLogOf(page.Root+buildPath(b)+"/steps/"+strconv.Itoa(st.Number)+"/logs/"+url.PathEscape(l.Slug), l)
			if err != nil {
				s.pageError(w, r, err)
				return
			}
			row.Logs = append(row.Logs, il)
		}
		page.Steps = append(page.Steps, row)
	}
	for _, name := range slices.Sorted(maps.Keys(b.Properties)) {
		p := b.Properties[name]
		page.Properties = append(page.Properties, propRow{Name: name, Value: propText(p.Value), Source: p.Source})
	}
	if err := s.buildSources(page, b); err != nil {
		s.pageError(w, r, err)
		return
	}
	if err := s.buildReports(page, b); err != nil {
		s.pageError(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "build.html", page)
}

// buildSources fills the reason, sourcestamps, changes and responsible
// users of a build's page from its buildset.
func (s *Server) buildSources(page *buildPage, b store.Build) error {
	br, err := s.cfg.Store.BuildRequest(b.BuildRequestID)
	if ok, err := found(err); !ok {
		return err
	}
	bs, err := s.cfg.Store.Buildset(br.BuildsetID)
	if ok, err := found(err); !ok {
		return err
	}
	page.Reason, page.Source = bs.Reason, bs.SourceStamps
	seen := map[string]bool{}
	for _, id := range bs.ChangeIDs {
		c, err := s.cfg.Store.Change(id)
		if ok, err := found(err); err != nil {
			return err
		} else if !ok {
			continue
		}
		page.Changes = append(page.Changes, changeRowOf(c))
		if c.Author != "" && !seen[c.Author] {
			seen[c.Author] = true
			page.Responsible = append(page.Responsible, c.Author)
		}
	}
	return nil
}

// stepResult names a step's result; a step not started yet is "pending".
func stepResult(st store.Step) string {
	if st.StartedAt.IsZero() && !st.Complete {
		return "pending"
	}
	return api.ResultWord(st.Complete, st.Results)
}

// propText shows a property's JSON value; a string without its quotes.
func propText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

type changeRow struct {
	ID                             int64
	Author, Branch, Repository     string
	Revision, ShortRev, RevLink    string
	Comments, Title, When, Project string
	Files                          []string
}

func changeRowOf(c store.Change) changeRow {
	title, _, _ := strings.Cut(c.Comments, "\n")
	row := changeRow{
		ID: c.ID, Author: c.Author, Branch: c.Branch, Repository: c.Repository, Project: c.Project,
		Revision: c.Revision, ShortRev: shortRev(c.Revision), Comments: c.Comments, Title: title,
		When: fmtTime(c.When), Files: c.Files,
	}
	// Only web links: a javascript: URL must not become a link.
	if u, err := url.Parse(c.RevLink); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		row.RevLink = c.RevLink
	}
	return row
}

type workersPage struct {
	pageBase
	Workers  []workerRow
	Controls bool
	// CertsEnding are the masters whose worker port certificate ends
	// within 14 days (or has ended).
	CertsEnding []certEnding
}

// certEnding is a master whose worker port certificate ends soon.
type certEnding struct {
	Master   string
	NotAfter time.Time
}

// certWarning is how long before its end a worker port certificate is
// shown on the workers page (as master.log warns).
const certWarning = 14 * 24 * time.Hour

type workerRow struct {
	ID                       int64
	Name                     string
	Online, Paused, Graceful bool
	Admin, Host, OS, Version string
	// Protocol is the worker's: "gbb", or "pb" or "msgpack" for a
	// buildbot-worker (whose Version is then buildbot-worker's).
	Protocol string
	Builders []builderRef
	Running  []buildRow
}

type builderRef struct {
	ID   int64
	Name string
}

func (s *Server) workersPage(w http.ResponseWriter, r *http.Request) {
	page := &workersPage{pageBase: s.base(r, "workers", "Workers", "workers/*/* builds/*/*"), Controls: s.cfg.Controller != nil}
	workers, err := s.cfg.Store.Workers()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	_, names, err := s.builderNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	running, err := s.cfg.Store.Builds(store.BuildFilter{Complete: new(false)})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	byWorker := map[int64][]buildRow{}
	for _, b := range running {
		byWorker[b.WorkerID] = append(byWorker[b.WorkerID], s.buildRowOf(b, names))
	}
	masters, err := s.cfg.Store.Masters()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	for _, m := range masters {
		if m.Active && !m.WorkerCertNotAfter.IsZero() && time.Until(m.WorkerCertNotAfter) < certWarning {
			page.CertsEnding = append(page.CertsEnding, certEnding{Master: m.Name, NotAfter: m.WorkerCertNotAfter})
		}
	}
	slices.SortFunc(workers, func(a, b store.Worker) int { return cmp.Compare(a.Name, b.Name) })
	for _, wk := range workers {
		row := workerRow{
			ID: wk.ID, Name: wk.Name, Online: len(wk.ConnectedTo) > 0, Paused: wk.Paused, Graceful: wk.Graceful,
			Admin: wk.Info["admin"], Host: wk.Info["host"], OS: cmp.Or(wk.Info["os"], wk.Info["system"]),
			Version: cmp.Or(wk.Info["version"], wk.Info["worker_version"]), Running: byWorker[wk.ID],
			Protocol: wk.Info["protocol"],
		}
		seen := map[int64]bool{}
		for _, bm := range wk.ConfiguredOn {
			if !seen[bm.BuilderID] {
				seen[bm.BuilderID] = true
				row.Builders = append(row.Builders, builderRef{ID: bm.BuilderID, Name: names[bm.BuilderID]})
			}
		}
		page.Workers = append(page.Workers, row)
	}
	s.render(w, http.StatusOK, "workers.html", page)
}

type changesPage struct {
	pageBase
	Changes []changeRow
	Pager   pager
}

func (s *Server) changesPage(w http.ResponseWriter, r *http.Request) {
	page := &changesPage{pageBase: s.base(r, "changes", "Changes", "changes/*/*")}
	count, err := s.cfg.Store.CountChanges(store.ChangeFilter{})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	pages := (int64(count) + changesPerPage - 1) / changesPerPage
	p, err := pageParam(r, pages)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	cs, err := s.cfg.Store.Changes(store.ChangeFilter{Desc: true, Offset: int((p - 1) * changesPerPage), Limit: changesPerPage})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	for _, c := range cs {
		page.Changes = append(page.Changes, changeRowOf(c))
	}
	page.Pager = makePager(nil, p, p < pages, pages)
	s.render(w, http.StatusOK, "changes.html", page)
}

type pendingPage struct {
	pageBase
	Requests []requestRow
	Controls bool
}

func (s *Server) pendingPage(w http.ResponseWriter, r *http.Request) {
	page := &pendingPage{pageBase: s.base(r, "pending", "Pending build requests", "buildrequests/*/*"), Controls: s.cfg.Controller != nil}
	_, names, err := s.builderNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	if page.Requests, err = s.pendingRequests(names, 0); err != nil {
		s.pageError(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "pending.html", page)
}

type consolePage struct {
	pageBase
	Builders []store.Builder
	Rows     []consoleRow
}

type consoleRow struct {
	Change changeRow
	Cells  []*buildRow // by builder, nil where no build
}

// consolePage shows the newest changes as rows and the builders as
// columns; a cell is the newest build of that builder whose buildset
// carries the change. It looks at the newest consoleScanBuilds builds only.
func (s *Server) consolePage(w http.ResponseWriter, r *http.Request) {
	page := &consolePage{pageBase: s.base(r, "console", "Console", "builds/*/* changes/*/*")}
	builders, names, err := s.builderNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	page.Builders = builders
	cs, err := s.cfg.Store.Changes(store.ChangeFilter{Desc: true, Limit: consoleChanges})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	type cell struct{ change, builder int64 }
	shown := map[int64]bool{}
	for _, c := range cs {
		shown[c.ID] = true
	}
	cells := map[cell]*buildRow{}
	if len(cs) > 0 {
		builds, err := s.recentBuilds(consoleScanBuilds)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		sets := map[int64][]int64{} // buildset id → change ids
		reqs := map[int64]int64{}   // request id → buildset id
		for _, b := range builds {  // newest first: the first build found wins
			bsid, ok := reqs[b.BuildRequestID]
			if !ok {
				br, err := s.cfg.Store.BuildRequest(b.BuildRequestID)
				if ok, err := found(err); err != nil {
					s.pageError(w, r, err)
					return
				} else if ok {
					bsid = br.BuildsetID
				}
				reqs[b.BuildRequestID] = bsid
			}
			ids, ok := sets[bsid]
			if !ok && bsid != 0 {
				bs, err := s.cfg.Store.Buildset(bsid)
				if ok, err := found(err); err != nil {
					s.pageError(w, r, err)
					return
				} else if ok {
					ids = bs.ChangeIDs
				}
				sets[bsid] = ids
			}
			for _, id := range ids {
				k := cell{id, b.BuilderID}
				if shown[id] && cells[k] == nil {
					row := s.buildRowOf(b, names)
					cells[k] = &row
				}
			}
		}
	}
	for _, c := range cs {
		row := consoleRow{Change: changeRowOf(c)}
		for _, b := range builders {
			row.Cells = append(row.Cells, cells[cell{c.ID, b.ID}])
		}
		page.Rows = append(page.Rows, row)
	}
	s.render(w, http.StatusOK, "console.html", page)
}

type gridPage struct {
	pageBase
	Rows []builderRow
}

// gridPage shows the builders as rows and their newest builds as cells.
func (s *Server) gridPage(w http.ResponseWriter, r *http.Request) {
	page := &gridPage{pageBase: s.base(r, "grid", "Grid", "builds/*/*")}
	builders, names, err := s.builderNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	for _, b := range builders {
		row := builderRow{ID: b.ID, Name: b.Name}
		last, err := s.lastBuilds(b.ID, 0, gridBuilds)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		for _, l := range last {
			row.Last = append(row.Last, s.buildRowOf(l, names))
		}
		page.Rows = append(page.Rows, row)
	}
	s.render(w, http.StatusOK, "grid.html", page)
}
