package ui

import (
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

// logPageLines is how many lines a log page shows when ?count= is not set.
const logPageLines = 1000

type logPage struct {
	pageBase
	Builder store.Builder
	Build   store.Build
	Step    store.Step
	Log     store.Log
	// First and Last are the 1-based numbers of the lines shown; Last
	// is First-1 when none is.
	First, Last, Count int64
	Lines              []logLine
	// The paging links; empty where there is nothing to go to.
	FirstPage, Prev, Next, LastPage string
	Follow                          bool // the page shows the log's end while it grows
	Raw                             string
}

type logLine struct {
	N     int64
	Class string // stdout, stderr or header for a stdio log's lines
	HTML  template.HTML
}

// logPage serves one page of a log: ?first=N (1-based) and ?count=C
// (default logPageLines, at most maxChunkLines) choose the lines; without
// first the page shows the log's last lines. It reads only the chunks that
// hold those lines, so a 100 MB log opens as fast as a small one. With
// ?fragment=lines it answers only the lines' HTML, which the page's script
// appends as the log grows.
func (s *Server) logPage(w http.ResponseWriter, r *http.Request) {
	st, err := s.api.StepParam(r)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	slug := chi.URLParam(r, "slug")
	l, err := s.cfg.Store.LogBySlug(st.ID, slug)
	if err != nil {
		s.pageError(w, r, api.LookupErr(err, "log %s of step %d", slug, st.ID))
		return
	}
	b, err := s.cfg.Store.Build(st.BuildID)
	if err != nil {
		s.pageError(w, r, api.LookupErr(err, "build %d", st.BuildID))
		return
	}
	bld, err := s.cfg.Store.Builder(b.BuilderID)
	if err != nil {
		s.pageError(w, r, api.LookupErr(err, "builder %d", b.BuilderID))
		return
	}
	q := r.URL.Query()
	count := int64(logPageLines)
	if v := q.Get("count"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			s.ErrorPage(w, r, http.StatusBadRequest, fmt.Sprintf("count must be a positive integer, not %q", v))
			return
		}
		count = min(n, api.MaxChunkLines)
	}
	first := max(l.NumLines-count+1, 1)
	tail := true
	if v := q.Get("first"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			s.ErrorPage(w, r, http.StatusBadRequest, fmt.Sprintf("first must be a positive integer, not %q", v))
			return
		}
		first, tail = n, false
	}
	last := min(first+count-1, l.NumLines)
	title := fmt.Sprintf("%s #%d · %s · %s", bld.Name, b.Number, st.Name, l.Name)
	page := &logPage{
		pageBase: s.base(r, "builders", title, fmt.Sprintf("logs/%d/*", l.ID)),
		Builder:  bld, Build: b, Step: st, Log: l,
		First: first, Last: max(last, first-1), Count: count,
		Raw: "api/v2/logs/" + strconv.FormatInt(l.ID, 10) + "/raw",
	}
	page.Raw = page.Root + page.Raw
	if last >= first {
		text, err := s.cfg.Store.LogLines(l.ID, first-1, last-1)
		if err != nil {
			s.pageError(w, r, api.LookupErr(err, "log %d", l.ID))
			return
		}
		if q.Get("fragment") == "inline" {
			text = clipText(text)
		}
		page.Lines = renderLogLines(l.Type, first, text)
		page.Last = first + int64(len(page.Lines)) - 1
	}
	switch q.Get("fragment") {
	case "lines":
		s.render(w, http.StatusOK, "loglines", page)
		return
	case "inline":
		// The lines as a build page shows them under their step.
		s.render(w, http.StatusOK, "inlinelines", inlineLog{Lines: page.Lines})
		return
	}
	link := func(first int64) string {
		return fmt.Sprintf("?first=%d&count=%d", first, count)
	}
	if first > 1 {
		page.FirstPage, page.Prev = link(1), link(max(first-count, 1))
	}
	if page.Last < l.NumLines {
		page.Next, page.LastPage = link(page.Last+1), fmt.Sprintf("?count=%d", count)
	}
	page.Follow = !l.Complete && (tail || page.Last >= l.NumLines)
	s.render(w, http.StatusOK, "log.html", page)
}

// renderLogLines renders text, the lines of a log of type typ from line
// number first, as HTML lines with ANSI colours.
func renderLogLines(typ string, first int64, text string) []logLine {
	var out []logLine
	var st ansiStyle
	n := first
	for line := range strings.Lines(text) {
		ll := logLine{N: n}
		if typ == "s" && len(line) > 0 && line[0] != '\n' {
			switch line[0] {
			case 'e':
				ll.Class = "stderr"
			case 'h':
				ll.Class = "header"
			default:
				ll.Class = "stdout"
			}
			line = line[1:]
		}
		ll.HTML = ansiHTML(&st, line)
		out = append(out, ll)
		n++
	}
	return out
}

// What a build page shows of each log under its step, in a <details>: the
// tail, at most inlineLogLines lines and inlineLogBytes bytes of text, and
// each line at most inlineLineBytes. The log's own page has the rest.
const (
	inlineLogLines  = 50
	inlineLogBytes  = 32 << 10
	inlineLineBytes = 2 << 10
)

// inlineLog is a log under its step on a build page.
type inlineLog struct {
	store.Log
	Href string // the log's page
	// First and Last are the numbers of the lines shown (Last is 0
	// when none is); Lines is empty for a log of HTML, which only its
	// page shows.
	First, Last int64
	Lines       []logLine
	Count       int64 // lines the page's script asks for at once
}

// Tail reports whether lines before the ones shown are left out.
func (l inlineLog) Tail() bool { return l.First > 1 }

// inlineLogOf reads the tail of l for a build page; href is its page.
func (s *Server) inlineLogOf(href string, l store.Log) (inlineLog, error) {
	il := inlineLog{Log: l, Href: href, Count: inlineLogLines}
	if l.Type == "h" || l.NumLines == 0 {
		return il, nil
	}
	first := max(l.NumLines-inlineLogLines+1, 1)
	text, err := s.cfg.Store.LogLines(l.ID, first-1, l.NumLines-1)
	if err != nil {
		return il, api.LookupErr(err, "log %d", l.ID)
	}
	// Keep the last lines that fit in inlineLogBytes.
	size, cut := 0, len(text)
	for cut > 0 {
		start := strings.LastIndexByte(text[:cut-1], '\n') + 1
		size += min(cut-start, inlineLineBytes)
		if size > inlineLogBytes {
			break
		}
		cut = start
	}
	first += int64(strings.Count(text[:cut], "\n"))
	il.Lines = renderLogLines(l.Type, first, clipText(text[cut:]))
	il.First, il.Last = first, first+int64(len(il.Lines))-1
	return il, nil
}

// clipText cuts each line of text longer than inlineLineBytes to that
// (at a character's start) and marks the cut with "…".
func clipText(text string) string {
	var sb strings.Builder
	for line := range strings.Lines(text) {
		body, nl := strings.CutSuffix(line, "\n")
		if len(body) > inlineLineBytes {
			cut := inlineLineBytes
			for cut > 0 && !utf8.RuneStart(body[cut]) {
				cut--
			}
			body = body[:cut] + "…"
		}
		sb.WriteString(body)
		if nl {
			sb.WriteByte('\n')
		}
	}
	return sb.String()
}
