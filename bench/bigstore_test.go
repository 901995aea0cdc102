package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web"
)

const (
	storeBuilders      = 10
	storeLinesPerLog   = 10
	storeStepsPerBuild = 1
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

// fillStore writes builds builds over storeBuilders builders, each with one
// finished step and a stdio log of storeLinesPerLog lines, through
// pkg/store's public methods (one transaction per call: the store has no
// bulk import).
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
	var lines strings.Builder
	for n := range storeLinesPerLog {
		fmt.Fprintf(&lines, "o%s %d\n", logLine[:60], n)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	for n := range builds {
		at := start.Add(time.Duration(n) * time.Minute)
		bd, err := db.AddBuild(store.NewBuild{BuilderID: builders[n%storeBuilders], WorkerID: w.ID, MasterID: m.ID, StartedAt: at, StateString: "building"})
		must(err)
		st, err := db.AddStep(bd.ID, "shell")
		must(err)
		must(db.StartStep(st.ID, at))
		lg, err := db.AddLog(st.ID, "stdio", "s")
		must(err)
		_, err = db.AppendLog(lg.ID, lines.String())
		must(err)
		must(db.FinishLog(lg.ID))
		must(db.FinishStep(st.ID, 0, at.Add(30*time.Second)))
		must(db.FinishBuild(bd.ID, 0, at.Add(31*time.Second)))
		if (n+1)%10000 == 0 {
			b.Logf("big store: %d builds in %v", n+1, time.Since(t0).Round(time.Second))
		}
	}
	return time.Since(t0)
}

// bigStore returns the path of a copy of a store filled by fillStore, from
// the cache when there is one, and how long filling took (0 when cached).
func bigStore(b *testing.B, builds int) (string, time.Duration) {
	b.Helper()
	return cachedStore(b, fmt.Sprintf("store-%d", builds), func(b *testing.B, path string) { fillStore(b, path, builds) })
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
		srv := web.New(web.Config{Store: db, MasterID: ms[0].ID, MasterName: ms[0].Name})
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
		get := func(path string) {
			resp, err := client.Get(base + path)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("GET %s: %s: %.200s", path, resp.Status, body)
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
				get(fmt.Sprintf("/builders/%d", 1+rng.IntN(storeBuilders)))
			}},
			{"build page", func() {
				get(fmt.Sprintf("/builders/%d/builds/%d", 1+rng.IntN(storeBuilders), 1+rng.IntN(builds/storeBuilders)))
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
			note := fmt.Sprintf("%d builds, %d log lines, %d builders; %d samples", builds, builds*storeLinesPerLog, storeBuilders, len(xs))
			record("6 big store", q.name+", p50", "ms", percentile(xs, 50), nil, lowerThan("p99 < 50 ms", 0, 50), nil, nil, note)
			record("6 big store", q.name+", p99", "ms", percentile(xs, 99), nil, lowerThan("p99 < 50 ms", 0, 50), nil, nil, note)
			b.Logf("%s: p50 %.2f ms, p99 %.2f ms", q.name, percentile(xs, 50), percentile(xs, 99))
		}
	})
}
