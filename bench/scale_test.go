package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
	"golang.org/x/sys/unix"
)

// copyFile copies src to dst.
func copyFile(b *testing.B, src, dst string) {
	b.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		b.Fatal(err)
	}
}

// dropCache writes path's pages out and drops them from the page cache.
// A file written in one go (copyFile) sits in the page cache in large
// folios, and Linux (6.18 on ext4 here) maps a whole folio into a process
// on its first fault: a master reading a few pages of a fresh 200 MB copy
// had 4 MB of it mapped at once, and that only because of how the copy was
// made. A store that bbolt wrote page by page, or one read after a reboot,
// maps the pages read (bbolt mmaps it MADV_RANDOM: no readahead).
func dropCache(b *testing.B, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatalf("drop %s from the page cache: %v", path, err)
	}
}

// sims are simulated workers: protocol clients in the bench process, each
// with its own gRPC connection, speaking the real protocol to the master
// (hello, auth, heartbeats, commands). Their commands succeed at once
// without running anything.
type sims struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ran    atomic.Int64 // commands run
}

type simExec struct{ s *sims }

func (e simExec) Run(ctx context.Context, cmd protocol.Command, out func(protocol.Output)) protocol.Result {
	e.s.ran.Add(1)
	return protocol.Result{}
}

// startSims connects a simulated worker for each of names to inst.
func startSims(b *testing.B, inst *instance, names []string) *sims {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &sims{cancel: cancel}
	for _, name := range names {
		c := protocol.NewClient(protocol.ClientConfig{
			Master: fmt.Sprintf("127.0.0.1:%d", inst.workerPort),
			Name:   name, Password: "pass",
			Info:     protocol.WorkerInfo{Host: "sim", OS: runtime.GOOS, Arch: runtime.GOARCH, Version: "bench", NumCPU: 1},
			Executor: simExec{s},
		})
		s.wg.Go(func() { c.Run(ctx) })
	}
	return s
}

func (s *sims) stop() {
	if s == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
}

// profileIdle writes a CPU profile of the next idle period and then a heap
// profile of this process to $TMPDIR/gbb-bench-NAME.{cpu,heap}.
func profileIdle(b *testing.B, name string, idle time.Duration) {
	b.Helper()
	base := filepath.Join(os.TempDir(), "gbb-bench-"+name)
	f, err := os.Create(base + ".cpu")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	time.Sleep(idle)
	pprof.StopCPUProfile()
	b.Logf("CPU profile of %v idle: %s.cpu", idle, base)
	writeHeap(b, name)
}

// writeHeap writes a heap profile of this process to
// $TMPDIR/gbb-bench-NAME.heap.
func writeHeap(b *testing.B, name string) {
	b.Helper()
	path := filepath.Join(os.TempDir(), "gbb-bench-"+name+".heap")
	h, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	if err := pprof.Lookup("heap").WriteTo(h, 0); err != nil {
		b.Fatal(err)
	}
	b.Logf("heap profile: %s", path)
}

// cachedStore returns the path of a copy of the store that fill makes,
// from ~/.cache/gbb-bench when there is one (keyed by name and by
// pkg/store's code), and how long filling took (0 when cached).
func cachedStore(b *testing.B, name string, fill func(b *testing.B, path string)) (string, time.Duration) {
	b.Helper()
	key, err := storeKey(name)
	if err != nil {
		b.Fatal(err)
	}
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		cacheDir = os.TempDir()
	}
	cacheDir = filepath.Join(cacheDir, "gbb-bench")
	cached := filepath.Join(cacheDir, key)
	var took time.Duration
	if _, err := os.Stat(cached); err != nil {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			b.Fatal(err)
		}
		// Fill on a RAM disk when there is one: the store syncs every
		// transaction, and the bench times queries, not fsync.
		tmpDir := cacheDir
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			tmpDir = "/dev/shm"
		}
		tmp := filepath.Join(tmpDir, key+".tmp")
		os.Remove(tmp)
		defer os.Remove(tmp)
		t0 := time.Now()
		fill(b, tmp)
		took = time.Since(t0)
		copyFile(b, tmp, cached+".part")
		if err := os.Rename(cached+".part", cached); err != nil {
			b.Fatal(err)
		}
	}
	dst := filepath.Join(b.TempDir(), "state.db")
	copyFile(b, cached, dst)
	return dst, took
}

// BenchmarkManyWorkers connects 1,000 simulated workers (GBB_BENCH_SIMS)
// to one master and reads its RSS and its CPU over 10 s of idleness.
func BenchmarkManyWorkers(b *testing.B) {
	once(b, "manyworkers", func(b *testing.B) {
		n := cfg().sims
		inst, d := launch(b, gbb{}, options{workers: n, simulated: true})
		b.Logf("%d simulated workers connected %v after the master's exec", n, d.Round(time.Millisecond))
		// A build on them, so the engine has used them once.
		forceAndWait(b, inst, "quick")
		time.Sleep(2 * time.Second)
		const idle = 10 * time.Second
		if cfg().inproc {
			// The master and the simulated workers share this process:
			// no RSS or CPU to read, but profiles of the idle period.
			profileIdle(b, "manyworkers", idle)
			return
		}
		cpu0, t0 := cpuSeconds(inst.master.pid), time.Now()
		time.Sleep(idle)
		cpu := (cpuSeconds(inst.master.pid) - cpu0) / time.Since(t0).Seconds() * 100
		rss := status(inst.master.pid, "VmRSS")
		if c := inst.connectedWorkers(); c != n {
			b.Fatalf("%d workers connected after the idle period, want %d", c, n)
		}
		b.Logf("master with %d workers: RSS %.1f MB, CPU %.2f %% of one core over %v idle", n, rss, cpu, idle)
		note := fmt.Sprintf("%d simulated workers (protocol clients in the bench process), %v idle", n, idle)
		record("2 idle memory", fmt.Sprintf("master RSS with %d connected workers", n), "MB", rss, nil,
			lowerThan("< 150 MB", 0, 150), nil, nil, note)
		record("2 idle memory", fmt.Sprintf("master CPU idle with %d connected workers", n), "% of a core", cpu, nil,
			lowerThan("< 5 %", 0, 5), nil, nil, note)
		b.ReportMetric(rss, "master-MB")
		b.ReportMetric(cpu, "master-cpu-%")
	})
}

// BenchmarkConcurrentLogs runs 20 steps (GBB_BENCH_LOG_STEPS) printing
// logMB MB each at once, on 20 workers, and reads the total rate into the
// store and the master's peak RSS.
func BenchmarkConcurrentLogs(b *testing.B) {
	once(b, "concurrentlogs", func(b *testing.B) {
		steps, size := cfg().logSteps, cfg().logMB<<20
		inst, _ := launch(b, gbb{}, options{workers: steps, logBytes: size})
		ev := inst.events(b)
		t0 := time.Now()
		brids := make([]int64, steps)
		for i := range brids {
			brids[i] = inst.force(b, "log")
		}
		if cfg().inproc {
			// A heap profile while the steps run (the master is in this
			// process): what the peak RSS is made of.
			time.Sleep(2 * time.Second)
			writeHeap(b, "concurrentlogs")
		}
		var last time.Time
		for _, id := range brids {
			if at := ev.waitComplete(b, id, 30*time.Minute); at.After(last) {
				last = at
			}
		}
		d := last.Sub(t0)
		total := float64(steps*size) / (1 << 20)
		rate := total / d.Seconds()
		var hwm float64
		if !cfg().inproc {
			hwm = status(inst.master.pid, "VmHWM")
		}
		b.Logf("%d steps × %d MB in %v: %.1f MB/s in total, master VmHWM %.1f MB", steps, cfg().logMB, d.Round(time.Millisecond), rate, hwm)
		note := fmt.Sprintf("%d steps on %d workers, %d MB of testdata/buildlog.txt.gz repeated each, first force → last complete event", steps, steps, cfg().logMB)
		record("5 logs", fmt.Sprintf("%d steps at once, total into the store (real build output, gzip ratio %.1f)", steps, buildLogRatio()), "MB/s", rate, nil, noTarget, nil, nil, note)
		if !cfg().inproc {
			record("5 logs", fmt.Sprintf("%d steps at once, master peak RSS (VmHWM)", steps), "MB", hwm, nil,
				target{text: "bounded (no growth with log size)"}, nil, nil, note)
		}
		b.ReportMetric(rate, "MB/s")
	})
}

// fillPending makes a store with the bench config's builders and n build
// requests waiting for the "quick" builder, as n forced builds leave them.
func fillPending(n int) func(b *testing.B, path string) {
	return func(b *testing.B, path string) {
		db, err := store.Open(path, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		var quick store.Builder
		for _, name := range []string{"quick", "log", "change"} {
			bl, err := db.EnsureBuilder(name)
			if err != nil {
				b.Fatal(err)
			}
			if name == "quick" {
				quick = bl
			}
		}
		for range n {
			_, _, err := db.AddBuildset(store.NewBuildset{
				Reason:        "bench: pending",
				SchedulerName: "force",
				SourceStamps:  []store.SourceStamp{{}},
				BuilderIDs:    []int64{quick.ID},
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkPendingStartup times the start-up (exec → API with the worker
// attached) of a master whose store holds 10,000 pending build requests
// (GBB_BENCH_PENDING).
func BenchmarkPendingStartup(b *testing.B) {
	once(b, "pendingstartup", func(b *testing.B) {
		n := cfg().pending
		path, fill := cachedStore(b, fmt.Sprintf("pending-%d", n), fillPending(n))
		if fill > 0 {
			b.Logf("made a store with %d pending requests in %v", n, fill.Round(time.Millisecond))
		}
		var xs []float64
		for range cfg().runs {
			inst, d := launch(b, gbb{}, options{workers: 1, state: path})
			xs = append(xs, ms(d))
			inst.stop()
		}
		b.Logf("start-up with %d pending requests: %v ms", n, xs)
		note := fmt.Sprintf("%d pending requests for one builder; %d runs", n, len(xs))
		record("6 big store", fmt.Sprintf("start-up with %d pending requests, median", n), "ms", median(xs), nil,
			lowerThan("< 1 s", 0, 1000), xs, nil, note)
		b.ReportMetric(median(xs), "ms")
	})
}

// BenchmarkHistoryMemory starts a master on a store of 100 builds and on
// one of GBB_BENCH_STORE_BUILDS builds (the big store), with the big
// store's builders configured, loads its pages and API once, and compares
// the master's RSS: nothing in memory may grow with history. Both stores
// hold the same pending requests, which the master builds before the
// reading. Each store is
// copied, then dropped from the page cache (dropCache), so that both map
// the pages they read, as a store does after a restart.
func BenchmarkHistoryMemory(b *testing.B) {
	once(b, "history", func(b *testing.B) {
		if cfg().inproc {
			b.Fatal("HistoryMemory measures the master process: unset GBB_BENCH_INPROC")
		}
		var builders []string
		for n := range storeBuilders {
			builders = append(builders, fmt.Sprintf("builder-%02d", n))
		}
		sizes := []int{100, cfg().storeBuilds}
		rss, anon, file := map[int][]float64{}, map[int][]float64{}, map[int][]float64{}
		for _, size := range sizes {
			path, fill := bigStore(b, size)
			if fill > 0 {
				b.Logf("filled a store with %d builds in %v", size, fill.Round(time.Second))
			}
			for range cfg().runs {
				inst, _ := launch(b, gbb{}, options{workers: 1, state: path, coldState: true, tmpl: "history.toml.tmpl", builders: builders})
				for _, p := range []string{"/", "/builders", "/builders/1", "/api/v2/builds?order=-buildid&limit=50",
					"/api/v2/builders/1/builds?order=-number&limit=20", "/api/v2/changes?limit=50", "/api/v2/buildrequests?limit=50"} {
					if code, body, err := inst.get(p); err != nil || code != 200 {
						b.Fatalf("GET %s: %d %v %.200s", p, code, err, body)
					}
				}
				forceAndWait(b, inst, "builder-00")
				// The big store's pending requests (storePending per
				// builder) run too: wait until every request is complete.
				waitUntil(b, "no incomplete request", 5*time.Minute, 100*time.Millisecond, func() bool {
					var r struct {
						Buildrequests []json.RawMessage `json:"buildrequests"`
					}
					inst.getJSON(b, "/api/v2/buildrequests?complete=false&limit=1", &r)
					return len(r.Buildrequests) == 0
				})
				time.Sleep(time.Second)
				rss[size] = append(rss[size], status(inst.master.pid, "VmRSS"))
				anon[size] = append(anon[size], status(inst.master.pid, "RssAnon"))
				file[size] = append(file[size], status(inst.master.pid, "RssFile"))
				inst.stop()
			}
			b.Logf("%d builds: master RSS %v MB (anonymous %v, file %v)", size, rss[size], anon[size], file[size])
		}
		small, big := median(rss[sizes[0]]), median(rss[sizes[1]])
		note := fmt.Sprintf("stores read cold; after start-up, the pages and API once and one build; %d runs each; medians in MB, RSS (anonymous + file): %d builds %.1f (%.1f + %.1f), %d builds %.1f (%.1f + %.1f)",
			cfg().runs, sizes[0], small, median(anon[sizes[0]]), median(file[sizes[0]]), sizes[1], big, median(anon[sizes[1]]), median(file[sizes[1]]))
		record("2 idle memory", fmt.Sprintf("master RSS, %d builds stored over %d", sizes[1], sizes[0]), "ratio", big/small, nil,
			lowerThan("≈ 1 (≤ 1.1)", 0, 1.1), nil, nil, note)
		// The heap and stacks apart from the store's mapped pages, which
		// the kernel may drop at any time.
		record("2 idle memory", fmt.Sprintf("master anonymous RSS (heap, stacks), %d builds stored over %d", sizes[1], sizes[0]), "ratio",
			median(anon[sizes[1]])/median(anon[sizes[0]]), nil, lowerThan("≈ 1 (≤ 1.1)", 0, 1.1), nil, nil, note)
		b.ReportMetric(big/small, "rss-ratio")
	})
}
