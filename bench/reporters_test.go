package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reportersConfig is appended to the gbb config of the reporters row:
// three reporters against one endpoint that takes 200 ms per call, each
// reporting every build's start and end.
const reportersConfig = `
[[reporters]]
type = "http_status_push"
name = "push-1"
url = "%[1]s/push1"
report_start = true

[[reporters]]
type = "http_status_push"
name = "push-2"
url = "%[1]s/push2"
report_start = true
bearer_token = "t0k3n"

[[reporters]]
type = "chat_webhook"
url = "%[1]s/chat"
mode = "all"
report_start = true
`

// gbbReporting is gbb with reportersConfig pointing at hook.
type gbbReporting struct {
	gbb
	hook string
}

func (g gbbReporting) prepare(b *testing.B, inst *instance, o options) {
	g.gbb.prepare(b, inst, o)
	f, err := os.OpenFile(filepath.Join(inst.dir, "master", "master.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, reportersConfig, g.hook); err != nil {
		b.Fatal(err)
	}
}

// buildRate forces n builds of "quick" from 8 clients and returns the
// builds per second until the last is complete, as BenchmarkThroughput.
func buildRate(b *testing.B, inst *instance, n int) float64 {
	t0 := time.Now()
	brids := make(chan int64, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				brids <- inst.force(b, "quick")
			}
		})
	}
	wg.Wait()
	close(brids)
	pending := make([]int64, 0, n)
	for id := range brids {
		pending = append(pending, id)
	}
	waitUntil(b, "reporters row builds", 60*time.Minute, 50*time.Millisecond, func() bool {
		for len(pending) > 0 && inst.requestComplete(b, pending[len(pending)-1]) {
			pending = pending[:len(pending)-1]
		}
		return len(pending) == 0
	})
	return float64(n) / time.Since(t0).Seconds()
}

// BenchmarkReporters: builds/s with three reporters against a slow
// endpoint (200 ms a call) stays within 10 % of builds/s with none: the
// reporters deliver from the store's outbox in goroutines of their own,
// and a build only writes its outbox entry. Runs alternate, three of each;
// the row compares the medians.
func BenchmarkReporters(b *testing.B) {
	once(b, "reporters", func(b *testing.B) {
		var calls atomic.Int64
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			select {
			case <-time.After(200 * time.Millisecond): // the slow endpoint under test
			case <-r.Context().Done():
			}
		}))
		defer hook.Close()
		n := cfg().builds
		rates := sample{}
		for round := range 3 {
			for _, sys := range []system{gbb{}, gbbReporting{hook: hook.URL}} {
				name := "none"
				if _, ok := sys.(gbbReporting); ok {
					name = "three"
				}
				inst, _ := launch(b, sys, options{workers: cfg().workers})
				forceAndWait(b, inst, "quick")
				rate := buildRate(b, inst, n)
				rates[name] = append(rates[name], rate)
				b.Logf("round %d, %s reporters: %d builds, %.1f builds/s (endpoint calls so far: %d)", round+1, name, n, rate, calls.Load())
				inst.stop()
			}
		}
		none, three := *rates.med("none"), *rates.med("three")
		record("8 reporters", fmt.Sprintf("%d builds over %d workers, no reporter", n, cfg().workers), "builds/s",
			none, nil, noTarget, rates["none"], nil, "")
		record("8 reporters", fmt.Sprintf("%d builds over %d workers, three reporters on a 200 ms endpoint, over none", n, cfg().workers), "ratio",
			three/none, nil, higherThan("≥ 0.9 (within 10 %)", 0, 0.9), rates["three"], nil,
			fmt.Sprintf("builds/s with three reporters: %v; with none: %v", rates["three"], rates["none"]))
		b.ReportMetric(three/none, "reporters-ratio")
	})
}
