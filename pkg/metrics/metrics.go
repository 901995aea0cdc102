package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gbb-ci/gbb/pkg/store"
)

// Results names buildbot's result codes as the label result does:
// SUCCESS 0 … CANCELLED 6.
var Results = []string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}

// resultName names a result code; a code out of range is "unknown", so
// that no value of a record makes a label of its own.
func resultName(r int) string {
	if r >= 0 && r < len(Results) {
		return Results[r]
	}
	return "unknown"
}

// WorkerState is one configured worker at scrape time.
type WorkerState struct {
	Name      string
	Connected bool
	Busy      bool // runs a build of this master
	Paused    bool
}

// Config is what the gauges read at scrape time. Each func may be nil
// (the gauge is then not exported).
type Config struct {
	// Pending returns the build requests waiting for a build and the
	// submission time of the oldest one (zero when none waits).
	Pending func() (n int, oldest time.Time, err error)
	// Workers returns the configured workers (only those: the label
	// worker is bounded by the config).
	Workers func() []WorkerState
	// StoreSize returns the store's size in bytes.
	StoreSize func() (int64, error)
	// Builder names the builder of a store id, for the label builder of
	// the builds' and steps' metrics; false drops the observation.
	Builder func(id int64) (string, bool)
	// BuildBuilder returns the builder id of a build, for a step whose
	// build started before this master (the running builds' are known).
	BuildBuilder func(buildID int64) (int64, bool)
	// Streams returns the workers' gRPC streams open now.
	Streams func() int
}

// Metrics is one master's metrics and their registry. The zero value is
// not usable; a nil *Metrics counts nothing (every method is a no-op), so
// that components made without metrics need no check. It is safe for
// concurrent use.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	buildsStarted  *prometheus.CounterVec
	buildsFinished *prometheus.CounterVec
	buildDuration  *prometheus.HistogramVec
	stepDuration   *prometheus.HistogramVec
	requestWait    *prometheus.HistogramVec
	logBytes       prometheus.Counter
	commitLatency  prometheus.Histogram
	pollerRuns     *prometheus.CounterVec
	pollerErrors   *prometheus.CounterVec
	pollerDuration *prometheus.HistogramVec
	deliveries     *prometheus.CounterVec
	deliveryFails  *prometheus.CounterVec
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec

	mu     sync.Mutex
	builds map[int64]int64 // guarded by mu; running build id → builder id
}

// durationBuckets are the buckets of the builds' and steps' durations and
// of the wait for a build, in seconds: 0.1s to about 3h.
var durationBuckets = []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 10800}

// New makes the metrics of one master in a registry of their own, with
// the Go runtime's and the process's collectors. It starts no goroutine.
func New(cfg Config) *Metrics {
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry(), builds: map[int64]int64{}}
	f := factory{m.reg}
	m.buildsStarted = f.counterVec("gbb_builds_started_total", "Builds started, by builder.", "builder")
	m.buildsFinished = f.counterVec("gbb_builds_finished_total", "Builds finished, by builder and result (buildbot's result names).", "builder", "result")
	m.buildDuration = f.histogramVec("gbb_build_duration_seconds", "Durations of the finished builds, by builder.", durationBuckets, "builder")
	m.stepDuration = f.histogramVec("gbb_step_duration_seconds", "Durations of the finished steps, by builder.", durationBuckets, "builder")
	m.requestWait = f.histogramVec("gbb_buildrequest_wait_seconds", "Time from a build request's submission to its claim by a build, by builder.", durationBuckets, "builder")
	m.logBytes = f.counter("gbb_log_bytes_total", "Bytes of build log output stored (before compression).")
	m.commitLatency = f.histogram("gbb_store_commit_duration_seconds", "Durations of the store's write transactions, commit and sync included.",
		[]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5})
	m.pollerRuns = f.counterVec("gbb_poller_runs_total", "Polls run, by change source.", "change_source")
	m.pollerErrors = f.counterVec("gbb_poller_errors_total", "Polls failed, by change source.", "change_source")
	m.pollerDuration = f.histogramVec("gbb_poller_duration_seconds", "Durations of the polls, by change source.",
		[]float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}, "change_source")
	m.deliveries = f.counterVec("gbb_reporter_deliveries_total", "Reports delivered, by reporter.", "reporter")
	m.deliveryFails = f.counterVec("gbb_reporter_failures_total", "Report tries that failed (retried or given up), by reporter.", "reporter")
	m.httpRequests = f.counterVec("gbb_http_requests_total", "HTTP requests answered, by route pattern, method and status code.", "route", "method", "code")
	m.httpDuration = f.histogramVec("gbb_http_request_duration_seconds", "Durations of the HTTP requests (live streams until they end), by route pattern.",
		prometheus.DefBuckets, "route")
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), scrapeTime{m})
	return m
}

// Handler serves the metrics in Prometheus's formats (the text format, or
// what the scraper asks for).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry returns the registry, for tests and benchmarks that gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// InitBuilders makes the builds' counters of builders exist at zero for
// every result, so that a rate over a new builder starts from its first
// build rather than its second.
func (m *Metrics) InitBuilders(names []string) {
	if m == nil {
		return
	}
	for _, b := range names {
		m.buildsStarted.WithLabelValues(b)
		for _, r := range Results {
			m.buildsFinished.WithLabelValues(b, r)
		}
	}
}

// Publish observes a store event: the store's Publisher is the bus wrapped
// by Tap, so every committed build, step, claim and log append is counted
// once, after its commit, in commit order.
func (m *Metrics) observe(key string, record any) {
	switch r := record.(type) {
	case store.Build:
		switch {
		case hasSuffix(key, "builds/", "/new"):
			m.mu.Lock()
			m.builds[r.ID] = r.BuilderID
			m.mu.Unlock()
			if name, ok := m.builder(r.BuilderID); ok {
				m.buildsStarted.WithLabelValues(name).Inc()
			}
		case hasSuffix(key, "builds/", "/finished"):
			m.mu.Lock()
			delete(m.builds, r.ID)
			m.mu.Unlock()
			if name, ok := m.builder(r.BuilderID); ok {
				m.buildsFinished.WithLabelValues(name, resultName(r.Results)).Inc()
				if !r.StartedAt.IsZero() && !r.CompleteAt.IsZero() {
					m.buildDuration.WithLabelValues(name).Observe(r.CompleteAt.Sub(r.StartedAt).Seconds())
				}
			}
		}
	case store.Step:
		if !hasSuffix(key, "steps/", "/finished") || r.StartedAt.IsZero() || r.CompleteAt.IsZero() {
			return
		}
		m.mu.Lock()
		bid, ok := m.builds[r.BuildID]
		m.mu.Unlock()
		if !ok && m.cfg.BuildBuilder != nil {
			bid, ok = m.cfg.BuildBuilder(r.BuildID)
		}
		if !ok {
			return
		}
		if name, ok := m.builder(bid); ok {
			m.stepDuration.WithLabelValues(name).Observe(r.CompleteAt.Sub(r.StartedAt).Seconds())
		}
	case store.BuildRequest:
		if !hasSuffix(key, "buildrequests/", "/claimed") || r.ClaimedAt.IsZero() {
			return
		}
		if name, ok := m.builder(r.BuilderID); ok {
			m.requestWait.WithLabelValues(name).Observe(max(r.ClaimedAt.Sub(r.SubmittedAt), 0).Seconds())
		}
	}
}

// hasSuffix reports whether key is prefix + id + suffix: each record is
// published under several keys, and only one of them is counted.
func hasSuffix(key, prefix, suffix string) bool {
	if len(key) <= len(prefix)+len(suffix) || key[:len(prefix)] != prefix || key[len(key)-len(suffix):] != suffix {
		return false
	}
	_, err := strconv.ParseInt(key[len(prefix):len(key)-len(suffix)], 10, 64)
	return err == nil
}

func (m *Metrics) builder(id int64) (string, bool) {
	if m.cfg.Builder == nil {
		return "", false
	}
	return m.cfg.Builder(id)
}

// Tap returns a store.Publisher that counts each event, then hands it to
// next (nil: to no one). With a nil m it returns next.
func (m *Metrics) Tap(next store.Publisher) store.Publisher {
	if m == nil {
		return next
	}
	return tap{m: m, next: next}
}

type tap struct {
	m    *Metrics
	next store.Publisher
}

func (t tap) Publish(key string, record any) {
	t.m.observe(key, record)
	if t.next != nil {
		t.next.Publish(key, record)
	}
}

// PublishRemote passes on an event of another master sharing the store,
// without counting it: that master counts it.
func (t tap) PublishRemote(key string, record any) {
	if t.next != nil {
		t.next.Publish(key, record)
	}
}

// Commit observes one write transaction of the store (store.Options.OnCommit).
func (m *Metrics) Commit(d time.Duration) {
	if m != nil {
		m.commitLatency.Observe(d.Seconds())
	}
}

// LogBytes counts n bytes of log output stored (store.Options.OnLog).
func (m *Metrics) LogBytes(n int) {
	if m != nil {
		m.logBytes.Add(float64(n))
	}
}

// Poll observes one poll of the change source called name.
func (m *Metrics) Poll(name string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.pollerRuns.WithLabelValues(name).Inc()
	m.pollerDuration.WithLabelValues(name).Observe(d.Seconds())
	if err != nil {
		m.pollerErrors.WithLabelValues(name).Inc()
	}
}

// Delivery observes one try of the reporter called name: err nil is a
// delivery, anything else a failure.
func (m *Metrics) Delivery(name string, err error) {
	if m == nil {
		return
	}
	if err == nil {
		m.deliveries.WithLabelValues(name).Inc()
	} else {
		m.deliveryFails.WithLabelValues(name).Inc()
	}
}

// HTTP observes one request answered: route is the router's pattern
// ("/api/v2/builds/{id}"), never the request's path, or "" when no route
// matched.
func (m *Metrics) HTTP(route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions:
	default:
		method = "other" // a method is the client's to choose
	}
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// scrapeTime is the collector of the gauges read when scraped.
type scrapeTime struct{ m *Metrics }

var (
	descPending       = prometheus.NewDesc("gbb_buildrequests_pending", "Build requests waiting for a build (neither claimed nor complete).", nil, nil)
	descOldestPending = prometheus.NewDesc("gbb_buildrequest_oldest_pending_age_seconds", "Age of the oldest build request waiting for a build; 0 when none waits.", nil, nil)
	descConnected     = prometheus.NewDesc("gbb_worker_connected", "1 when the configured worker is connected to this master.", []string{"worker"}, nil)
	descBusy          = prometheus.NewDesc("gbb_worker_busy", "1 when the configured worker runs a build of this master.", []string{"worker"}, nil)
	descPaused        = prometheus.NewDesc("gbb_worker_paused", "1 when the configured worker is paused.", []string{"worker"}, nil)
	descStoreSize     = prometheus.NewDesc("gbb_store_size_bytes", "Size of the store's database.", nil, nil)
	descStreams       = prometheus.NewDesc("gbb_worker_streams", "Worker streams open, by protocol.", []string{"protocol"}, nil)
)

func (c scrapeTime) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descOldestPending, descConnected, descBusy, descPaused, descStoreSize, descStreams} {
		ch <- d
	}
}

func (c scrapeTime) Collect(ch chan<- prometheus.Metric) {
	cfg := c.m.cfg
	if cfg.Pending != nil {
		if n, oldest, err := cfg.Pending(); err == nil {
			ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(n))
			age := 0.0
			if !oldest.IsZero() {
				age = max(time.Since(oldest).Seconds(), 0)
			}
			ch <- prometheus.MustNewConstMetric(descOldestPending, prometheus.GaugeValue, age)
		} else {
			ch <- prometheus.NewInvalidMetric(descPending, err)
		}
	}
	if cfg.Workers != nil {
		for _, w := range cfg.Workers() {
			ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, b2f(w.Connected), w.Name)
			ch <- prometheus.MustNewConstMetric(descBusy, prometheus.GaugeValue, b2f(w.Busy), w.Name)
			ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, b2f(w.Paused), w.Name)
		}
	}
	if cfg.Streams != nil {
		ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(cfg.Streams()), "grpc")
	}
	if cfg.StoreSize != nil {
		if n, err := cfg.StoreSize(); err == nil {
			ch <- prometheus.MustNewConstMetric(descStoreSize, prometheus.GaugeValue, float64(n))
		} else {
			ch <- prometheus.NewInvalidMetric(descStoreSize, err)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// factory registers the metrics it makes in reg.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
