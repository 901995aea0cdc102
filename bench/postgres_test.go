package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testpg"
	"github.com/jackc/pgx/v5"
)

// benchPG is the bench's PostgreSQL server (Debian's, through
// internal/testpg), started on first use with PostgreSQL's crash-safe
// settings (fsync, synchronous_commit and full_page_writes on: testpg's
// Durable), as bbolt syncs every transaction; it stops when the bench
// exits, after the masters.
var benchPG = sync.OnceValues(func() (*testpg.Server, error) {
	s, err := testpg.StartWith(testpg.Options{Durable: true})
	if err == nil {
		fmt.Fprintf(os.Stderr, "bench: PostgreSQL (postmaster %d) at %s\n", s.Pid(), s.URL("postgres"))
		onExit(func() {
			if err := s.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
			}
		})
	}
	return s, err
})

// newPGDatabase returns the URL of a new, empty database on benchPG,
// dropped when b ends (after the masters registered later are stopped).
func newPGDatabase(b *testing.B) string {
	b.Helper()
	s, err := benchPG()
	if err != nil {
		b.Fatal(err)
	}
	return s.NewDatabase(b)
}

// pgSettings is what the rows' notes say of the server.
const pgSettings = "Debian's PostgreSQL on loopback, started by the bench: fsync, synchronous_commit, full_page_writes on; shared_buffers 32 MB; each master's pool pgx's default (max(4, cores) connections)"

// BenchmarkPostgres runs one master on PostgreSQL against one on bbolt
// with the same workloads, alternating: the throughput scenario (4), the
// latency scenario (3) and one step's log (5). Each PostgreSQL run has a
// new database.
func BenchmarkPostgres(b *testing.B) {
	once(b, "postgres", func(b *testing.B) {
		stores := []string{"bbolt", "PostgreSQL"}
		url := func(store string) string {
			if store == "bbolt" {
				return ""
			}
			return newPGDatabase(b)
		}

		// Throughput: the scenario's workload, cfg().runs runs each.
		tp, forcing := sample{}, sample{}
		n := cfg().builds
		for run := range cfg().runs {
			for _, st := range stores {
				inst, _ := launch(b, gbb{}, options{workers: cfg().workers, tpBuilders: tpBuilders, dbURL: url(st)})
				warmUp(b, inst)
				d, forced, peak := runThroughput(b, inst, n)
				rate := float64(n) / d.Seconds()
				tp[st] = append(tp[st], rate)
				forcing[st] = append(forcing[st], forced.Seconds())
				b.Logf("run %d: %s: %d builds in %v (forced in %v): %.1f builds/s, at most %d at once", run, st, n, d.Round(time.Millisecond), forced.Round(time.Millisecond), rate, peak)
				inst.stop()
			}
		}

		// Latency: both masters up, one worker each, builds alternating.
		insts := map[string]*instance{}
		for _, st := range stores {
			inst, _ := launch(b, gbb{}, options{workers: 1, dbURL: url(st)})
			insts[st] = inst
			for range 2 { // warm up
				forceAndWait(b, inst, "quick")
			}
		}
		lat := sample{}
		for range cfg().latencyN {
			for _, st := range stores {
				lat[st] = append(lat[st], ms(forceAndWait(b, insts[st], "quick")))
			}
		}
		for _, inst := range insts {
			inst.stop()
		}

		// One step's log, cfg().runs runs each.
		size := cfg().logMB << 20
		logs := sample{}
		for run := range cfg().runs {
			for _, st := range stores {
				inst, _ := launch(b, gbb{}, options{workers: 1, logBytes: size, dbURL: url(st)})
				d := forceAndWait(b, inst, "log")
				r := float64(size) / (1 << 20) / d.Seconds()
				logs[st] = append(logs[st], r)
				b.Logf("run %d: %s: %d MB log in %v: %.1f MB/s", run, st, cfg().logMB, d.Round(time.Millisecond), r)
				inst.stop()
			}
		}

		// Each measure: a PostgreSQL row judged against bbolt's, then
		// bbolt's row.
		pair := func(metric, unit string, s sample, p float64, higher bool, note string) {
			pg, bolt := percentile(s["PostgreSQL"], p), percentile(s["bbolt"], p)
			t := target{"≤ 2× bbolt's", func(g, _ float64, _ bool) (bool, bool) { return g <= 2*bolt, true }}
			if higher {
				t = target{"≥ 1/2 of bbolt's", func(g, _ float64, _ bool) (bool, bool) { return g >= bolt/2, true }}
			}
			ratio := fmt.Sprintf("PostgreSQL/bbolt %.2f", pg/bolt)
			var gs, bs []float64
			if p == 50 {
				gs, bs = s["PostgreSQL"], s["bbolt"]
			}
			record("10 postgres", metric+", PostgreSQL", unit, pg, nil, t, gs, nil, ratio+"; "+note+"; "+pgSettings)
			record("10 postgres", metric+", bbolt", unit, bolt, nil, noTarget, bs, nil, ratio+"; "+note)
		}
		tpNote := fmt.Sprintf("throughput scenario: %d one-step `true` builds, %d builders × %d workers, first force → last complete event on /ws; median of %d runs each, alternating; the forces alone took (median) %.2f s on PostgreSQL, %.2f s on bbolt", n, tpBuilders, cfg().workers, cfg().runs, median(forcing["PostgreSQL"]), median(forcing["bbolt"]))
		pair(fmt.Sprintf("one master, %d builds, %d builders × %d workers", n, tpBuilders, cfg().workers), "builds/s", tp, 50, true, tpNote)
		latNote := fmt.Sprintf("latency scenario: %d forced one-step builds each, one worker, both masters up, alternating; force → the request's complete event on /ws", cfg().latencyN)
		pair("one master, force → complete, median", "ms", lat, 50, false, latNote)
		pair("one master, force → complete, p99", "ms", lat, 99, false, latNote)
		logNote := fmt.Sprintf("log scenario: one step printing %d MB of real build output (gzip ratio %.1f); force → complete event; median of %d runs each, alternating", cfg().logMB, buildLogRatio(), cfg().runs)
		pair("one master, one step's log into the store", "MB/s", logs, 50, true, logNote)
		b.ReportMetric(median(tp["PostgreSQL"]), "pg-builds/s")
	})
}

// BenchmarkTwoMasters runs the throughput scenario's builds on one master
// and on two masters sharing one PostgreSQL database, alternating, with
// cfg().workers simulated workers (split between the masters when there
// are two) and the builds forced on every master; beside each: the
// database's CPU.
func BenchmarkTwoMasters(b *testing.B) {
	once(b, "twomasters", func(b *testing.B) {
		pg, err := benchPG()
		if err != nil {
			b.Fatal(err)
		}
		n := cfg().builds
		tp, dbCPU, dbBuild, mCPU, busy, wal := sample{}, sample{}, sample{}, sample{}, sample{}, sample{}
		for run := range cfg().runs {
			for _, masters := range []int{1, 2} {
				key := strconv.Itoa(masters)
				url := newPGDatabase(b)
				insts := startMasters(b, url, masters)
				for _, inst := range insts {
					warmUp(b, inst)
				}
				var m0 float64
				for _, inst := range insts {
					m0 += cpuSeconds(inst.master.pid)
				}
				wal0 := walBytes(b, url)
				db0, mach0, t0 := treeCPUSeconds(pg.Pid()), machineBusy(), time.Now()
				d, forced, peak := runThroughputOn(b, insts, n)
				wall := time.Since(t0).Seconds()
				dbSec := treeCPUSeconds(pg.Pid()) - db0
				db := dbSec / wall * 100
				var m float64
				for _, inst := range insts {
					m += cpuSeconds(inst.master.pid)
				}
				m = (m - m0) / wall * 100
				mach := (machineBusy() - mach0) / wall * 100
				rate := float64(n) / d.Seconds()
				tp[key] = append(tp[key], rate)
				dbCPU[key] = append(dbCPU[key], db)
				dbBuild[key] = append(dbBuild[key], dbSec*1000/float64(n))
				perBuild := (walBytes(b, url) - wal0) / 1024 / float64(n)
				wal[key] = append(wal[key], perBuild)
				mCPU[key] = append(mCPU[key], m)
				busy[key] = append(busy[key], mach)
				b.Logf("run %d: %d master(s): %d builds in %v (forced in %v): %.1f builds/s, at most %d at once; CPU (%% of a core): database %.0f (%.2f ms a build), masters %.0f, whole machine %.0f; %.1f KB of WAL a build", run, masters, n, d.Round(time.Millisecond), forced.Round(time.Millisecond), rate, peak, db, dbSec*1000/float64(n), m, mach, perBuild)
				for _, inst := range insts {
					inst.stop()
				}
			}
		}
		one, two := median(tp["1"]), median(tp["2"])
		note := fmt.Sprintf("%d one-step `true` builds over %d builders × %d simulated workers (protocol clients in the bench process that answer each command at once: builds cost only the masters and the database), forced from 8 clients on every master in turn, first force → last complete event on /ws of the master each was forced on; with two masters the workers are split between them and both masters use one database; median of %d runs each, alternating; %s; on %d cores shared by the masters, the database and the bench process: the database CPU rows and their notes say which is the limit", n, tpBuilders, cfg().workers, cfg().runs, pgSettings, runtime.NumCPU())
		cpuNote := func(k string) string {
			per := median(dbBuild[k])
			return fmt.Sprintf("same runs; CPU time over the timed builds ÷ their wall time: database (postmaster and its children, from /proc) median %.0f %%, masters %.0f %%, whole machine (/proc/stat) %.0f %% of one core; the database's CPU a build %.2f ms, so one core of database would carry about %.0f builds/s; %.1f KB of write-ahead log a build (heartbeats and other background writes of the period included)", median(dbCPU[k]), median(mCPU[k]), median(busy[k]), per, 1000/per, median(wal[k]))
		}
		record("11 two masters", fmt.Sprintf("one master on PostgreSQL, %d builds, %d builders × %d simulated workers", n, tpBuilders, cfg().workers), "builds/s", one, nil, noTarget, tp["1"], nil, note)
		record("11 two masters", "two masters on the same PostgreSQL, workers split, builds forced on both", "builds/s", two, nil,
			target{"≥ 1.3× one master", func(g, _ float64, _ bool) (bool, bool) { return g >= 1.3*one, true }}, tp["2"], nil,
			fmt.Sprintf("two over one: %.2f; %s", two/one, note))
		record("11 two masters", "database CPU, one master", "% of a core", median(dbCPU["1"]), nil, noTarget, dbCPU["1"], nil, cpuNote("1"))
		record("11 two masters", "database CPU, two masters", "% of a core", median(dbCPU["2"]), nil, noTarget, dbCPU["2"], nil, cpuNote("2"))
		b.ReportMetric(two/one, "two/one")
	})
}

// startMasters starts count masters on the PostgreSQL database at url,
// each with its own basedir and ports and the same config, and
// cfg().workers simulated workers split between them in turn; it returns
// once every master is up and every worker connected.
func startMasters(b *testing.B, url string, count int) []*instance {
	b.Helper()
	o := options{workers: cfg().workers, tpBuilders: tpBuilders, dbURL: url, simulated: true}
	var insts []*instance
	connected := 0
	for k := range count {
		inst := prepareInstance(b, gbb{}, o)
		keepLogOnFailure(b, inst, fmt.Sprintf("master%d-of-%d", k, count))
		var mine []string
		for i, w := range inst.workers {
			if i%count == k {
				mine = append(mine, w)
			}
		}
		connected += len(mine)
		// The API lists the workers of every master on the database.
		inst.start(b, o, mine, connected)
		insts = append(insts, inst)
	}
	return insts
}

// runThroughputOn forces n one-step builds spread over tpBuilders builders
// from 8 clients, each force on the next of insts in turn, and returns the
// time from the first force to the last request's complete event (seen on
// the master it was forced on), the time the forces took, and the most
// builds seen running at once by the first master (which sees every
// master's builds).
func runThroughputOn(b *testing.B, insts []*instance, n int) (d, forcedIn time.Duration, peak int) {
	b.Helper()
	type forced struct {
		inst *instance
		brid int64
	}
	for _, inst := range insts {
		inst.events(b)
	}
	t0 := time.Now()
	brids := make(chan forced, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(n) {
					return
				}
				inst := insts[int(k)%len(insts)]
				brids <- forced{inst, inst.force(b, fmt.Sprintf("t%d", k%tpBuilders))}
			}
		})
	}
	wg.Wait()
	close(brids)
	forcedIn = time.Since(t0)
	var last time.Time
	for f := range brids {
		if at := f.inst.events(b).waitComplete(b, f.brid, 60*time.Minute); at.After(last) {
			last = at
		}
	}
	return last.Sub(t0), forcedIn, insts[0].events(b).peakRunning(t0)
}

// walBytes is how far the server's write-ahead log has gone
// (pg_current_wal_lsn), in bytes: what every master's writes logged,
// read at once (no statistics delay) and not moved by reading it.
func walBytes(b *testing.B, url string) float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	var n float64
	if err := c.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// treeCPUSeconds is the CPU time of process pid and of its children,
// those that run (from their /proc/PID/stat) and those it has waited for
// (its cutime and cstime): for PostgreSQL's postmaster, the whole server,
// whose backends are its children.
func treeCPUSeconds(pid int) float64 {
	total := 0.0
	if f := statFields(pid); f != nil {
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseFloat(f[i], 64)
			total += v
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		f := statFields(child)
		if f == nil || f[1] != strconv.Itoa(pid) { // ppid
			continue
		}
		for _, i := range []int{11, 12} {
			v, _ := strconv.ParseFloat(f[i], 64)
			total += v
		}
	}
	return total / 100 // USER_HZ
}

// statFields are the fields of /proc/PID/stat after the command name
// (state is [0], ppid [1], utime [11]), or nil.
func statFields(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 15 {
		return nil
	}
	return f
}

// machineBusy is the machine's CPU time so far, all cores, that was
// neither idle nor waiting for I/O (/proc/stat), in seconds.
func machineBusy() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	busy := 0.0
	for i, x := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest and guest_nice are in user and nice already
			continue
		}
		v, _ := strconv.ParseFloat(x, 64)
		busy += v
	}
	return busy / 100 // USER_HZ
}

// keepLogOnFailure copies inst's master log to $TMPDIR/gbb-bench-NAME.out
// when b has failed by the time inst is stopped, since b.TempDir goes.
func keepLogOnFailure(b *testing.B, inst *instance, name string) {
	b.Cleanup(func() {
		if !b.Failed() {
			return
		}
		data, err := os.ReadFile(filepath.Join(inst.dir, "master.out"))
		if err != nil {
			return
		}
		dst := filepath.Join(os.TempDir(), "gbb-bench-"+name+".out")
		if os.WriteFile(dst, data, 0o644) == nil {
			fmt.Fprintf(os.Stderr, "bench: %s's log: %s\n", name, dst)
		}
	})
}
