package main

import (
	"context"
	"fmt"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gbb-ci/gbb/internal/testpg"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestCopyDBKilledAndResumed: `gbb-master copy-db` from bbolt to
// PostgreSQL, killed with SIGKILL in the middle of the log chunks, then
// run again, finishes the copy: copied back to bbolt, every log reads as
// in the source, and the builds are the source's. It prints the counts and
// never the URL's password.
func TestCopyDBKilledAndResumed(t *testing.T) {
	t.Parallel()
	bin := buildMaster(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "state.db")
	db, err := store.Open(src, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := db.EnsureBuilder("a")
	if err != nil {
		t.Fatal(err)
	}
	// Many chunks, so that the copy of one at a time lasts seconds: the
	// logs are written at once, so that their commits are shared.
	const logs, perLog = 6, 1000
	const chunks = logs * perLog
	logIDs := make([]int64, logs)
	want := make([]string, logs)
	var wg sync.WaitGroup
	errs := make(chan error, logs)
	for i := range logs {
		bd, err := db.AddBuild(store.NewBuild{BuilderID: b.ID, StartedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		s, err := db.AddStep(bd.ID, "shell")
		if err != nil {
			t.Fatal(err)
		}
		l, err := db.AddLog(s.ID, "stdio", "s")
		if err != nil {
			t.Fatal(err)
		}
		logIDs[i] = l.ID
		wg.Add(1)
		go func() {
			defer wg.Done()
			var all strings.Builder
			for k := range perLog {
				line := fmt.Sprintf("o build %d chunk %d\n", i, k)
				all.WriteString(line)
				if _, err := db.AppendLog(l.ID, line); err != nil {
					errs <- err
					return
				}
			}
			want[i] = all.String()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	url := newCopyDatabase(t)
	// Trust authentication ignores the password; the command must not
	// print it.
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = neturl.UserPassword(u.User.Username(), "s3cr3t")
	withPW := u.String()
	cmd := exec.Command(bin, "copy-db", "--batch", "1", "bbolt:"+src, withPW)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var copied int
	for deadline := time.Now().Add(2 * time.Minute); ; {
		// The table exists once the command has migrated the schema.
		if conn.QueryRow(context.Background(), "SELECT count(*) FROM logchunks").Scan(&copied) == nil && copied > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("copy-db ended before it could be killed (%v):\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log chunk copied in 2 minutes:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond) // polling the database for a condition
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM logchunks").Scan(&copied); err != nil {
		t.Fatal(err)
	}
	if copied >= chunks {
		t.Fatalf("copy-db was killed after the chunks: %d copied", copied)
	}
	t.Logf("killed with %d of %d chunks copied", copied, chunks)

	res, err := exec.Command(bin, "copy-db", "bbolt:"+src, withPW).CombinedOutput()
	if err != nil {
		t.Fatalf("copy-db run again: %v\n%s", err, res)
	}
	all := out.String() + string(res)
	if strings.Contains(all, "s3cr3t") {
		t.Errorf("the password is printed:\n%s", all)
	}
	if !strings.Contains(string(res), fmt.Sprintf("log chunks    %d    %d", chunks, chunks)) ||
		!strings.Contains(string(res), "every count matches") {
		t.Errorf("the counts are not printed:\n%s", res)
	}

	back := filepath.Join(dir, "back.db")
	if res, err := exec.Command(bin, "copy-db", url, back).CombinedOutput(); err != nil {
		t.Fatalf("copy-db back: %v\n%s", err, res)
	}
	bdb, err := store.Open(back, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	for i, id := range logIDs {
		l, err := bdb.Log(id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := bdb.LogLines(id, 0, l.NumLines)
		if err != nil || got != want[i] {
			t.Errorf("log %d: %d bytes, want %d (%v)", id, len(got), len(want[i]), err)
		}
	}
	if err := bdb.Check(); err != nil {
		t.Error(err)
	}
}

// TestCopyDBUsage: copy-db wants two URLs.
func TestCopyDBUsage(t *testing.T) {
	t.Parallel()
	err := run([]string{"copy-db", "only-one"})
	if ee, ok := err.(*exitError); !ok || ee.code != 2 || !strings.Contains(err.Error(), "FROM_URL TO_URL") {
		t.Errorf("copy-db with one URL: %v", err)
	}
}

// testPG is the PostgreSQL of this test binary, started by the first
// test that needs one; TestMain stops it.
var (
	testPGOnce sync.Once
	testPG     *testpg.Server
	testPGErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testPG != nil {
		if err := testPG.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testpg:", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// newCopyDatabase creates an empty database, dropped when t ends.
func newCopyDatabase(t *testing.T) string {
	t.Helper()
	testPGOnce.Do(func() { testPG, testPGErr = testpg.Start() })
	if testPGErr != nil {
		t.Fatalf("start PostgreSQL: %v", testPGErr)
	}
	return testPG.NewDatabase(t)
}
