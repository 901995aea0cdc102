package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web"
)

const (
	storeBuilders = 10
	// storePending is how many requests per builder wait, unclaimed, at
	// the end of the big store (a busy master has some).
	storePending = 2
	// storeVersion names what fillStore makes: a cached store made by
	// another version of it is not reused.
	storeVersion = "v2"
)

// storeKey names a filled store by name and the store's code, so a cached
// one is reused only while pkg/store is unchanged.
func storeKey(name string) (string, error) {
	h := sha256.New()
	files, err := filepath.Glob("../pkg/store/*.go")
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	return fmt.Sprintf("%s-%s.db", name, hex.EncodeToString(h.Sum(nil))[:12]), nil
}

func prop(b *testing.B, v any, source string) store.Property {
	b.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return store.Property{Value: raw, Source: source}
}

// storeSteps are the steps of each build in the big store, with the lines
// of their stdio logs (worker_preparation has no log), as a build of
// checkout, compile and test has them.
var storeSteps = []struct {
	name  string
	lines int
}{{"worker_preparation", 0}, {"git", 4}, {"compile", 10}, {"test", 20}}

// storeLogLines is the log lines of each build.
func storeLogLines() int {
	n := 0
	for _, s := range storeSteps {
		n += s.lines
	}
	return n
}

// fillStore writes what a master accumulates over builds builds of
// storeBuilders builders, through pkg/store's public methods in the order
// the master calls them (one transaction per call: the store has no bulk
// import): for each build a change (as the poller stores it), a buildset
// with its sourcestamp and scheduler properties and one build request (as
// an any_branch scheduler makes it), the claim, the build with its
// properties, its steps, each with a stdio log of real build output
// (testdata/buildlog.txt.gz), got_revision, the build's end and the
// request's completion (which completes the buildset). Then storePending
// forced requests per builder wait unclaimed.
func fillStore(b *testing.B, path string, builds int) time.Duration {
	b.Helper()
	t0 := time.Now()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m, err := db.EnsureMaster("bench:/big")
	if err != nil {
		b.Fatal(err)
	}
	w, err := db.EnsureWorker("w0")
	if err != nil {
		b.Fatal(err)
	}
	var builders []int64
	for n := range storeBuilders {
		bl, err := db.EnsureBuilder(fmt.Sprintf("builder-%02d", n))
		if err != nil {
			b.Fatal(err)
		}
		if err := db.UpdateBuilder(bl.ID, "", nil, []int64{m.ID}); err != nil {
			b.Fatal(err)
		}
		builders = append(builders, bl.ID)
	}
	var text []string // stdio lines of real build output
	for _, l := range strings.SplitAfter(string(mustBuildLog(b)), "\n") {
		if l != "" {
			text = append(text, "o"+l)
		}
	}
	next := 0
	lines := func(n int) string {
		var sb strings.Builder
		for range n {
			sb.WriteString(text[next%len(text)])
			next++
		}
		return sb.String()
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	const repo, project = "https://git.example.org/gbb.git", "gbb"
	schedProps := store.Properties{"scheduler": prop(b, "all", "Scheduler")}
	for n := range builds {
		at := start.Add(time.Duration(n) * time.Minute)
		builder := builders[n%storeBuilders]
		rev := fmt.Sprintf("%040x", sha256.Sum256(fmt.Appendf(nil, "%d", n)))[:40]
		branch := []string{"master", "master", "master", "release-1.x", "feature/logs"}[n%5]
		ch, err := db.AddChange(store.Change{
			Author: "Dev Eloper <dev@example.org>", Committer: "Dev Eloper <dev@example.org>",
			Comments: fmt.Sprintf("pkg/build: change %d\n\nA longer description of what changed and why.", n),
			Branch:   branch, Revision: rev, Repository: repo, Project: project,
			RevLink: repo + "/commit/" + rev, When: at.Add(-time.Minute),
			Files: []string{"pkg/build/build.go", "pkg/build/build_test.go"},
		})
		must(err)
		_, brids, err := db.AddBuildset(store.NewBuildset{
			Reason:        "The AnyBranchScheduler scheduler named 'all' triggered this build",
			SchedulerName: "all",
			SourceStamps:  []store.SourceStamp{{Branch: branch, Revision: rev, Repository: repo, Project: project}},
			ChangeIDs:     []int64{ch.ID},
			Properties:    schedProps,
			BuilderIDs:    []int64{builder},
			SubmittedAt:   at,
		})
		must(err)
		brid := brids[builder]
		must(db.ClaimBuildRequest(brid, m.ID, at))
		bd, err := db.AddBuild(store.NewBuild{
			BuilderID: builder, BuildRequestID: brid, WorkerID: w.ID, MasterID: m.ID, StartedAt: at, StateString: "building",
			Properties: store.Properties{
				"scheduler":   prop(b, "all", "Scheduler"),
				"branch":      prop(b, branch, "Build"),
				"revision":    prop(b, rev, "Build"),
				"repository":  prop(b, repo, "Build"),
				"project":     prop(b, project, "Build"),
				"codebase":    prop(b, "", "Build"),
				"buildername": prop(b, fmt.Sprintf("builder-%02d", n%storeBuilders), "Builder"),
				"workername":  prop(b, "w0", "Worker"),
				"builddir":    prop(b, "/var/gbb-worker/builder", "Worker"),
			},
		})
		must(err)
		must(db.SetBuildProperty(bd.ID, "buildnumber", prop(b, bd.Number, "Build")))
		t := at
		for _, sd := range storeSteps {
			st, err := db.StartNewStep(bd.ID, sd.name, t)
			must(err)
			if sd.lines > 0 {
				lg, err := db.AddLog(st.ID, "stdio", "s")
				must(err)
				_, err = db.AppendLog(lg.ID, lines(sd.lines))
				must(err)
				must(db.FinishLog(lg.ID))
			}
			if sd.name == "git" {
				must(db.SetBuildProperty(bd.ID, "got_revision", prop(b, rev, "Git")))
			}
			t = t.Add(10 * time.Second)
			must(db.EndStep(st.ID, "", 0, t))
		}
		must(db.EndBuild(bd.ID, "build successful", 0, t.Add(time.Second)))
		must(db.CompleteBuildRequest(brid, 0, t.Add(time.Second)))
		if (n+1)%10000 == 0 {
			b.Logf("big store: %d builds in %v", n+1, time.Since(t0).Round(time.Second))
		}
	}
	at := start.Add(time.Duration(builds) * time.Minute)
	for k := range storePending {
		for _, builder := range builders {
			_, _, err := db.AddBuildset(store.NewBuildset{
				Reason: "a pending forced build", SchedulerName: "force", BuilderIDs: []int64{builder},
				Properties:  store.Properties{"owner": prop(b, "dev@example.org", "Force Build Form"), "reason": prop(b, "a pending forced build", "Force Build Form")},
				SubmittedAt: at.Add(time.Duration(k) * time.Second),
			})
			must(err)
		}
	}
	return time.Since(t0)
}

// bigStore returns the path of a copy of a store filled by fillStore, from
// the cache when there is one, and how long filling took (0 when cached).
func bigStore(b *testing.B, builds int) (string, time.Duration) {
	b.Helper()
	return cachedStore(b, fmt.Sprintf("store-%s-%d", storeVersion, builds), func(b *testing.B, path string) { fillStore(b, path, builds) })
}

// BenchmarkBigStore opens a store of GBB_BENCH_STORE_BUILDS builds (and ten
// log lines each) behind the real web server on loopback and times API
// queries and the front page, p50 and p99. gbb only.
func BenchmarkBigStore(b *testing.B) {
	once(b, "bigstore", func(b *testing.B) {
		builds := cfg().storeBuilds
		path, fill := bigStore(b, builds)
		if fill > 0 {
			b.Logf("filled the store with %d builds in %v (%.0f builds/s)", builds, fill.Round(time.Second), float64(builds)/fill.Seconds())
		}
		db, err := store.Open(path, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		ms, err := db.Masters()
		if err != nil || len(ms) == 0 {
			b.Fatalf("masters: %v", err)
		}
		// The force scheduler of a real master (pkg/scheduler), so that the
		// builder page renders its form.
		var names []string
		for n := range storeBuilders {
			names = append(names, fmt.Sprintf("builder-%02d", n))
		}
		scheds := scheduler.New([]config.Scheduler{{Type: "force", Name: "force", BuilderNames: names}}, db, nil, nil)
		pending, err := db.BuildRequests(store.BuildRequestFilter{Complete: new(false), Claimed: new(false)})
		if err != nil {
			b.Fatal(err)
		}
		if len(pending) != storeBuilders*storePending {
			b.Fatalf("the big store has %d pending requests, want %d", len(pending), storeBuilders*storePending)
		}
		srv := web.New(web.Config{Store: db, Forcer: scheds, MasterID: ms[0].ID, MasterName: ms[0].Name})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, lis) }()
		defer func() { cancel(); <-done }()
		base := "http://" + lis.Addr().String()
		client := &http.Client{Timeout: time.Minute}
		get := func(path string) []byte {
			resp, err := client.Get(base + path)
			if err != nil {
				b.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("GET %s: %s %v: %.200s", path, resp.Status, err, body)
			}
			return body
		}
		// mustHave fails unless page holds each of wants: a page that lost
		// what it claims to render would be fast for nothing.
		mustHave := func(path string, page []byte, wants ...string) {
			for _, want := range wants {
				if !bytes.Contains(page, []byte(want)) {
					b.Fatalf("GET %s: no %q in the page", path, want)
				}
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		queries := []struct {
			name string
			run  func()
		}{
			{"builds of a builder (order=-number, limit=20)", func() {
				get(fmt.Sprintf("/api/v2/builders/%d/builds?order=-number&limit=20", 1+rng.IntN(storeBuilders)))
			}},
			{fmt.Sprintf("last build of each builder (%d requests)", storeBuilders), func() {
				for n := range storeBuilders {
					get(fmt.Sprintf("/api/v2/builders/%d/builds?order=-number&limit=1", n+1))
				}
			}},
			{"one build with its steps (2 requests)", func() {
				id := 1 + rng.IntN(builds)
				get(fmt.Sprintf("/api/v2/builds/%d", id))
				get(fmt.Sprintf("/api/v2/builds/%d/steps", id))
			}},
			{"front page /", func() { get("/") }},
			{"builders page", func() { get("/builders") }},
			{"builder page (history, pending, force form)", func() {
				id := int64(1 + rng.IntN(storeBuilders))
				path := fmt.Sprintf("/builders/%d", id)
				page := get(path)
				last := (builds - int(id) + storeBuilders) / storeBuilders // the builder's newest build
				wants := []string{`id="forces"`, `id="force-force"`, `name="builderid" value="` + strconv.FormatInt(id, 10) + `"`,
					`<svg id="builder-chart"`, fmt.Sprintf(`<title id="builder-chart-title">Durations of the last %d builds`, min(100, builds/storeBuilders)),
					`id="pending-requests"`, fmt.Sprintf("/builders/%d/builds/%d", id, last)}
				for _, br := range pending {
					if br.BuilderID == id {
						wants = append(wants, fmt.Sprintf(`id="br-%d"`, br.ID))
					}
				}
				mustHave(path, page, wants...)
			}},
			{"waterfall page (60 builds with their steps, paged back)", func() {
				path := "/waterfall"
				if rng.IntN(2) == 1 {
					path += fmt.Sprintf("?before=%d", 62+rng.IntN(builds-61)) // 60 builds and older ones below it
				}
				mustHave(path, get(path), `<svg id="waterfall"`, `<desc id="waterfall-desc">60 builds of`, `id="waterfall-older"`)
			}},
			{"build page", func() {
				path := fmt.Sprintf("/builders/%d/builds/%d", 1+rng.IntN(storeBuilders), 1+rng.IntN(builds/storeBuilders))
				mustHave(path, get(path), "worker_preparation", "compile", "got_revision")
			}},
		}
		for _, q := range queries {
			q.run() // warm up
			var xs []float64
			for range cfg().queries {
				t0 := time.Now()
				q.run()
				xs = append(xs, float64(time.Since(t0))/float64(time.Millisecond))
			}
			note := fmt.Sprintf("%d builds over %d builders, each with its change, buildset, request, properties, %d steps and %d log lines; %d pending requests; %d samples", builds, storeBuilders, len(storeSteps), builds*storeLogLines(), storeBuilders*storePending, len(xs))
			record("6 big store", q.name+", p50", "ms", percentile(xs, 50), nil, lowerThan("p99 < 50 ms", 0, 50), nil, nil, note)
			record("6 big store", q.name+", p99", "ms", percentile(xs, 99), nil, lowerThan("p99 < 50 ms", 0, 50), nil, nil, note)
			b.Logf("%s: p50 %.2f ms, p99 %.2f ms", q.name, percentile(xs, 50), percentile(xs, 99))
		}
	})
}
