package ui

import (
	"cmp"
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

// The charts are SVG drawn by the templates (charts.html) from the
// geometry computed here: no script draws them, their colours are the
// result classes of static/style.css, and each carries a title, a
// description and its values as text, so that a page read without
// JavaScript (or by a screen reader) says what they show.

// chartBuilds is how many of a builder's newest builds its chart shows.
const chartBuilds = 100

// Size of the builder chart's SVG (its viewBox; CSS scales it) and its
// plot area inside the axis labels.
const (
	durChartW, durChartH = 800, 220
	durPlotX, durPlotY   = 60, 12
	durPlotW, durPlotH   = durChartW - durPlotX - 10, durChartH - durPlotY - 30
	// durMinSlots keeps a few builds' bars from growing wide.
	durMinSlots = 20
)

// durationChart is a builder's chart: a bar per build, oldest on the
// left, its height the build's duration, its class the build's result.
type durationChart struct {
	Width, Height              int
	PlotX, PlotY, PlotW, PlotH int
	Bars                       []chartBar
	YTicks, XTicks             []chartTick
	Title, Desc                string
	Builds, Finished           int    // bars, and the finished builds among them
	Successes                  int    // finished with success
	SuccessRate                string // "92%", or "" when none finished
	Median                     string // median duration of the finished builds, or ""
}

// chartBar is one bar or box of a chart, with its link and tooltip.
type chartBar struct {
	X, Y, W, H   float64
	Class, Title string
	Href         string
	Number       int64
}

// Geom is the bar's x, y, width and height attributes, made once here:
// numbers only, so nothing to escape (and the waterfall's hundreds of
// rects render in a fraction of the time four escaped printf calls each
// take).
func (b chartBar) Geom() template.HTMLAttr {
	return template.HTMLAttr(fmt.Sprintf(`x="%.1f" y="%.1f" width="%.1f" height="%.1f"`, b.X, b.Y, b.W, b.H))
}

// chartTick is an axis label at (X, Y).
type chartTick struct {
	X, Y  float64
	Label string
}

// durationChartOf draws builds (newest first, as the store lists them)
// of the builder called name; href links a build's page. A running build's
// bar is its duration so far.
func durationChartOf(name string, builds []store.Build, now time.Time, href func(store.Build) string) durationChart {
	c := durationChart{
		Width: durChartW, Height: durChartH, PlotX: durPlotX, PlotY: durPlotY, PlotW: durPlotW, PlotH: durPlotH,
		Builds: len(builds),
	}
	var finished []time.Duration
	longest := time.Duration(0)
	durs := make([]time.Duration, len(builds))
	for i, b := range builds {
		end := b.CompleteAt
		if !b.Complete || end.IsZero() {
			end = now
		}
		d := max(end.Sub(b.StartedAt), 0)
		if b.StartedAt.IsZero() {
			d = 0
		}
		durs[i] = d
		longest = max(longest, d)
		if b.Complete {
			finished = append(finished, d)
			if b.Results == store.Success {
				c.Successes++
			}
		}
	}
	c.Finished = len(finished)
	if c.Finished > 0 {
		c.SuccessRate = strconv.Itoa((c.Successes*100+c.Finished/2)/c.Finished) + "%"
		c.Median = fmtDuration(median(finished))
	}
	top := niceDuration(longest)
	slots := max(len(builds), durMinSlots)
	slot := float64(c.PlotW) / float64(slots)
	bottom := float64(c.PlotY + c.PlotH)
	for i, b := range slices.Backward(builds) {
		// slices.Backward counts i down from the newest's index: the
		// oldest build is at index len-1 and goes leftmost.
		pos := len(builds) - 1 - i
		h := float64(c.PlotH) * durs[i].Seconds() / top.Seconds()
		h = max(h, 1) // a build of no time still shows
		result := api.ResultWord(b.Complete, b.Results)
		c.Bars = append(c.Bars, chartBar{
			X: float64(c.PlotX) + float64(pos)*slot + slot*0.1, Y: bottom - h, W: slot * 0.8, H: h,
			Class: result, Href: href(b), Number: b.Number,
			Title: fmt.Sprintf("#%d: %s, %s", b.Number, result, fmtDuration(durs[i])),
		})
	}
	for _, f := range []float64{0, 0.5, 1} {
		c.YTicks = append(c.YTicks, chartTick{
			X: float64(c.PlotX - 6), Y: bottom - f*float64(c.PlotH),
			Label: fmtDuration(time.Duration(f * float64(top))),
		})
	}
	if n := len(c.Bars); n > 0 {
		first, last := c.Bars[0], c.Bars[n-1]
		c.XTicks = append(c.XTicks, chartTick{X: first.X + first.W/2, Y: bottom + 16, Label: "#" + strconv.FormatInt(first.Number, 10)})
		if n > 1 {
			c.XTicks = append(c.XTicks, chartTick{X: last.X + last.W/2, Y: bottom + 16, Label: "#" + strconv.FormatInt(last.Number, 10)})
		}
	}
	c.Title = fmt.Sprintf("Durations of the last %d builds of %s", len(builds), name)
	if c.Finished > 0 {
		c.Desc = fmt.Sprintf("%d of %d finished builds succeeded (%s); median duration %s; longest %s.",
			c.Successes, c.Finished, c.SuccessRate, c.Median, fmtDuration(longest))
	} else {
		c.Desc = "No finished build yet."
	}
	return c
}

// median is the middle of ds (the mean of the two middles for an even
// count); ds is reordered.
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}

// niceDurations are the tops a duration axis rounds up to.
var niceDurations = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// niceDuration is the smallest round duration at least d (one second at
// least; whole days past a day).
func niceDuration(d time.Duration) time.Duration {
	for _, n := range niceDurations {
		if d <= n {
			return n
		}
	}
	day := 24 * time.Hour
	return (d + day - 1) / day * day
}

// niceCount is the smallest of 1, 2, 5, 10, 20, 50 ... at least n.
func niceCount(n int) int {
	for p := 1; ; p *= 10 {
		for _, m := range []int{1, 2, 5} {
			if n <= m*p {
				return m * p
			}
		}
	}
}

// Size of a series chart of the home page.
const (
	seriesW, seriesH       = 800, 150
	seriesPlotX, seriesPlY = 40, 10
	seriesPlotW            = seriesW - seriesPlotX - 10
	seriesPlotH            = seriesH - seriesPlY - 28
)

// seriesChart is a count over time as a step line: the queue's length or
// the busy workers of the home page.
type seriesChart struct {
	ID, Class                  string // the svg's id and the line's class
	Width, Height              int
	PlotX, PlotY, PlotW, PlotH int
	Line, Area                 string // SVG path data
	YTicks, XTicks             []chartTick
	Title, Desc                string
	Now, Peak                  int
	PeakAt                     string
}

// seriesChartOf draws values, one per equal slice of [from, to) (the
// highest count within it, first reached at reached[i]), as a step line;
// now is the count at to.
func seriesChartOf(id, class, title string, values []int, reached []time.Time, now int, from, to time.Time) seriesChart {
	c := seriesChart{
		ID: id, Class: class, Title: title, Width: seriesW, Height: seriesH,
		PlotX: seriesPlotX, PlotY: seriesPlY, PlotW: seriesPlotW, PlotH: seriesPlotH, Now: now,
	}
	peakAt := -1
	for i, v := range values {
		if v > c.Peak {
			c.Peak, peakAt = v, i
		}
	}
	top := niceCount(max(c.Peak, 1))
	bottom := float64(c.PlotY + c.PlotH)
	slice := float64(c.PlotW) / float64(max(len(values), 1))
	y := func(v int) float64 { return bottom - float64(c.PlotH)*float64(v)/float64(top) }
	var line strings.Builder
	for i, v := range values {
		x := float64(c.PlotX) + float64(i)*slice
		if i == 0 {
			fmt.Fprintf(&line, "M%.1f %.1f", x, y(v))
		} else {
			fmt.Fprintf(&line, "V%.1f", y(v))
		}
		fmt.Fprintf(&line, "H%.1f", x+slice)
	}
	c.Line = line.String()
	if c.Line != "" {
		c.Area = fmt.Sprintf("%sV%.1fH%dZ", c.Line, bottom, c.PlotX)
	}
	for _, f := range []float64{0, 0.5, 1} {
		v := int(f * float64(top))
		if f == 0.5 && top%2 != 0 {
			continue
		}
		c.YTicks = append(c.YTicks, chartTick{X: float64(c.PlotX - 6), Y: y(v), Label: strconv.Itoa(v)})
	}
	span := to.Sub(from)
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		t := from.Add(time.Duration(f * float64(span)))
		c.XTicks = append(c.XTicks, chartTick{X: float64(c.PlotX) + f*float64(c.PlotW), Y: bottom + 16, Label: t.UTC().Format("15:04")})
	}
	if peakAt >= 0 && peakAt < len(reached) {
		// When the highest count was first reached, not the start of its
		// slice, which may be minutes before.
		c.PeakAt = reached[peakAt].UTC().Format("15:04")
	}
	c.Desc = fmt.Sprintf("%s from %s to %s UTC: now %d, highest %d", title, from.UTC().Format("15:04"), to.UTC().Format("15:04"), c.Now, c.Peak)
	if c.PeakAt != "" {
		c.Desc += " (at " + c.PeakAt + ")"
	}
	c.Desc += "."
	return c
}

// seriesDelta is a change of a count at a time.
type seriesDelta struct {
	At time.Time
	D  int
}

// sortDeltas orders deltas by time, decreases first at the same time, so
// that an end and a start at one instant make no false peak.
func sortDeltas(ds []seriesDelta) {
	slices.SortStableFunc(ds, func(a, b seriesDelta) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.D, b.D))
	})
}

// seriesValues samples the count that deltas (sorted by sortDeltas) make,
// from zero, over n equal slices of [from, to): each slice holds the
// highest count reached within it, and reached when it was first reached
// in the slice (the slice's start if the count was already that).
func seriesValues(deltas []seriesDelta, from, to time.Time, n int) (out []int, reached []time.Time) {
	out, reached = make([]int, n), make([]time.Time, n)
	if n == 0 || !to.After(from) {
		for s := range n {
			reached[s] = from
		}
		return out, reached
	}
	span := to.Sub(from)
	cur, i := 0, 0
	for ; i < len(deltas) && deltas[i].At.Before(from); i++ {
		cur += deltas[i].D
	}
	for s := range n {
		start := from.Add(time.Duration(float64(span) * float64(s) / float64(n)))
		end := from.Add(time.Duration(float64(span) * float64(s+1) / float64(n)))
		// The count at the slice's start, then the highest within it.
		for ; i < len(deltas) && !deltas[i].At.After(start); i++ {
			cur += deltas[i].D
		}
		high, at := cur, start
		for ; i < len(deltas) && deltas[i].At.Before(end); i++ {
			cur += deltas[i].D
			if cur > high {
				high, at = cur, deltas[i].At
			}
		}
		out[s], reached[s] = high, at
	}
	return out, reached
}

// countAt is the count that deltas (sorted) make at t, ends at t
// included.
func countAt(deltas []seriesDelta, t time.Time) int {
	n := 0
	for _, d := range deltas {
		if d.At.After(t) {
			break
		}
		n += d.D
	}
	return n
}

// interval is a span of time of one thing (a request waiting, a build on
// a worker); an open one (End zero) lasts to the chart's end.
type interval struct {
	Start, End time.Time
	Key        int64 // what is counted once while any of its intervals is open (a worker); 0 counts each
}

// deltasOf turns intervals into the deltas of how many are open, or, for
// keyed ones, of how many distinct keys are open (a worker with two builds
// is one busy worker). The result is sorted.
func deltasOf(ivs []interval) []seriesDelta {
	type edge struct {
		at  time.Time
		d   int
		key int64
	}
	var edges []edge
	for _, iv := range ivs {
		if iv.Start.IsZero() {
			continue
		}
		edges = append(edges, edge{iv.Start, 1, iv.Key})
		if !iv.End.IsZero() {
			end := iv.End
			if end.Before(iv.Start) {
				end = iv.Start
			}
			edges = append(edges, edge{end, -1, iv.Key})
		}
	}
	slices.SortStableFunc(edges, func(a, b edge) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.d, b.d)) })
	open := map[int64]int{}
	var out []seriesDelta
	for _, e := range edges {
		if e.key == 0 {
			out = append(out, seriesDelta{e.at, e.d})
			continue
		}
		before := open[e.key]
		open[e.key] += e.d
		if (before == 0) != (open[e.key] == 0) {
			out = append(out, seriesDelta{e.at, e.d})
		}
	}
	return out
}
