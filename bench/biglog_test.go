package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web"
)

// BenchmarkBigLog stores one 100 MB log (GBB_BENCH_LOG_MB) and times how
// fast its log page and its first lines through the API answer: the issue's
// "opening a 100 MB log shows its first lines in under 200 ms". gbb only.
func BenchmarkBigLog(b *testing.B) {
	once(b, "biglog", func(b *testing.B) {
		mb := cfg().logMB
		db, err := store.Open(filepath.Join(b.TempDir(), "state.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		ms, err := db.EnsureMaster("bench")
		if err != nil {
			b.Fatal(err)
		}
		bl, _ := db.EnsureBuilder("biglog")
		_, brids, err := db.AddBuildset(store.NewBuildset{BuilderIDs: []int64{bl.ID}})
		if err != nil {
			b.Fatal(err)
		}
		bd, err := db.AddBuild(store.NewBuild{BuilderID: bl.ID, BuildRequestID: brids[bl.ID], MasterID: ms.ID})
		if err != nil {
			b.Fatal(err)
		}
		st, _ := db.AddStep(bd.ID, "shell")
		lg, err := db.AddLog(st.ID, "stdio", "s")
		if err != nil {
			b.Fatal(err)
		}
		// The real build output of testdata/buildlog.txt.gz, as stdio
		// lines ("o" and the line), in batches of about 1 MiB.
		var batch strings.Builder
		for batch.Len() < 1<<20 {
			for _, l := range strings.SplitAfter(string(mustBuildLog(b)), "\n") {
				if l != "" && batch.Len() < 1<<20 {
					batch.WriteString("o" + l)
				}
			}
		}
		for written := 0; written < mb<<20; written += batch.Len() {
			if _, err := db.AppendLog(lg.ID, batch.String()); err != nil {
				b.Fatal(err)
			}
		}
		srv := web.New(web.Config{Store: db, MasterID: ms.ID, MasterName: ms.Name})
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
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("GET %s: %s", path, resp.Status)
			}
		}
		queries := []struct{ name, path string }{
			{"log page (its last lines)", fmt.Sprintf("/builders/%d/builds/%d/steps/0/logs/stdio", bl.ID, bd.Number)},
			{"log page, first lines", fmt.Sprintf("/builders/%d/builds/%d/steps/0/logs/stdio?first=1", bl.ID, bd.Number)},
			{"API first 1000 lines", fmt.Sprintf("/api/v2/logs/%d/contents?offset=0&limit=1000", lg.ID)},
		}
		for _, q := range queries {
			get(q.path) // warm up
			var xs []float64
			for range cfg().queries {
				t0 := time.Now()
				get(q.path)
				xs = append(xs, float64(time.Since(t0))/float64(time.Millisecond))
			}
			note := fmt.Sprintf("one %d MB log (testdata/buildlog.txt.gz repeated); %d samples", mb, len(xs))
			record("6 big store", q.name+", p99", "ms", percentile(xs, 99), nil, lowerThan("< 200 ms", 0, 200), nil, nil, note)
			b.Logf("%s: p50 %.2f ms, p99 %.2f ms", q.name, percentile(xs, 50), percentile(xs, 99))
		}
	})
}
