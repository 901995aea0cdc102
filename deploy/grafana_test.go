package deploy_test

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gbb-ci/gbb/pkg/metrics"
	"github.com/gbb-ci/gbb/pkg/store"
)

// exportedMetrics returns the names a master's /metrics can hold: each
// family's, and a histogram's _bucket, _sum and _count. Every hook is
// driven once, so that the labelled families exist.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New(metrics.Config{
		Pending:      func() (int, time.Time, error) { return 1, time.Now(), nil },
		Workers:      func() []metrics.WorkerState { return []metrics.WorkerState{{Name: "w"}} },
		StoreSize:    func() (int64, error) { return 1, nil },
		Builder:      func(int64) (string, bool) { return "b", true },
		BuildBuilder: func(int64) (int64, bool) { return 1, true },
		Streams:      func() int { return 1 },
	})
	now := time.Now()
	tap := m.Tap(nil)
	tap.Publish("buildrequests/1/claimed", store.BuildRequest{ID: 1, BuilderID: 1, SubmittedAt: now, ClaimedAt: now})
	tap.Publish("builds/1/new", store.Build{ID: 1, BuilderID: 1, StartedAt: now})
	tap.Publish("steps/1/finished", store.Step{ID: 1, BuildID: 1, StartedAt: now, CompleteAt: now})
	tap.Publish("builds/1/finished", store.Build{ID: 1, BuilderID: 1, StartedAt: now, CompleteAt: now})
	m.Commit(time.Millisecond)
	m.LogBytes(1)
	m.Poll("p", time.Second, errors.New("x"))
	m.Delivery("r", nil)
	m.Delivery("r", errors.New("x"))
	m.HTTP("/", "GET", 200, time.Millisecond)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

// promqlMetrics returns the metric names a PromQL expression reads: its
// identifiers that are not functions, keywords, label names (inside {} or
// after by/without/on/ignoring), strings, durations or numbers.
func promqlMetrics(expr string) []string {
	strip := func(re, s string) string { return regexp.MustCompile(re).ReplaceAllString(s, " ") }
	e := strip(`"(?:[^"\\]|\\.)*"`, expr)
	e = strip(`\{[^}]*\}`, e)
	e = strip(`\[[^\]]*\]`, e)
	e = strip(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`, e)
	e = strip(`\$\w+`, e)
	e = strip(`\b\d+(?:\.\d+)?(?:ms|[smhdwy])?\b`, e)
	var out []string
	for _, m := range regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`).FindAllStringSubmatch(e, -1) {
		id := strings.TrimRight(m[0], " (")
		if m[1] != "" || slices.Contains([]string{"by", "without", "on", "ignoring", "bool", "and", "or", "unless", "offset", "group_left", "group_right", "inf", "nan"}, strings.ToLower(id)) {
			continue // a function or aggregation, or a keyword
		}
		out = append(out, id)
	}
	return out
}

// TestGrafanaDashboard: deploy/grafana/gbb.json is a dashboard whose every
// PromQL expression (panels' targets and the template variables' queries)
// reads only metrics the master exports, and that shows the queue, the
// wait, the results by builder and the workers' use.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("grafana/gbb.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("gbb.json: %v", err)
	}
	exported := exportedMetrics(t)
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if d, ok := strings.CutPrefix(v.Definition, "label_values("); ok {
			exprs = append(exprs, strings.TrimSuffix(d[:strings.LastIndex(d, ",")], ")"))
		}
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := promqlMetrics(e)
		if len(names) == 0 {
			t.Errorf("expression reads no metric: %s", e)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("expression reads %s, which the master does not export: %s", n, e)
			}
		}
	}
	for _, want := range []string{"gbb_buildrequests_pending", "gbb_buildrequest_wait_seconds_bucket", "gbb_builds_finished_total", "gbb_worker_busy"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// TestPromqlMetrics checks the expression reader on what it must skip.
func TestPromqlMetrics(t *testing.T) {
	t.Parallel()
	got := promqlMetrics(`histogram_quantile(0.95, sum by (builder, le) (rate(gbb_x_bucket{builder=~"$b",le!="1"}[$__rate_interval]))) / on (builder) group_left gbb_y offset 5m`)
	if want := []string{"gbb_x_bucket", "gbb_y"}; !slices.Equal(got, want) {
		t.Errorf("promqlMetrics = %q, want %q", got, want)
	}
}

// TestGrafanaUnits: each query of the dashboard is drawn in the unit its
// metrics' names give (Prometheus names carry their base unit): a
// _seconds metric in a time unit, a _bytes gauge in bytes and its rate in
// bytes per second, a count in no time or byte unit. The unit of a query
// is its panel's default or an override naming its refId.
func TestGrafanaUnits(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("grafana/gbb.json")
	if err != nil {
		t.Fatal(err)
	}
	type property struct {
		ID    string
		Value any
	}
	var dash struct {
		Panels []struct {
			Title       string
			FieldConfig struct {
				Defaults  struct{ Unit string }
				Overrides []struct {
					Matcher struct {
						ID      string
						Options any
					}
					Properties []property
				}
			}
			Targets []struct{ RefID, Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("gbb.json: %v", err)
	}
	timeUnits := []string{"s", "ms", "dtdurations", "dtdurationms"}
	byteUnits := []string{"bytes", "decbytes"}
	rateByteUnits := []string{"Bps", "binBps"}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			unit := p.FieldConfig.Defaults.Unit
			for _, o := range p.FieldConfig.Overrides {
				if o.Matcher.ID != "byFrameRefID" || o.Matcher.Options != tg.RefID {
					continue
				}
				for _, pr := range o.Properties {
					if u, ok := pr.Value.(string); ok && pr.ID == "unit" {
						unit = u
					}
				}
			}
			for _, n := range promqlMetrics(tg.Expr) {
				base := n
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, s)
				}
				counter := strings.HasSuffix(base, "_total")
				base = strings.TrimSuffix(base, "_total")
				var want []string
				switch {
				case strings.HasSuffix(base, "_seconds") && !counter:
					want = timeUnits
				case strings.HasSuffix(base, "_bytes") && counter:
					want = rateByteUnits
				case strings.HasSuffix(base, "_bytes"):
					want = byteUnits
				default:
					if slices.Contains(timeUnits, unit) || slices.Contains(byteUnits, unit) || slices.Contains(rateByteUnits, unit) {
						t.Errorf("panel %q query %s reads %s, a count, drawn in unit %q", p.Title, tg.RefID, n, unit)
					}
					continue
				}
				if !slices.Contains(want, unit) {
					t.Errorf("panel %q query %s reads %s, drawn in unit %q, want one of %q", p.Title, tg.RefID, n, unit, want)
				}
			}
		}
	}
}
