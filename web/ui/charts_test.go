package ui

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func hrefOf(b store.Build) string { return fmt.Sprintf("b/%d", b.Number) }

// build is a finished build of builder 1 numbered n, started at start
// for d, with result res (-1: still running).
func build(id, n int64, start time.Duration, d time.Duration, res int) store.Build {
	b := store.Build{ID: id, Number: n, BuilderID: 1, WorkerID: 1, StartedAt: t0.Add(start), Results: res}
	if res >= 0 {
		b.Complete, b.CompleteAt = true, b.StartedAt.Add(d)
	}
	return b
}

func near(a, b float64) bool { return math.Abs(a-b) < 0.01 }

// TestFastBuildsChart: builds shorter than a tenth of a second read in
// milliseconds in the bars' titles, the median and the description, never
// "0.0s".
func TestFastBuildsChart(t *testing.T) {
	t.Parallel()
	builds := []store.Build{
		build(2, 2, time.Second, 40*time.Millisecond, store.Success),
		build(1, 1, 0, 30*time.Millisecond, store.Success),
	}
	c := durationChartOf("fast", builds, t0.Add(time.Minute), hrefOf)
	if c.Median != "35ms" {
		t.Errorf("median %q, want 35ms", c.Median)
	}
	if len(c.Bars) != 2 || !strings.HasSuffix(c.Bars[1].Title, ", 40ms") {
		t.Errorf("bars %+v, want the newest titled ..., 40ms", c.Bars)
	}
	if text := fmt.Sprintf("%+v", c); strings.Contains(text, "0.0s") {
		t.Errorf("a chart of fast builds reads 0.0s: %s", text)
	}
}

// TestDurationChart: one bar per build, oldest on the left, heights in
// proportion to the durations against a round top, classes the results,
// links to the builds; the success rate and median of the finished ones.
func TestDurationChart(t *testing.T) {
	t.Parallel()
	// Newest first, as the store lists them.
	builds := []store.Build{
		build(5, 5, 40*time.Second, 0, -1), // running for 20 s at now
		build(4, 4, 30*time.Second, 8*time.Second, store.Failure),
		build(3, 3, 20*time.Second, 300*time.Millisecond, store.Success),
		build(2, 2, 10*time.Second, 4*time.Second, store.Success),
		build(1, 1, 0, 2*time.Second, store.Warnings),
	}
	now := t0.Add(60 * time.Second)
	c := durationChartOf("runtests", builds, now, hrefOf)
	if len(c.Bars) != 5 {
		t.Fatalf("%d bars, want 5", len(c.Bars))
	}
	var got []string
	for _, b := range c.Bars {
		got = append(got, fmt.Sprintf("%d %s %s", b.Number, b.Class, b.Href))
	}
	want := []string{"1 warnings b/1", "2 success b/2", "3 success b/3", "4 failure b/4", "5 running b/5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bars (-want +got):\n%s", diff)
	}
	// The longest is 20 s: the axis tops at 30 s.
	bottom := float64(c.PlotY + c.PlotH)
	for i, secs := range []float64{2, 4, 0.3, 8, 20} {
		b := c.Bars[i]
		if wantH := float64(c.PlotH) * secs / 30; !near(b.H, wantH) || !near(b.Y+b.H, bottom) {
			t.Errorf("bar %d: y %.2f h %.2f, want h %.2f on the axis at %.2f", b.Number, b.Y, b.H, wantH, bottom)
		}
		if i > 0 && !(b.X > c.Bars[i-1].X+c.Bars[i-1].W) {
			t.Errorf("bar %d at x %.1f overlaps the one before (x %.1f w %.1f)", b.Number, b.X, c.Bars[i-1].X, c.Bars[i-1].W)
		}
		if b.X < float64(c.PlotX) || b.X+b.W > float64(c.PlotX+c.PlotW) {
			t.Errorf("bar %d outside the plot: x %.1f w %.1f", b.Number, b.X, b.W)
		}
	}
	if c.YTicks[2].Label != "30.0s" || c.YTicks[0].Label != "0s" {
		t.Errorf("y axis %v, want 0s to 30.0s", c.YTicks)
	}
	if c.XTicks[0].Label != "#1" || c.XTicks[1].Label != "#5" {
		t.Errorf("x axis %v, want #1 to #5", c.XTicks)
	}
	// 2 of 4 finished succeeded; median of 0.3, 2, 4, 8 s is 3 s.
	if c.SuccessRate != "50%" || c.Finished != 4 || c.Successes != 2 || c.Median != "3.0s" {
		t.Errorf("rate %q (%d of %d), median %q; want 50%% (2 of 4), 3.0s", c.SuccessRate, c.Successes, c.Finished, c.Median)
	}
	if !strings.Contains(c.Desc, "2 of 4 finished builds succeeded (50%); median duration 3.0s") {
		t.Errorf("desc %q", c.Desc)
	}
	// A build of no time still shows.
	z := durationChartOf("x", []store.Build{build(1, 1, 0, 0, store.Success)}, now, hrefOf)
	if z.Bars[0].H < 1 {
		t.Errorf("a build of no time has a bar %.2f px tall", z.Bars[0].H)
	}
}

func TestNice(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]time.Duration{
		0: time.Second, 300 * time.Millisecond: time.Second, 20 * time.Second: 30 * time.Second,
		61 * time.Second: 2 * time.Minute, 7 * time.Hour: 12 * time.Hour, 50 * time.Hour: 72 * time.Hour,
	} {
		if got := niceDuration(d); got != want {
			t.Errorf("niceDuration(%v) = %v, want %v", d, got, want)
		}
	}
	for n, want := range map[int]int{0: 1, 1: 1, 3: 5, 7: 10, 11: 20, 130: 200} {
		if got := niceCount(n); got != want {
			t.Errorf("niceCount(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestSeries: requests waiting and busy workers as counts over time; a
// worker with two builds at once is one busy worker; each slice shows the
// highest count within it, so a short peak is not lost.
func TestSeries(t *testing.T) {
	t.Parallel()
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	waits := []interval{
		{Start: m(-30), End: m(5)},                // waiting since before the window
		{Start: m(2), End: m(3)},                  // 2..3
		{Start: m(2), End: m(2)},                  // claimed at once: no wait
		{Start: m(7)},                             // still waiting
		{Start: m(8), End: m(8).Add(time.Second)}, // a short peak within 8..9
	}
	got, _ := seriesValues(deltasOf(waits), m(0), m(10), 10)
	want := []int{1, 1, 2, 1, 1, 0, 0, 1, 2, 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queue (-want +got):\n%s", diff)
	}
	busy := []interval{
		{Start: m(1), End: m(4), Key: 7},
		{Start: m(2), End: m(3), Key: 7}, // the same worker: still one
		{Start: m(3), End: m(6), Key: 8},
		{Start: m(4), End: m(5), Key: 7}, // starts as its last build ends
	}
	got, _ = seriesValues(deltasOf(busy), m(0), m(10), 10)
	want = []int{0, 1, 1, 2, 2, 1, 0, 0, 0, 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("busy workers (-want +got):\n%s", diff)
	}
	if n := countAt(deltasOf(busy), m(6)); n != 0 {
		t.Errorf("busy workers at 12:06, as the last build ends: %d, want 0", n)
	}
	if n := countAt(deltasOf(waits), m(10)); n != 1 {
		t.Errorf("requests waiting at 12:10: %d, want 1", n)
	}
	c := seriesChartOf("q", "queue", "Pending build requests", []int{0, 1, 3, 2}, []time.Time{m(0), m(1), m(2), m(3)}, 2, m(0), m(4))
	if c.Now != 2 || c.Peak != 3 || c.PeakAt != "12:02" {
		t.Errorf("now %d peak %d at %q, want 2, 3 at 12:02", c.Now, c.Peak, c.PeakAt)
	}
	// The line: a step per slice, 3 at the top of a 0..5 axis.
	bottom := float64(c.PlotY + c.PlotH)
	top3 := bottom - float64(c.PlotH)*3/5
	if !strings.HasPrefix(c.Line, fmt.Sprintf("M%.1f %.1fH", float64(c.PlotX), bottom)) || !strings.Contains(c.Line, fmt.Sprintf("V%.1f", top3)) {
		t.Errorf("line %q: want a start at the axis and a step to %.1f", c.Line, top3)
	}
	if n := strings.Count(c.Line, "H"); n != 4 {
		t.Errorf("line %q has %d horizontal steps, want 4", c.Line, n)
	}
	if c.XTicks[0].Label != "12:00" || c.XTicks[4].Label != "12:04" {
		t.Errorf("time axis %v", c.XTicks)
	}
}

// TestSeriesPeakAt: the chart names the time its highest count was
// reached, not the start of the slice that holds it (minutes before).
func TestSeriesPeakAt(t *testing.T) {
	t.Parallel()
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	waits := []interval{
		{Start: m(1), End: m(2)},   // 1 in the first slice, 12:00-12:05
		{Start: m(7), End: m(9)},   // 2 from 12:08, in the second slice
		{Start: m(8), End: m(9)},   // 12:05-12:10
		{Start: m(12), End: m(13)}, // 1 in the third
	}
	d := deltasOf(waits)
	values, reached := seriesValues(d, m(0), m(15), 3)
	if want := []int{1, 2, 1}; !slices.Equal(values, want) {
		t.Fatalf("values %v, want %v", values, want)
	}
	if want := []time.Time{m(1), m(8), m(12)}; !slices.Equal(reached, want) {
		t.Errorf("reached %v, want %v", reached, want)
	}
	c := seriesChartOf("q", "queue", "Pending build requests", values, reached, countAt(d, m(15)), m(0), m(15))
	if c.Peak != 2 || c.PeakAt != "12:08" || !strings.Contains(c.Desc, "highest 2 (at 12:08)") {
		t.Errorf("peak %d at %q (%s), want 2 at 12:08, when the second request came, not 12:05", c.Peak, c.PeakAt, c.Desc)
	}
	// A count already at its peak when a slice starts was reached then.
	values, reached = seriesValues(deltasOf([]interval{{Start: m(-3)}}), m(0), m(15), 3)
	if !slices.Equal(values, []int{1, 1, 1}) || !reached[0].Equal(m(0)) {
		t.Errorf("a request waiting since before the window: %v reached %v, want 1s from 12:00", values, reached)
	}
}

// TestWaterfallDense: 60 builds within a second, each a step of a few
// ms: one after another (two workers taking turns), or all at once (60
// workers). Every box keeps at least wfMinBox by wfMinLaneW-2 px inside its
// column, every step a width >= 0 inside its box, and no number is
// negative or NaN. Builds that never ran at once get a row each, in one
// lane, not two pixels of time and dozens of lanes; builds that did get
// lanes of at least wfMinLaneW, the column widening.
func TestWaterfallDense(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		every time.Duration // between starts
		after time.Duration // when builder "after"'s 2 s build starts
		lanes int           // at most
	}{
		{"one after another", 15 * time.Millisecond, 10 * time.Second, 1},
		// The long build shares the busy span: the stretch is spread
		// over its 2 s, a few lanes remain.
		{"one after another beside a long build", 15 * time.Millisecond, 0, 4},
		{"all at once", 0, 0, 60},
	} {
		t.Run(tt.name, func(t *testing.T) {
			builders := []store.Builder{{ID: 1, Name: "dense"}, {ID: 2, Name: "after"}}
			var builds []wfBuild
			for i := range 60 {
				b := build(int64(i+1), int64(i+1), time.Duration(i)*tt.every, 14*time.Millisecond, store.Success)
				b.WorkerID = int64(1 + i%2)
				builds = append(builds, wfBuild{Build: b, Steps: []store.Step{
					{Number: 0, StartedAt: b.StartedAt.Add(time.Millisecond), Complete: true, CompleteAt: b.CompleteAt.Add(-time.Millisecond), Results: store.Success},
				}})
			}
			a := build(61, 1, tt.after, 2*time.Second, store.Success)
			a.BuilderID = 2
			builds = append(builds, wfBuild{Build: a})
			w := waterfallOf(builders, builds, t0.Add(time.Minute), hrefOf, func(store.Builder) string { return "" })
			bad := func(v float64) bool { return v < 0 || math.IsNaN(v) || math.IsInf(v, 0) }
			for i, c := range w.Columns {
				if bad(c.X) || c.W < wfColW || (i > 0 && c.X < w.Columns[i-1].X+w.Columns[i-1].W) {
					t.Errorf("column %d at x %.1f w %.1f overlaps the one before or is narrow", i, c.X, c.W)
				}
			}
			if last := w.Columns[len(w.Columns)-1]; float64(w.Width) < last.X+last.W {
				t.Errorf("width %d cuts the last column (to %.1f)", w.Width, last.X+last.W)
			}
			if len(w.Boxes) != 61 {
				t.Fatalf("%d boxes, want 61", len(w.Boxes))
			}
			xs := map[float64]bool{}
			for _, b := range w.Boxes {
				c := w.Columns[0]
				if b.ID == 61 {
					c = w.Columns[1]
				} else {
					xs[b.X] = true
				}
				if bad(b.X) || bad(b.Y) || b.W < wfMinLaneW-2 || b.H < wfMinBox || b.X < c.X || b.X+b.W > c.X+c.W {
					t.Errorf("build %d: box x %.1f y %.1f w %.1f h %.1f, want at least %d x %d inside its column (x %.1f w %.1f)", b.ID, b.X, b.Y, b.W, b.H, wfMinLaneW-2, wfMinBox, c.X, c.W)
				}
				for _, st := range b.Steps {
					if bad(st.X) || bad(st.Y) || bad(st.W) || bad(st.H) || st.W < 1 || st.X < b.X || st.X+st.W > b.X+b.W {
						t.Errorf("build %d: step x %.1f y %.1f w %.1f h %.1f, not inside its box x %.1f w %.1f", b.ID, st.X, st.Y, st.W, st.H, b.X, b.W)
					}
				}
			}
			if len(xs) > tt.lanes {
				t.Errorf("the dense builds take %d lanes, want at most %d", len(xs), tt.lanes)
			}
			for i := 1; i < len(w.Ticks); i++ {
				if w.Ticks[i].Label > w.Ticks[i-1].Label {
					t.Errorf("time labels go up the page: %q above %q", w.Ticks[i-1].Label, w.Ticks[i].Label)
				}
			}
		})
	}
}

// TestWaterfallGeometry: builders as columns, the newest build on top,
// boxes as tall as their builds (at the same scale), steps inside their
// boxes, overlapping builds of one builder side by side, and a long idle
// span shrunk to a mark.
func TestWaterfallGeometry(t *testing.T) {
	t.Parallel()
	builders := []store.Builder{{ID: 1, Name: "a"}, {ID: 2, Name: "b"}}
	s := func(n int) time.Duration { return time.Duration(n) * time.Second }
	mk := func(id, builder int64, start, d int) wfBuild {
		b := build(id, id, s(start), s(d), store.Success)
		b.BuilderID = builder
		return wfBuild{Build: b, Steps: []store.Step{
			{Number: 0, StartedAt: b.StartedAt, Complete: true, CompleteAt: b.StartedAt.Add(s(d) / 2), Results: store.Success},
			{Number: 1, StartedAt: b.StartedAt.Add(s(d) / 2), Complete: true, CompleteAt: b.CompleteAt, Results: store.Failure},
		}}
	}
	builds := []wfBuild{
		mk(1, 1, 0, 100),     // a, then idle for hours
		mk(2, 1, 10000, 60),  // a
		mk(3, 1, 10030, 60),  // a, overlapping 2: a second lane
		mk(4, 2, 10000, 200), // b
	}
	builds[0].Build.Results = store.Failure
	w := waterfallOf(builders, builds, t0.Add(s(20000)), hrefOf, func(b store.Builder) string { return "builders/" + b.Name })
	if len(w.Columns) != 2 || w.Columns[0].Name != "a" || w.Columns[1].Href != "builders/b" {
		t.Fatalf("columns %+v", w.Columns)
	}
	box := map[int64]wfBox{}
	for _, b := range w.Boxes {
		box[b.ID] = b
	}
	if len(box) != 4 || w.Boxes[0].ID != 4 {
		t.Fatalf("boxes %v, want 4, newest first", w.Boxes)
	}
	inCol := func(b wfBox, c int) bool {
		return b.X >= w.Columns[c].X && b.X+b.W <= w.Columns[c].X+w.Columns[c].W
	}
	if !inCol(box[1], 0) || !inCol(box[2], 0) || !inCol(box[3], 0) || !inCol(box[4], 1) {
		t.Errorf("boxes outside their builders' columns: %+v", w.Boxes)
	}
	// Newest on top: build 1 (hours before) is below the others.
	if !(box[1].Y > box[4].Y+box[4].H) {
		t.Errorf("the oldest build (y %.1f) is not below the newest (y %.1f h %.1f)", box[1].Y, box[4].Y, box[4].H)
	}
	// The same scale: 200 s is twice 100 s, 60 s is 0.3 of 200 s.
	if !near(box[4].H, 2*box[1].H) || !near(box[2].H, 0.3*box[4].H) {
		t.Errorf("heights %.1f (100 s), %.1f (60 s), %.1f (200 s): not to scale", box[1].H, box[2].H, box[4].H)
	}
	// Build 3 started 30 s after 2, both on builder a: side by side.
	if box[2].X == box[3].X || box[2].Y <= box[3].Y {
		t.Errorf("overlapping builds 2 (x %.1f y %.1f) and 3 (x %.1f y %.1f) not side by side, 3 above", box[2].X, box[2].Y, box[3].X, box[3].Y)
	}
	// The idle hours take one mark, not their time.
	if len(w.Gaps) != 1 || !strings.HasPrefix(w.Gaps[0].Label, "idle 2h") {
		t.Errorf("gaps %+v, want one of 2h43m", w.Gaps)
	}
	if box[1].Y-(box[4].Y+box[4].H) > wfGap+1 {
		t.Errorf("the idle span takes %.1f px, want at most %d", box[1].Y-(box[4].Y+box[4].H), wfGap)
	}
	for id, b := range box {
		if len(b.Steps) != 2 {
			t.Errorf("build %d: %d steps", id, len(b.Steps))
			continue
		}
		first, second := b.Steps[0], b.Steps[1]
		// The first step is at the bottom half (time flows down), the second above it.
		if first.Class != "success" || second.Class != "failure" || !near(second.Y+second.H, first.Y) ||
			!near(second.Y, b.Y) || !near(first.Y+first.H, b.Y+b.H) || first.X < b.X || first.X+first.W > b.X+b.W {
			t.Errorf("build %d box %+v: steps %+v", id, b.chartBar, b.Steps)
		}
		if b.Href != fmt.Sprintf("b/%d", id) {
			t.Errorf("build %d links %q", id, b.Href)
		}
	}
	if box[1].Class != "failure" || box[4].Class != "success" {
		t.Errorf("classes %q %q", box[1].Class, box[4].Class)
	}
	if w.Height < int(box[1].Y+box[1].H) {
		t.Errorf("height %d cuts the lowest box (to %.1f)", w.Height, box[1].Y+box[1].H)
	}
	// Short builds keep a box tall enough for their label.
	short := waterfallOf(builders, []wfBuild{mk(9, 2, 0, 1), mk(10, 2, 5000, 100)}, t0.Add(s(6000)), hrefOf, func(store.Builder) string { return "" })
	for _, b := range short.Boxes {
		if b.H < wfMinBox {
			t.Errorf("build %d: box %.1f px tall, want at least %d", b.ID, b.H, wfMinBox)
		}
	}
}
