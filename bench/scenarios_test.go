package bench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// systems returns gbb and, when it can run, buildbot.
func systems(b *testing.B) []system {
	out := []system{gbb{}}
	if bb := needBuildbot(b); bb != nil {
		out = append(out, bb)
	}
	return out
}

// sample keeps each system's samples.
type sample map[string][]float64

func (s sample) med(sys string) *float64 {
	if len(s[sys]) == 0 {
		return nil
	}
	return ptr(median(s[sys]))
}

func (s sample) pct(sys string, p float64) *float64 {
	if len(s[sys]) == 0 {
		return nil
	}
	return ptr(percentile(s[sys], p))
}

// BenchmarkStartup times exec → API answering with the worker attached,
// alternating gbb and buildbot, and reads both programs' idle RSS a second
// after each start.
func BenchmarkStartup(b *testing.B) {
	once(b, "startup", func(b *testing.B) {
		syss := systems(b)
		start, mrss, wrss := sample{}, sample{}, sample{}
		for run := range cfg().runs {
			for _, sys := range syss {
				inst, d := launch(b, sys, options{workers: 1})
				time.Sleep(time.Second)
				start[sys.name()] = append(start[sys.name()], ms(d))
				if !cfg().inproc {
					mrss[sys.name()] = append(mrss[sys.name()], status(inst.master.pid, "VmRSS"))
				}
				wrss[sys.name()] = append(wrss[sys.name()], status(inst.workerPs[0].pid, "VmRSS"))
				inst.stop()
				b.Logf("run %d: %s start-up %.1f ms", run, sys.name(), ms(d))
			}
		}
		record("1 start-up", "exec → API with worker attached, median", "ms", *start.med("gbb"), start.med("buildbot"),
			lowerThan("≤ 1/20 of buildbot, < 100 ms", 20, 100), start["gbb"], start["buildbot"], "")
		if !cfg().inproc {
			record("2 idle memory", "master RSS, median", "MB", *mrss.med("gbb"), mrss.med("buildbot"),
				lowerThan("≤ 1/4 of buildbot", 4, 0), mrss["gbb"], mrss["buildbot"], "")
		}
		record("2 idle memory", "worker RSS, median", "MB", *wrss.med("gbb"), wrss.med("buildbot"),
			lowerThan("≤ 1/4 of buildbot", 4, 0), wrss["gbb"], wrss["buildbot"], "")
		b.ReportMetric(*start.med("gbb"), "gbb-startup-ms")
	})
}

// forceAndWait forces one build of builder and waits for its request's
// complete event on /ws; it returns the time from the force POST to the
// event.
func forceAndWait(b *testing.B, inst *instance, builder string) time.Duration {
	b.Helper()
	ev := inst.events(b)
	t0 := time.Now()
	brid := inst.force(b, builder)
	return ev.waitComplete(b, brid, 10*time.Minute).Sub(t0)
}

// BenchmarkLatency forces one-step `true` builds, alternating the two
// systems (both up, one worker each), one at a time.
func BenchmarkLatency(b *testing.B) {
	once(b, "latency", func(b *testing.B) {
		var insts []*instance
		for _, sys := range systems(b) {
			inst, _ := launch(b, sys, options{workers: 1})
			insts = append(insts, inst)
			for range 2 { // warm up
				forceAndWait(b, inst, "quick")
			}
		}
		lat := sample{}
		for range cfg().latencyN {
			for _, inst := range insts {
				lat[inst.sys.name()] = append(lat[inst.sys.name()], ms(forceAndWait(b, inst, "quick")))
			}
		}
		t := lowerThan("≤ 1/10 of buildbot", 10, 0)
		note := fmt.Sprintf("%d builds each; completion seen as the request's complete event on /ws", cfg().latencyN)
		record("3 latency", "force → complete, median", "ms", *lat.med("gbb"), lat.med("buildbot"), t, lat["gbb"], lat["buildbot"], note)
		record("3 latency", "force → complete, p99", "ms", *lat.pct("gbb", 99), lat.pct("buildbot", 99), t, nil, nil, note)
		b.ReportMetric(*lat.med("gbb"), "gbb-latency-ms")
	})
}

// tpBuilders is the throughput scenario's builder count: with
// cfg().workers workers, each (builder, worker) pair runs one build at a
// time on both systems (buildbot's placement, and gbb's), so both run up to
// tpBuilders × workers builds at once.
const tpBuilders = 10

// BenchmarkThroughput forces N one-step builds, spread evenly over
// tpBuilders builders (8 clients), onto cfg().workers workers and times
// from the first force to the last request's complete event on /ws.
func BenchmarkThroughput(b *testing.B) {
	once(b, "throughput", func(b *testing.B) {
		tp := sample{}
		counts := map[string]int{}
		peaks := map[string]int{}
		for _, sys := range systems(b) {
			n := cfg().builds
			if sys.name() == "buildbot" {
				n = cfg().bbBuilds
			}
			counts[sys.name()] = n
			inst, _ := launch(b, sys, options{workers: cfg().workers, tpBuilders: tpBuilders})
			warmUp(b, inst)
			var cpu0 float64
			if !cfg().inproc {
				cpu0 = cpuSeconds(inst.master.pid)
			}
			d, forced, peak := runThroughput(b, inst, n)
			peaks[sys.name()] = peak
			rate := float64(n) / d.Seconds()
			tp[sys.name()] = append(tp[sys.name()], rate)
			msg := fmt.Sprintf("%s: %d builds in %v (forced in %v): %.1f builds/s, at most %d running at once", sys.name(), n, d.Round(time.Millisecond), forced.Round(time.Millisecond), rate, peaks[sys.name()])
			if !cfg().inproc {
				msg += fmt.Sprintf(", master CPU %.1f s", cpuSeconds(inst.master.pid)-cpu0)
			}
			b.Log(msg)
			inst.stop()
		}
		metric := fmt.Sprintf("%d builds, %d builders × %d workers", counts["gbb"], tpBuilders, cfg().workers)
		if c, ok := counts["buildbot"]; ok && c != counts["gbb"] {
			metric = fmt.Sprintf("%d (gbb) / %d (buildbot) builds, %d builders × %d workers", counts["gbb"], c, tpBuilders, cfg().workers)
		}
		note := fmt.Sprintf("one-step `true` builds; each (builder, worker) pair runs one build at a time on both (up to %d at once); first force → last request's complete event on /ws; most builds running at once: gbb %d", tpBuilders*cfg().workers, peaks["gbb"])
		if p, ok := peaks["buildbot"]; ok {
			note += fmt.Sprintf(", buildbot %d", p)
		}
		record("4 throughput", metric, "builds/s", *tp.med("gbb"), tp.med("buildbot"),
			higherThan("≥ 20× buildbot", 20, 0), nil, nil, note)
		b.ReportMetric(*tp.med("gbb"), "gbb-builds/s")
	})
}

// warmUp runs one build of each throughput builder on inst.
func warmUp(b *testing.B, inst *instance) {
	b.Helper()
	for k := range tpBuilders {
		forceAndWait(b, inst, fmt.Sprintf("t%d", k))
	}
}

// runThroughput forces n one-step builds on inst, spread over tpBuilders
// builders from 8 clients; it returns the time from the first force to the last request's complete
// event on /ws, the time the forces took, and the most builds running at
// once.
func runThroughput(b *testing.B, inst *instance, n int) (d, forced time.Duration, peak int) {
	b.Helper()
	ev := inst.events(b)
	t0 := time.Now()
	brids := make(chan int64, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(n) {
					return
				}
				brids <- inst.force(b, fmt.Sprintf("t%d", k%tpBuilders))
			}
		})
	}
	wg.Wait()
	close(brids)
	forced = time.Since(t0)
	var last time.Time
	for id := range brids {
		if at := ev.waitComplete(b, id, 60*time.Minute); at.After(last) {
			last = at
		}
	}
	return last.Sub(t0), forced, ev.peakRunning(t0)
}

// BenchmarkLogThroughput runs one step printing logMB MB (a real build's
// output, repeated: see buildLog)
// and reads the master's peak RSS (VmHWM) after it.
func BenchmarkLogThroughput(b *testing.B) {
	once(b, "logs", func(b *testing.B) {
		size := cfg().logMB << 20
		rate, hwm := sample{}, sample{}
		for _, sys := range systems(b) {
			inst, _ := launch(b, sys, options{workers: 1, logBytes: size})
			d := forceAndWait(b, inst, "log")
			r := float64(size) / (1 << 20) / d.Seconds()
			rate[sys.name()] = append(rate[sys.name()], r)
			if !cfg().inproc {
				hwm[sys.name()] = append(hwm[sys.name()], status(inst.master.pid, "VmHWM"))
			}
			b.Logf("%s: %d MB in %v: %.1f MB/s, master VmHWM %.1f MB", sys.name(), cfg().logMB, d.Round(time.Millisecond), r, status(inst.master.pid, "VmHWM"))
			inst.stop()
		}
		note := fmt.Sprintf("%d MB: testdata/buildlog.txt.gz (%d KB of go build -x and go test -v output) repeated; force → complete event", cfg().logMB, len(mustBuildLog(b))>>10)
		record("5 logs", fmt.Sprintf("one step's log into the store (real build output, gzip ratio %.1f)", buildLogRatio()), "MB/s", *rate.med("gbb"), rate.med("buildbot"),
			higherThan("≥ 100 MB/s", 0, 100), nil, nil, note)
		if !cfg().inproc {
			record("5 logs", "master peak RSS (VmHWM)", "MB", *hwm.med("gbb"), hwm.med("buildbot"),
				target{text: "bounded (no growth with log size)"}, nil, nil, note)
		}
		b.ReportMetric(*rate.med("gbb"), "gbb-log-MB/s")
	})
}

// gitRepo makes a repository with one commit on master and returns a
// function that commits once more.
func gitRepo(b *testing.B, dir string) func() {
	b.Helper()
	git := func(args ...string) {
		b.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=Bench", "-c", "user.email=bench@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	n := 0
	commit := func() {
		n++
		if err := os.WriteFile(filepath.Join(dir, "file.txt"), fmt.Appendf(nil, "%d\n", n), 0o644); err != nil {
			b.Fatal(err)
		}
		git("add", ".")
		git("commit", "-q", "-m", fmt.Sprintf("change %d", n))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	git("init", "-q", "-b", "master")
	commit()
	return commit
}

// waitStarted waits for the (n+1)th build of builder since the watcher
// subscribed (its new event on /ws) and returns the time from t0.
func waitStarted(b *testing.B, inst *instance, builder string, n int, t0 time.Time) time.Duration {
	b.Helper()
	return inst.events(b).waitBuild(b, inst.builders[builder], n, 2*time.Minute).Sub(t0)
}

// BenchmarkChangeToBuild times commit → build started with a git poller
// (poll interval 1 s), and webhook POST → build started with the base
// change hook.
func BenchmarkChangeToBuild(b *testing.B) {
	once(b, "changes", func(b *testing.B) {
		const pollSeconds = 1
		poll, hook := sample{}, sample{}
		for _, sys := range systems(b) {
			repo := filepath.Join(b.TempDir(), "repo")
			commit := gitRepo(b, repo)
			u := repo
			if sys.name() == "gbb" {
				u = "file://" + repo
			}
			inst, _ := launch(b, sys, options{workers: 1, repoURL: u, pollSeconds: pollSeconds})
			time.Sleep(3 * pollSeconds * time.Second) // the first poll only learns the heads
			ev := inst.events(b)
			id := inst.builders["change"]
			n := 0 // builds of change seen on /ws
			// A commit made right after a build finished lands at the same
			// phase of the poll interval every time (the build started just
			// after a poll): ~950 ms after the poll that the build came
			// from with a 1 s interval, so each commit waited nearly a whole
			// interval (and a fixed 1.5 s pause before gave ~480 ms). The
			// commits are spread evenly over the interval instead, from the
			// start of the build before (one poll's mark): what commits made
			// at any moment see. The first commit only gives that mark.
			interval := pollSeconds * time.Second
			var mark time.Time
			for i := range cfg().changes + 1 {
				if i > 0 {
					at := mark.Add(time.Duration((float64(i-1) + 0.5) / float64(cfg().changes) * float64(interval)))
					for at.Before(time.Now()) {
						at = at.Add(interval)
					}
					time.Sleep(time.Until(at))
				}
				commit()
				t0 := time.Now()
				mark = ev.waitBuild(b, id, n, 2*time.Minute)
				if i > 0 {
					poll[sys.name()] = append(poll[sys.name()], ms(mark.Sub(t0)))
				}
				ev.waitFinished(b, id, n, 2*time.Minute)
				n++
			}
			for range cfg().changes {
				rev := make([]byte, 20)
				rand.Read(rev)
				t0 := time.Now()
				inst.postForm(b, "/change_hook/base", url.Values{
					"author": {"Bench <bench@example.com>"}, "comments": {"bench"}, "branch": {"master"},
					"revision": {hex.EncodeToString(rev)}, "repository": {u}, "project": {"bench"},
				})
				d := waitStarted(b, inst, "change", n, t0)
				hook[sys.name()] = append(hook[sys.name()], ms(d))
				ev.waitFinished(b, id, n, 2*time.Minute)
				n++
			}
			if extra := ev.builds(id) - n; extra != 0 {
				b.Fatalf("%s: %d builds of change more than the changes made", sys.name(), extra)
			}
			b.Logf("%s: poller %v ms, webhook %v ms", sys.name(), poll[sys.name()], hook[sys.name()])
			inst.stop()
		}
		note := fmt.Sprintf("%d each; poll interval %d s; commits spread evenly over the interval", cfg().changes, pollSeconds)
		record("7 change → build", "commit → build started (poller), median", "ms", *poll.med("gbb"), poll.med("buildbot"), noTarget, poll["gbb"], poll["buildbot"], note)
		record("7 change → build", "webhook → build started, median", "ms", *hook.med("gbb"), hook.med("buildbot"), noTarget, hook["gbb"], hook["buildbot"], note)
	})
}
