package bench

import (
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The git poller's rows (issue 17), gbb alone: the master's peak RSS while
// its first poll clones a large repository, and its CPU per poll of
// remotes that do not change. Both remotes are served by git http-backend
// from the bench process, so that the master's figures are the client's
// alone. The same bench run from a tree where the poller ran the git
// binary gives the "before" figures (BENCHMARKS.md): the master's CPU
// there includes its git children's (cutime and cstime).

// pollerMaster is a gbb master with only git pollers.
type pollerMaster struct {
	dir string
	p   *proc
}

// startPollerMaster starts a master whose config has one git_poller of
// repoURL per name, each polling at launch and then every interval.
func startPollerMaster(b *testing.B, repoURL string, names []string, interval time.Duration) *pollerMaster {
	b.Helper()
	dir := b.TempDir()
	md := filepath.Join(dir, "master")
	mustRun(b, dir, nil, gbbBin(b, "gbb-master"), "create-master", md)
	var c strings.Builder
	fmt.Fprintf(&c, "title = \"bench pollers\"\n\n[protocols.grpc]\nport = %d\ninterface = \"127.0.0.1\"\n\n[www]\nport = %d\ninterface = \"127.0.0.1\"\n",
		freePort(b), freePort(b))
	for _, n := range names {
		fmt.Fprintf(&c, "\n[[change_source]]\ntype = \"git_poller\"\nname = %q\nrepourl = %q\nbranches = [\"master\"]\npoll_interval = \"%ds\"\npoll_at_launch = true\n",
			n, repoURL, int(interval/time.Second))
	}
	if err := os.WriteFile(filepath.Join(md, "master.toml"), []byte(c.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	pm := &pollerMaster{dir: dir}
	pm.p = spawn(b, "gbb-master", dir, filepath.Join(dir, "master.out"), nil,
		gbbBin(b, "gbb-master"), "start", "--nodaemon", md)
	b.Cleanup(func() { stopAll([]*proc{pm.p}) })
	return pm
}

// waitFirstPolls waits until n pollers have logged their first poll.
func (pm *pollerMaster) waitFirstPolls(b *testing.B, n int, timeout time.Duration) {
	b.Helper()
	log := filepath.Join(pm.dir, "master.out")
	waitUntil(b, fmt.Sprintf("%d first polls", n), timeout, 100*time.Millisecond, func() bool {
		if pm.p.exited() {
			out, _ := os.ReadFile(log)
			b.Fatalf("gbb master exited:\n%s", out)
		}
		out, _ := os.ReadFile(log)
		if strings.Contains(string(out), "poll failed") {
			b.Fatalf("a poll failed:\n%s", out)
		}
		return strings.Count(string(out), "first poll: recording the tips") >= n
	})
}

// cpuWithChildren is the user+system CPU time of a process and of the
// children it waited for (git, before issue 17).
func cpuWithChildren(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var t float64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		var v float64
		fmt.Sscan(f[i], &v)
		t += v
	}
	return t / 100 // USER_HZ
}

// benchGit runs git for the bench's fixtures.
func benchGit(b *testing.B, dir string, stdin string, args ...string) {
	b.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Bench", "GIT_AUTHOR_EMAIL=bench@example.com",
		"GIT_COMMITTER_NAME=Bench", "GIT_COMMITTER_EMAIL=bench@example.com")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// bigRepo makes a bare repository of commits commits on master: the
// first adds dirs×files files, each next one changes one of them.
func bigRepo(b *testing.B, dir string, commits int) {
	b.Helper()
	const dirs, files = 50, 40
	benchGit(b, "", "", "init", "-q", "--bare", "-b", "master", dir)
	var s strings.Builder
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	for i := range commits {
		msg := fmt.Sprintf("change %d\n\nA body line for commit %d.\n", i, i)
		fmt.Fprintf(&s, "commit refs/heads/master\nmark :%d\n", i+1)
		fmt.Fprintf(&s, "author Bench <bench@example.com> %d +0000\ncommitter Bench <bench@example.com> %d +0000\n", when+int64(i), when+int64(i))
		fmt.Fprintf(&s, "data %d\n%s", len(msg), msg)
		if i == 0 {
			for d := range dirs {
				for f := range files {
					content := fmt.Sprintf("file %d/%d\n", d, f)
					fmt.Fprintf(&s, "M 644 inline dir%02d/file%02d.txt\ndata %d\n%s", d, f, len(content), content)
				}
			}
		} else {
			content := fmt.Sprintf("file %d/%d, version %d\n", i%dirs, (i/dirs)%files, i)
			fmt.Fprintf(&s, "M 644 inline dir%02d/file%02d.txt\ndata %d\n%s", i%dirs, (i/dirs)%files, len(content), content)
		}
		s.WriteString("\n")
	}
	benchGit(b, dir, s.String(), "fast-import", "--quiet")
	benchGit(b, dir, "", "repack", "-a", "-d", "-q")
}

// serveGitHTTP serves the repositories under root with git http-backend
// and counts the ref listings (GET info/refs), one per poll.
func serveGitHTTP(b *testing.B, root string) (string, *atomic.Int64) {
	b.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		b.Fatalf("git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	var lists atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/info/refs") {
			lists.Add(1)
		}
		backend.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	return srv.URL, &lists
}

// BenchmarkPollerClone reads the master's peak RSS (VmHWM) once its first
// poll has fetched a repository of GBB_BENCH_POLLER_COMMITS (50,000)
// commits over HTTP, and the peak RSS of git fetching the same into an
// empty bare repository, as the poller did before issue 17.
func BenchmarkPollerClone(b *testing.B) {
	once(b, "poller-clone", func(b *testing.B) {
		commits := envInt("GBB_BENCH_POLLER_COMMITS", 50000)
		root := b.TempDir()
		t0 := time.Now()
		bigRepo(b, filepath.Join(root, "big.git"), commits)
		b.Logf("made a repository of %d commits in %v", commits, time.Since(t0).Round(time.Millisecond))
		base, _ := serveGitHTTP(b, root)
		u := base + "/big.git"

		pm := startPollerMaster(b, u, []string{"big"}, time.Hour)
		t0 = time.Now()
		pm.waitFirstPolls(b, 1, 30*time.Minute)
		d := time.Since(t0)
		hwm := status(pm.p.pid, "VmHWM")
		// The poll logs its first poll before it stores the tips and gives
		// the fetch's memory back: read VmRSS until it is back under the
		// idle target, or for 10 s.
		rss := status(pm.p.pid, "VmRSS")
		for end := time.Now().Add(10 * time.Second); rss > 93.7/4 && time.Now().Before(end); rss = status(pm.p.pid, "VmRSS") {
			time.Sleep(100 * time.Millisecond)
		}
		pack := 0.0
		packs, _ := filepath.Glob(filepath.Join(pm.dir, "master", "gitpoller-work", "big", "objects", "pack", "*.pack"))
		for _, p := range packs {
			if fi, err := os.Stat(p); err == nil {
				pack += float64(fi.Size()) / (1 << 20)
			}
		}
		b.Logf("master: first poll in %v, VmHWM %.1f MB, VmRSS after %.1f MB (anonymous %.1f, file %.1f), mirror packs %.1f MB", d.Round(time.Millisecond), hwm, rss, status(pm.p.pid, "RssAnon"), status(pm.p.pid, "RssFile"), pack)
		stopAll([]*proc{pm.p})

		// The same fetch by the git binary, as the poller ran it.
		mirror := filepath.Join(b.TempDir(), "mirror.git")
		benchGit(b, "", "", "init", "-q", "--bare", mirror)
		cmd := exec.Command("git", "--git-dir="+mirror, "fetch", "-q", "--no-tags", "--force", "--no-write-fetch-head", u, "+refs/heads/master:refs/heads/master")
		t0 = time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git fetch: %v\n%s", err, out)
		}
		gd := time.Since(t0)
		gitPeak := float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
		b.Logf("git fetch: %v, peak RSS (largest of git and its children) %.1f MB", gd.Round(time.Millisecond), gitPeak)

		note := fmt.Sprintf("%d commits, mirror pack %.0f MB, over HTTP (git http-backend); first poll %.1f s",
			commits, pack, d.Seconds())
		record("8 git poller", fmt.Sprintf("master peak RSS (VmHWM), first poll cloning %d commits", commits), "MB", hwm, nil,
			target{text: "bounded (no growth with history)"}, nil, nil, note)
		record("8 git poller", fmt.Sprintf("master RSS once the first poll cloned %d commits", commits), "MB", rss, nil,
			target{text: "back to idle (≤ 1/4 of buildbot's 93.7 MB)"}, nil, nil, "")
		record("8 git poller", "git fetch of the same clone, peak RSS (the git binary's way)", "MB", gitPeak, nil,
			noTarget, nil, nil, fmt.Sprintf("git %v in %.1f s, largest process of git fetch's tree", gitVersion(b), gd.Seconds()))
	})
}

func gitVersion(b *testing.B) string {
	out, err := exec.Command("git", "version").Output()
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "git version ")
}

// BenchmarkPollerIdleCPU runs GBB_BENCH_POLLERS (100) pollers of a remote
// that does not change, every GBB_BENCH_POLL_SECONDS (3) s, and reads the
// master's CPU time (with its children's) per poll over 30 s.
func BenchmarkPollerIdleCPU(b *testing.B) {
	once(b, "poller-cpu", func(b *testing.B) {
		n := envInt("GBB_BENCH_POLLERS", 100)
		every := time.Duration(envInt("GBB_BENCH_POLL_SECONDS", 3)) * time.Second
		window := time.Duration(envInt("GBB_BENCH_POLL_WINDOW", 30)) * time.Second
		root := b.TempDir()
		bigRepo(b, filepath.Join(root, "small.git"), 100)
		base, lists := serveGitHTTP(b, root)
		var names []string
		for i := range n {
			names = append(names, fmt.Sprintf("p%03d", i))
		}
		pm := startPollerMaster(b, base+"/small.git", names, every)
		pm.waitFirstPolls(b, n, 5*time.Minute)
		time.Sleep(every) // past the first polls' fetches

		c0, l0, t0 := cpuWithChildren(pm.p.pid), lists.Load(), time.Now()
		time.Sleep(window)
		c1, l1, d := cpuWithChildren(pm.p.pid), lists.Load(), time.Since(t0)
		polls := float64(l1 - l0)
		if polls == 0 {
			b.Fatal("no poll in the window")
		}
		perPoll := (c1 - c0) / polls * 1000
		core := (c1 - c0) / d.Seconds() * 100
		b.Logf("%d pollers every %v: %.0f polls in %v, master CPU %.2f s (%.1f %% of a core), %.2f ms per poll",
			n, every, polls, d.Round(time.Millisecond), c1-c0, core, perPoll)
		note := fmt.Sprintf("%d pollers every %v of one unchanged remote over HTTP (git http-backend), %.0f polls in %v; master CPU with its children's: %.1f %% of a core",
			n, every, polls, d.Round(time.Second), core)
		record("8 git poller", "master CPU per poll, unchanged remote", "ms", perPoll, nil, noTarget, nil, nil, note)
	})
}

// BenchmarkPollerIdleRSS reads the RSS of a master with one git poller of
// a small remote, a second after its first poll (go-git's code and data
// paged in), GBB_BENCH_RUNS times.
func BenchmarkPollerIdleRSS(b *testing.B) {
	once(b, "poller-rss", func(b *testing.B) {
		root := b.TempDir()
		bigRepo(b, filepath.Join(root, "small.git"), 100)
		base, _ := serveGitHTTP(b, root)
		var rss []float64
		for range cfg().runs {
			pm := startPollerMaster(b, base+"/small.git", []string{"small"}, time.Hour)
			pm.waitFirstPolls(b, 1, time.Minute)
			time.Sleep(time.Second)
			rss = append(rss, status(pm.p.pid, "VmRSS"))
			stopAll([]*proc{pm.p})
		}
		b.Logf("master RSS a second after one poller's first poll: %v MB", rss)
		record("8 git poller", "master RSS, one poller of a small remote, after its first poll, median", "MB", median(rss), nil,
			lowerThan("≤ 1/4 of buildbot's 93.7 MB", 0, 93.7/4), rss, nil, "over HTTP; no worker connected")
	})
}
