package ui

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

// The waterfall, as buildbot's: the builders as columns, time flowing
// down with the newest on top, each build a box as tall as it took (and
// at least wfMinBox), its steps inside it coloured by their results. The
// busy spans of time (when some build ran) are drawn to scale; the idle
// spans between them shrink to at most wfGap, labelled with their length,
// so that a quiet night does not push the builds off the page. It shows
// waterfallBuilds builds, the newest first; ?before=ID pages back from a
// build id (the "older" link).

const (
	waterfallBuilds = 60 // builds per page
	wfAxisW         = 80 // the time axis on the left
	wfColW          = 150
	wfHeadH         = 30 // the builders' names
	wfTargetH       = 1400
	wfMaxPxPerSec   = 2.0 // a 10 s build is at most 20 px tall
	wfMinBox        = 18  // a build's box is at least this tall, for its label
	wfMinLaneW      = 14  // a lane (boxes side by side) is at least this wide: a column widens for many
	wfGap           = 24  // the most an idle span takes
	wfLabelGap      = 14  // time labels closer than this are dropped
	wfTickEvery     = 120 // px between time labels down a long busy span
)

type waterfall struct {
	Width, Height int
	AxisW, HeadH  int
	Columns       []wfColumn
	Boxes         []wfBox
	Ticks         []chartTick
	Gaps          []wfGapMark
	Title, Desc   string
}

type wfColumn struct {
	X, W        float64
	ID          int64
	Name, Label string
	Href        string
}

// wfBox is one build's box and its steps.
type wfBox struct {
	chartBar
	ID      int64
	Builder string
	Label   string // "#12 · 3.4s", when the box is tall enough
	LabelY  float64
	Steps   []chartBar
}

// wfGapMark is an idle span shrunk to a mark.
type wfGapMark struct {
	Y     float64
	Label string
}

// wfBuild is a build with its steps, as the waterfall draws it.
type wfBuild struct {
	Build store.Build
	Steps []store.Step
}

// wfSegment is a span of time during which some build ran.
type wfSegment struct {
	Start, End time.Time
	Top, H     float64 // its place on the page
}

// waterfallOf lays out builds (any order) in the columns of builders
// (in their order); href links a build's page, builderHref a builder's.
// A running build ends at now.
func waterfallOf(builders []store.Builder, builds []wfBuild, now time.Time, href func(store.Build) string, builderHref func(store.Builder) string) waterfall {
	w := waterfall{AxisW: wfAxisW, HeadH: wfHeadH}
	col := map[int64]int{}
	for i, b := range builders {
		col[b.ID] = i
		label := b.Name
		if r := []rune(label); len(r) > 20 {
			label = string(r[:19]) + "…"
		}
		w.Columns = append(w.Columns, wfColumn{
			X: float64(wfAxisW + i*wfColW), W: wfColW, ID: b.ID, Name: b.Name, Label: label, Href: builderHref(b),
		})
	}
	w.Width = wfAxisW + max(len(builders), 1)*wfColW
	end := func(b store.Build) time.Time {
		if !b.Complete || b.CompleteAt.IsZero() {
			return now
		}
		return later(b.CompleteAt, b.StartedAt)
	}
	var shown []wfBuild
	for _, b := range builds {
		if _, ok := col[b.Build.BuilderID]; ok && !b.Build.StartedAt.IsZero() {
			shown = append(shown, b)
		}
	}
	segs := wfSegments(shown, end)
	var busy time.Duration
	for _, s := range segs {
		busy += s.End.Sub(s.Start)
	}
	pps := wfMaxPxPerSec
	if busy > 0 {
		pps = min(pps, wfTargetH/busy.Seconds())
	}
	for i := range segs {
		s := &segs[i]
		s.H = max(s.End.Sub(s.Start).Seconds()*pps, wfDenseH(shown, *s, end))
	}
	y := float64(wfHeadH)
	lastLabel := -1.0
	for i := range segs {
		s := &segs[i]
		if i > 0 {
			gap := segs[i-1].Start.Sub(s.End)
			g := min(wfGap, gap.Seconds()*pps)
			if g >= 8 {
				w.Gaps = append(w.Gaps, wfGapMark{Y: y + g/2, Label: "idle " + fmtDuration(gap)})
			}
			y += g
		}
		s.Top = y
		// A label at the segment's top, then one every wfTickEvery px
		// down a long one.
		for off := 0.0; off == 0 || off < s.H-wfLabelGap; off += wfTickEvery {
			if lastLabel < 0 || y+off-lastLabel >= wfLabelGap {
				at := s.End
				if s.H > 0 {
					at = s.End.Add(-time.Duration(off / s.H * float64(s.End.Sub(s.Start))))
				}
				w.Ticks = append(w.Ticks, chartTick{X: wfAxisW - 6, Y: y + off + 10, Label: at.UTC().Format("15:04:05")})
				lastLabel = y + off
			}
		}
		y += s.H
	}
	// ypos maps a time to its height on the page.
	ypos := func(t time.Time) float64 {
		for _, s := range segs {
			if !t.Before(s.Start) && !t.After(s.End) {
				if d := s.End.Sub(s.Start); d > 0 {
					return s.Top + s.H*s.End.Sub(t).Seconds()/d.Seconds()
				}
				return s.Top
			}
		}
		return float64(wfHeadH)
	}
	// Each builder's boxes, top down, go into the first lane where they
	// fit (builds of one builder run side by side on several workers).
	type placed struct {
		box  wfBox
		lane int
	}
	byCol := make([][]placed, len(builders))
	for _, b := range shown {
		bd := b.Build
		top := ypos(end(bd))
		h := max(ypos(bd.StartedAt)-top, wfMinBox)
		result := api.ResultWord(bd.Complete, bd.Results)
		dur := end(bd).Sub(bd.StartedAt)
		box := wfBox{
			chartBar: chartBar{
				Y: top, H: h, Class: result, Href: href(bd), Number: bd.Number,
				Title: fmt.Sprintf("%s #%d: %s, %s, started %s", builders[col[bd.BuilderID]].Name, bd.Number, result, fmtDuration(dur), fmtTime(bd.StartedAt)),
			},
			ID: bd.ID, Builder: builders[col[bd.BuilderID]].Name,
			Label: fmt.Sprintf("#%d · %s", bd.Number, fmtDuration(dur)), LabelY: top + 13,
		}
		for _, st := range b.Steps {
			if st.StartedAt.IsZero() {
				continue
			}
			stEnd := end(bd) // a step left unfinished ends with its build
			if st.Complete && !st.CompleteAt.IsZero() {
				stEnd = later(st.CompleteAt, st.StartedAt)
			}
			// Steps are placed by the build's own time, so that they stay
			// inside a box grown to wfMinBox.
			at := func(t time.Time) float64 {
				if dur <= 0 {
					return top
				}
				f := min(max(end(bd).Sub(t).Seconds()/dur.Seconds(), 0), 1)
				return top + f*h
			}
			sTop, sBottom := at(stEnd), at(st.StartedAt)
			if sBottom-sTop < 1 { // a step of no time: a line inside the box
				sTop = min(sTop, top+h-1)
				sBottom = sTop + 1
			}
			box.Steps = append(box.Steps, chartBar{
				Y: sTop, H: sBottom - sTop, Class: stepResult(st),
				Title: fmt.Sprintf("%s: %s, %s", st.Name, stepResult(st), fmtDuration(stEnd.Sub(st.StartedAt))),
			})
		}
		c := col[bd.BuilderID]
		byCol[c] = append(byCol[c], placed{box: box})
	}
	laneCount := make([]int, len(byCol))
	for c, boxes := range byCol {
		slices.SortFunc(boxes, func(a, b placed) int { return cmp.Or(cmp.Compare(a.box.Y, b.box.Y), cmp.Compare(b.box.ID, a.box.ID)) })
		var laneEnds []float64
		for i := range boxes {
			lane := slices.IndexFunc(laneEnds, func(e float64) bool { return e <= boxes[i].box.Y })
			if lane < 0 {
				lane = len(laneEnds)
				laneEnds = append(laneEnds, 0)
			}
			laneEnds[lane] = boxes[i].box.Y + boxes[i].box.H
			boxes[i].lane = lane
		}
		laneCount[c] = max(len(laneEnds), 1)
	}
	// A column with more lanes than fit at wfMinLaneW widens (dense
	// builds overlap once grown to wfMinBox); the columns after it move
	// right.
	x := float64(wfAxisW)
	for c := range w.Columns {
		w.Columns[c].X = x
		w.Columns[c].W = max(float64(wfColW), 6+float64(laneCount[c]*wfMinLaneW))
		x += w.Columns[c].W
	}
	w.Width = max(w.Width, int(math.Ceil(x)))
	for c, boxes := range byCol {
		lanes := laneCount[c]
		bw := (w.Columns[c].W - 6) / float64(lanes)
		for _, p := range boxes {
			p.box.X = w.Columns[c].X + 3 + float64(p.lane)*bw
			p.box.W = bw - 2
			// Steps take the box's right part; its left shows the label.
			stepX := p.box.X + p.box.W*0.55
			for i := range p.box.Steps {
				p.box.Steps[i].X, p.box.Steps[i].W = stepX, max(p.box.X+p.box.W-stepX-1, 0)
			}
			if p.box.H < 15 || lanes > 2 {
				p.box.Label = ""
			}
			y = max(y, p.box.Y+p.box.H)
			w.Boxes = append(w.Boxes, p.box)
		}
	}
	// Newest first in the document, as on the page.
	slices.SortStableFunc(w.Boxes, func(a, b wfBox) int { return cmp.Compare(b.ID, a.ID) })
	w.Height = int(y) + 10
	w.Title = "Waterfall"
	if len(w.Boxes) == 0 {
		w.Desc = "No builds."
	} else {
		w.Desc = fmt.Sprintf("%d builds of %d builders, from %s to %s UTC, newest on top.",
			len(w.Boxes), len(builders), fmtTime(segs[len(segs)-1].Start), fmtTime(segs[0].End))
	}
	return w
}

// wfDenseH is the height segment s needs so that its builds, each box at
// least wfMinBox tall, fit their builder's column in about as many lanes
// as the builder really ran builds at once: sixty short builds within a
// second get a row each, not two pixels and sixty lanes. The segment's
// own scale stretches to it.
func wfDenseH(builds []wfBuild, s wfSegment, end func(store.Build) time.Time) float64 {
	type edge struct {
		at time.Time
		d  int
	}
	per := map[int64][]edge{}
	for _, b := range builds {
		st := b.Build.StartedAt
		if st.Before(s.Start) || st.After(s.End) {
			continue
		}
		per[b.Build.BuilderID] = append(per[b.Build.BuilderID], edge{st, 1}, edge{end(b.Build), -1})
	}
	need := 0.0
	for _, edges := range per {
		// Ends first at one instant: a build starting as another ends
		// runs after it.
		slices.SortFunc(edges, func(a, b edge) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.d, b.d)) })
		n, most := 0, 1
		for _, e := range edges {
			n += e.d
			most = max(most, n)
		}
		need = max(need, math.Ceil(float64(len(edges)/2)/float64(most))*wfMinBox)
	}
	return need
}

// wfSegments merges the builds' spans into the busy segments, newest first.
func wfSegments(builds []wfBuild, end func(store.Build) time.Time) []wfSegment {
	var spans []wfSegment
	for _, b := range builds {
		spans = append(spans, wfSegment{Start: b.Build.StartedAt, End: end(b.Build)})
	}
	slices.SortFunc(spans, func(a, b wfSegment) int { return a.Start.Compare(b.Start) })
	var merged []wfSegment
	for _, s := range spans {
		if n := len(merged); n > 0 && !s.Start.After(merged[n-1].End) {
			merged[n-1].End = later(merged[n-1].End, s.End)
			continue
		}
		merged = append(merged, s)
	}
	slices.Reverse(merged)
	return merged
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

type waterfallPage struct {
	pageBase
	Waterfall waterfall
	Older     string // the link to the page of older builds, or ""
	Newest    string // the link to the first page, on an older one
}

// waterfallPage serves /waterfall: the newest waterfallBuilds builds, or
// those below ?before= (a build id).
func (s *Server) waterfallPage(w http.ResponseWriter, r *http.Request) {
	var before int64
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			s.ErrorPage(w, r, http.StatusBadRequest, fmt.Sprintf("before must be a build id (a positive integer), not %q", v))
			return
		}
		before = n
	}
	live := "builds/*/* steps/*/*"
	if before != 0 {
		live = "" // an older page's builds have ended
	}
	page := &waterfallPage{pageBase: s.base(r, "waterfall", "Waterfall", live)}
	builders, _, err := s.builderNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	builds, err := s.cfg.Store.Builds(store.BuildFilter{Desc: true, Before: before, Limit: waterfallBuilds + 1})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	if len(builds) > waterfallBuilds {
		builds = builds[:waterfallBuilds]
		page.Older = "?before=" + strconv.FormatInt(builds[len(builds)-1].ID, 10)
	}
	if before != 0 {
		page.Newest = page.Root + "waterfall"
	}
	var wbs []wfBuild
	for _, b := range builds {
		steps, err := s.cfg.Store.Steps(b.ID)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		wbs = append(wbs, wfBuild{Build: b, Steps: steps})
	}
	root := page.Root
	page.Waterfall = waterfallOf(builders, wbs, time.Now(),
		func(b store.Build) string { return root + buildPath(b) },
		func(b store.Builder) string { return root + "builders/" + strconv.FormatInt(b.ID, 10) })
	s.render(w, http.StatusOK, "waterfall.html", page)
}
