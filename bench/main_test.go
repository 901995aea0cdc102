package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// settings are read from the environment once; see BENCHMARKS.md.
type settings struct {
	quick       bool   // GBB_BENCH_QUICK=1: small counts for a quick run
	buildbot    bool   // GBB_BENCH_BUILDBOT=0 skips the buildbot side
	inproc      bool   // GBB_BENCH_INPROC=1 runs the gbb master inside the test process (for -cpuprofile)
	runs        int    // GBB_BENCH_RUNS: start-up runs per system
	latencyN    int    // GBB_BENCH_LATENCY_N: forced builds per system for the latency
	builds      int    // GBB_BENCH_BUILDS: builds of the throughput scenario
	bbBuilds    int    // GBB_BENCH_BUILDBOT_BUILDS: the same for buildbot; default builds
	workers     int    // GBB_BENCH_WORKERS: workers of the throughput scenario
	logMB       int    // GBB_BENCH_LOG_MB: size of the log scenario's output
	storeBuilds int    // GBB_BENCH_STORE_BUILDS: builds in the big store (10 log lines each)
	queries     int    // GBB_BENCH_QUERIES: samples per API query on the big store
	changes     int    // GBB_BENCH_CHANGES: commits and webhook posts per system
	sims        int    // GBB_BENCH_SIMS: simulated workers of the many-workers scenario
	logSteps    int    // GBB_BENCH_LOG_STEPS: log steps at once in the concurrent-logs scenario
	pending     int    // GBB_BENCH_PENDING: pending requests in the store for the pending start-up
	jsonPath    string // GBB_BENCH_JSON: where the results go
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

var cfg = sync.OnceValue(func() settings {
	q := os.Getenv("GBB_BENCH_QUICK") == "1"
	pick := func(full, quick int) int {
		if q {
			return quick
		}
		return full
	}
	s := settings{
		quick:       q,
		buildbot:    os.Getenv("GBB_BENCH_BUILDBOT") != "0",
		inproc:      os.Getenv("GBB_BENCH_INPROC") == "1",
		runs:        envInt("GBB_BENCH_RUNS", pick(5, 2)),
		latencyN:    envInt("GBB_BENCH_LATENCY_N", pick(200, 10)), // p99 of 50 is the slowest one
		builds:      envInt("GBB_BENCH_BUILDS", pick(1000, 100)),
		bbBuilds:    envInt("GBB_BENCH_BUILDBOT_BUILDS", envInt("GBB_BENCH_BUILDS", pick(1000, 100))),
		workers:     envInt("GBB_BENCH_WORKERS", 10),
		logMB:       envInt("GBB_BENCH_LOG_MB", pick(100, 10)),
		storeBuilds: envInt("GBB_BENCH_STORE_BUILDS", pick(100000, 5000)),
		queries:     envInt("GBB_BENCH_QUERIES", pick(200, 50)),
		changes:     envInt("GBB_BENCH_CHANGES", pick(5, 2)),
		sims:        envInt("GBB_BENCH_SIMS", 1000),
		logSteps:    envInt("GBB_BENCH_LOG_STEPS", 20),
		pending:     envInt("GBB_BENCH_PENDING", 10000),
		jsonPath:    os.Getenv("GBB_BENCH_JSON"),
	}
	if s.jsonPath == "" {
		s.jsonPath = "results.json"
		if q {
			s.jsonPath = filepath.Join(os.TempDir(), "gbb-bench-results-quick.json")
		}
	}
	return s
})

// result is one row of the table.
type result struct {
	Scenario string    `json:"scenario"`
	Metric   string    `json:"metric"`
	Unit     string    `json:"unit"`
	GBB      float64   `json:"gbb"`
	Buildbot *float64  `json:"buildbot,omitempty"`
	Ratio    *float64  `json:"ratio,omitempty"` // gbb / buildbot
	Target   string    `json:"target"`
	Met      *bool     `json:"met,omitempty"`
	Samples  []float64 `json:"gbb_samples,omitempty"`
	BBSample []float64 `json:"buildbot_samples,omitempty"`
	Note     string    `json:"note,omitempty"`
}

// target checks a row: given gbb's value and buildbot's (ok false when
// there is none), it says whether the target is met and whether it could
// tell.
type target struct {
	text  string
	check func(g, bb float64, hasBB bool) (met, known bool)
}

// lowerThan: gbb at most bb/factor (factor 0: no ratio) and under abs (0: none).
func lowerThan(text string, factor, abs float64) target {
	return target{text, func(g, bb float64, hasBB bool) (bool, bool) {
		if factor > 0 && !hasBB {
			if abs > 0 {
				return g < abs, false
			}
			return false, false
		}
		ok := true
		if factor > 0 {
			ok = g <= bb/factor
		}
		if abs > 0 {
			ok = ok && g < abs
		}
		return ok, true
	}}
}

// higherThan: gbb at least factor×bb (factor 0: no ratio) and over abs.
func higherThan(text string, factor, abs float64) target {
	return target{text, func(g, bb float64, hasBB bool) (bool, bool) {
		if factor > 0 && !hasBB {
			return false, false
		}
		ok := true
		if factor > 0 {
			ok = g >= bb*factor
		}
		if abs > 0 {
			ok = ok && g >= abs
		}
		return ok, true
	}}
}

var noTarget = target{text: "—"}

var results struct {
	mu   sync.Mutex
	rows []result
	done map[string]bool
}

// record adds a row; bb is nil when buildbot was not measured.
func record(scenario, metric, unit string, g float64, bb *float64, t target, gs, bbs []float64, note string) {
	r := result{Scenario: scenario, Metric: metric, Unit: unit, GBB: round(g), Target: t.text, Samples: gs, BBSample: bbs, Note: note}
	if bb != nil {
		v := round(*bb)
		r.Buildbot = &v
		if *bb != 0 {
			ratio := math.Round(g / *bb * 10000) / 10000
			r.Ratio = &ratio
		}
	}
	if t.check != nil {
		var b float64
		if bb != nil {
			b = *bb
		}
		if met, known := t.check(g, b, bb != nil); known {
			r.Met = &met
		}
	}
	results.mu.Lock()
	defer results.mu.Unlock()
	results.rows = append(results.rows, r)
}

// once runs a scenario once per process, whatever b.N is: each scenario
// takes seconds to minutes and reports its own statistics.
func once(b *testing.B, name string, fn func(b *testing.B)) {
	b.Helper()
	results.mu.Lock()
	if results.done == nil {
		results.done = map[string]bool{}
	}
	seen := results.done[name]
	results.done[name] = true
	results.mu.Unlock()
	if seen {
		b.Skip("measured once already")
	}
	fn(b)
}

// compareScenarios orders scenarios by their leading number ("9 metrics
// cost" before "10 postgres"), then by name.
func compareScenarios(a, b string) int {
	num := func(s string) int {
		n, _ := strconv.Atoi(s[:len(s)-len(strings.TrimLeft(s, "0123456789"))])
		return n
	}
	if c := num(a) - num(b); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func round(v float64) float64 {
	switch a := math.Abs(v); {
	case a >= 100:
		return math.Round(v*10) / 10
	case a >= 1:
		return math.Round(v*1000) / 1000
	default:
		return math.Round(v*1e6) / 1e6
	}
}

// median and percentile of samples (nearest rank).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(xs []float64) float64 { return percentile(xs, 50) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ptr(v float64) *float64 { return &v }

func TestMain(m *testing.M) {
	flag.Parse()
	run := startRun()
	code := m.Run()
	// In the order, whatever order the benchmarks ran in.
	slices.SortStableFunc(results.rows, func(a, b result) int { return compareScenarios(a.Scenario, b.Scenario) })
	if len(results.rows) > 0 {
		run.finish()
		results.mu.Lock()
		run.Results = results.rows
		results.mu.Unlock()
		fmt.Println()
		fmt.Print(run.table())
		if err := run.write(cfg().jsonPath); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		} else {
			fmt.Println("results:", cfg().jsonPath)
		}
	}
	cleanupAll()
	os.Exit(code)
}

// runInfo is bench/results.json: where and when the bench ran, and its rows.
type runInfo struct {
	Commit    string     `json:"commit"` // git describe --always --dirty of the code measured
	CPU       string     `json:"cpu"`    // model name in /proc/cpuinfo
	Cores     int        `json:"cores"`
	MemGiB    float64    `json:"mem_gib"`
	OS        string     `json:"os"` // GOOS/GOARCH and kernel release
	Go        string     `json:"go"`
	Buildbot  string     `json:"buildbot,omitempty"` // Debian's package version, when it ran
	Started   time.Time  `json:"started"`
	Finished  time.Time  `json:"finished"`
	LoadStart [3]float64 `json:"load_start"` // /proc/loadavg at the start: 1, 5, 15 minutes
	LoadEnd   [3]float64 `json:"load_end"`
	Quick     bool       `json:"quick"`
	Args      string     `json:"args"` // the -test.bench pattern
	Results   []result   `json:"results"`
}

func loadavg() [3]float64 {
	var l [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(data))
	for i := range min(3, len(f)) {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// startRun describes the machine and the code before anything runs.
func startRun() *runInfo {
	r := &runInfo{
		Commit: "unknown", CPU: "unknown CPU", Cores: runtime.NumCPU(), Go: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Started: time.Now().UTC().Truncate(time.Second),
		LoadStart: loadavg(), Quick: cfg().quick,
	}
	if f := flag.Lookup("test.bench"); f != nil {
		r.Args = f.Value.String()
	}
	if out, err := exec.Command("git", "-C", "..", "describe", "--always", "--dirty", "--abbrev=7").Output(); err == nil {
		r.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		r.OS += " (Linux " + strings.TrimSpace(string(out)) + ")"
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				r.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				r.MemGiB = math.Round(kb/1024/1024*10) / 10
			}
		}
	}
	return r
}

func (r *runInfo) finish() {
	r.Finished = time.Now().UTC().Truncate(time.Second)
	r.LoadEnd = loadavg()
	if cfg().buildbot {
		if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "buildbot").Output(); err == nil {
			r.Buildbot = strings.TrimSpace(string(out))
		}
	}
}

func (r *runInfo) write(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func fmtVal(v float64) string { return strconv.FormatFloat(round(v), 'f', -1, 64) }

func fmtLoad(l [3]float64) string {
	return fmt.Sprintf("%.2f, %.2f, %.2f", l[0], l[1], l[2])
}

// table is the text README.md and BENCHMARKS.md keep between their
// bench-table markers: where the run was made, then its rows as a
// Markdown table.
func (r *runInfo) table() string {
	var b strings.Builder
	counts := "the full counts"
	if r.Quick {
		counts = "the quick counts (GBB_BENCH_QUICK=1)"
	}
	bb := ""
	if r.Buildbot != "" {
		bb = "; buildbot " + r.Buildbot + " (Debian)"
	}
	fmt.Fprintf(&b, "Run %s–%s UTC at commit `%s`, %s (`-bench %s`), on %d cores (%s), %.0f GiB RAM, %s, %s%s; load average (1, 5, 15 min) %s at the start, %s at the end.\n\n",
		r.Started.Format("2006-01-02 15:04"), r.Finished.Format("15:04"), r.Commit, counts, r.Args,
		r.Cores, r.CPU, r.MemGiB, r.OS, r.Go, bb, fmtLoad(r.LoadStart), fmtLoad(r.LoadEnd))
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| scenario\t metric\t gbb\t buildbot\t gbb/buildbot\t target\t met\t")
	fmt.Fprintln(w, "| ---\t ---\t ---\t ---\t ---\t ---\t ---\t")
	for _, x := range r.Results {
		bb, ratio, met := "—", "—", "—"
		if x.Buildbot != nil {
			bb = fmtVal(*x.Buildbot)
		}
		if x.Ratio != nil {
			ratio = fmtVal(*x.Ratio)
		}
		if x.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*x.Met]
		}
		fmt.Fprintf(w, "| %s\t %s (%s)\t %s\t %s\t %s\t %s\t %s\t\n", x.Scenario, x.Metric, x.Unit, fmtVal(x.GBB), bb, ratio, x.Target, met)
	}
	w.Flush()
	return b.String()
}
