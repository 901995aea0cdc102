package changesource

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/store"
)

// logBuffer collects what a poller logs, as text.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fileState is what a test compares of a file to know it was not rewritten.
type fileState struct {
	Size    int64
	ModTime time.Time
	Sum     [sha256.Size]byte
}

// snapshot returns the state of every file under dir, by relative path.
func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = fileState{Size: info.Size(), ModTime: info.ModTime(), Sum: sha256.Sum256(b)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// globAll returns the files under dir matching pattern, failing the test
// if there are none.
func globAll(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s in %s (%v)", pattern, dir, err)
	}
	return m
}

// repack packs every object of the bare repository dir, as a gc does:
// git fetches a few objects loose, and the damage is to its packfile.
func repack(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command(gitBin, "--git-dir="+dir, "repack", "-a", "-d", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git repack: %v\n%s", err, out)
	}
}

// unpack makes every object of the bare repository dir loose: go-git
// fetches into packfiles, and the damage is to a loose object.
func unpack(t *testing.T, dir string) {
	t.Helper()
	for _, pack := range globAll(t, dir, "objects/pack/*.pack") {
		moved := filepath.Join(t.TempDir(), "moved.pack")
		if err := os.Rename(pack, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(strings.TrimSuffix(pack, ".pack") + ".idx"); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(moved)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(gitBin, "--git-dir="+dir, "unpack-objects", "-q")
		cmd.Stdin = f
		out, err := cmd.CombinedOutput()
		f.Close()
		if err != nil {
			t.Fatalf("git unpack-objects: %v\n%s", err, out)
		}
	}
}

// looseObject is the path of object rev in the bare repository dir.
func looseObject(dir, rev string) string {
	return filepath.Join(dir, "objects", rev[:2], rev[2:])
}

// TestPollRepairsDamagedMirror damages the mirror between two polls, as a
// kill in the middle of a fetch may, while commits are pushed: the next
// poll finds the damage, logs it, makes a new mirror and announces exactly
// the new commits, once.
func TestPollRepairsDamagedMirror(t *testing.T) {
	t.Parallel()
	truncate := func(t *testing.T, path string) {
		t.Helper()
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, info.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	write := func(t *testing.T, path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		http   bool // the remote is served over HTTP (git-remote-http, smart protocol)
		damage func(t *testing.T, mirror, lastRev string)
		// what the warning says was damaged; empty when the fetch itself
		// mends the damage (go-git fetches again what the mirror lost, and
		// rewrites the ref), so that there is nothing to repair
		want string
	}{
		{
			name:   "empty ref file",
			damage: func(t *testing.T, mirror, _ string) { write(t, filepath.Join(mirror, "refs/heads/main"), "") },
			want:   "broken ref refs/heads/main",
		},
		{
			name: "empty ref file over http", http: true,
			damage: func(t *testing.T, mirror, _ string) { write(t, filepath.Join(mirror, "refs/heads/main"), "") },
			want:   "broken ref refs/heads/main",
		},
		{
			name: "truncated ref file over http", http: true,
			damage: func(t *testing.T, mirror, lastRev string) {
				write(t, filepath.Join(mirror, "refs/heads/main"), lastRev[:17])
			},
			// go-git reads the short name as one of a missing object, and
			// the fetch rewrites the ref: nothing to repair.
		},
		{
			name: "truncated packfile over http", http: true,
			damage: func(t *testing.T, mirror, _ string) {
				repack(t, mirror)
				for _, p := range globAll(t, mirror, "objects/pack/*.pack") {
					truncate(t, p)
				}
			},
			// go-git reads the packfile as far as it goes: the walk fails
			// in it, and the check finds the last seen tip unreadable.
			want: "last seen tip of main",
		},
		{
			name: "packfile without its index over http", http: true,
			damage: func(t *testing.T, mirror, _ string) {
				repack(t, mirror)
				for _, p := range globAll(t, mirror, "objects/pack/*.idx") {
					if err := os.Remove(p); err != nil {
						t.Fatal(err)
					}
				}
			},
			// go-git finds no object of the ref after the fetch.
			want: "ref refs/heads/main: object",
		},
		{
			name: "missing object",
			damage: func(t *testing.T, mirror, lastRev string) {
				unpack(t, mirror)
				if err := os.Remove(looseObject(mirror, lastRev)); err != nil {
					t.Fatal(err)
				}
			},
			// The fetch leaves out what the mirror's refs reach, so the
			// walk finds the last seen tip missing.
			want: "last seen tip of main",
		},
		{
			name: "truncated object",
			damage: func(t *testing.T, mirror, lastRev string) {
				unpack(t, mirror)
				truncate(t, looseObject(mirror, lastRev))
			},
			// The fetch moves the ref past it; the walk reads it.
			want: "last seen tip of main",
		},
		{
			name:   "garbage in HEAD",
			damage: func(t *testing.T, mirror, _ string) { write(t, filepath.Join(mirror, "HEAD"), "\x00\x01garbage\n") },
			want:   "HEAD",
		},
		{
			name: "garbage in HEAD over http", http: true,
			damage: func(t *testing.T, mirror, _ string) { write(t, filepath.Join(mirror, "HEAD"), "") },
			want:   "HEAD",
		},
		{
			name: "no HEAD (killed while made)",
			damage: func(t *testing.T, mirror, _ string) {
				if err := os.Remove(filepath.Join(mirror, "HEAD")); err != nil {
					t.Fatal(err)
				}
			},
			want: "no HEAD",
		},
		{
			name: "garbage in config",
			damage: func(t *testing.T, mirror, _ string) {
				write(t, filepath.Join(mirror, "config"), "[core\n\tbare = \x00\n")
			},
			want: "config",
		},
		{
			name: "garbage in config over http", http: true,
			damage: func(t *testing.T, mirror, _ string) { write(t, filepath.Join(mirror, "config"), "[[[[") },
			want:   "config",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRepo(t)
			r.commit("initial", "README", "hello\n")
			url := r.url()
			if tc.http {
				url, _ = serveHTTP(t, r)
			}
			db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
			workdir := filepath.Join(t.TempDir(), "gitpoller-work")
			var logs logBuffer
			rec := &recorder{}
			p := NewGitPoller(GitPollerConfig{RepoURL: url, Workdir: workdir}, db, rec.notify, logs.logger())
			poll(t, p)
			c1 := r.commit("one", "a", "1\n")
			poll(t, p)
			if diff := cmp.Diff([]brief{{"main", c1, "one"}}, briefs(rec.take())); diff != "" {
				t.Fatalf("before the damage (-want +got):\n%s", diff)
			}

			tc.damage(t, workdir, c1)
			c2 := r.commit("two", "a", "2\n")
			c3 := r.commit("three", "b", "3\n")
			poll(t, p)
			want := []brief{{"main", c2, "two"}, {"main", c3, "three"}}
			if diff := cmp.Diff(want, briefs(rec.take())); diff != "" {
				t.Errorf("after the damage (-want +got):\n%s", diff)
			}
			out := logs.String()
			var warning string
			for line := range strings.Lines(out) {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "git mirror damaged") {
					warning = line
				}
			}
			switch {
			case tc.want == "" && (warning != "" || strings.Contains(out, "rebuilt")):
				t.Errorf("a damage the fetch mends led to a repair; logged:\n%s", out)
			case tc.want != "" && (warning == "" || !strings.Contains(warning, tc.want)):
				t.Errorf("no warning of damage naming %q; logged:\n%s", tc.want, out)
			case tc.want != "" && !strings.Contains(out, "git mirror rebuilt"):
				t.Errorf("no log of the rebuilt mirror; logged:\n%s", out)
			}
			if _, err := os.Stat(workdir + ".damaged"); !os.IsNotExist(err) {
				t.Errorf("the damaged mirror is left behind: %v", err)
			}
			if err := checkMirror(workdir, map[string]string{"main": c3}); err != nil {
				t.Errorf("the new mirror: %v", err)
			}

			// The new mirror goes on as the old one did.
			poll(t, p)
			if got := rec.take(); len(got) != 0 {
				t.Errorf("a poll without news announced %v", briefs(got))
			}
			c4 := r.commit("four", "a", "4\n")
			poll(t, p)
			if diff := cmp.Diff([]brief{{"main", c4, "four"}}, briefs(rec.take())); diff != "" {
				t.Errorf("after the repair (-want +got):\n%s", diff)
			}
			all, err := db.Changes(store.ChangeFilter{})
			if err != nil {
				t.Fatal(err)
			}
			var revs []string
			for _, c := range all {
				revs = append(revs, c.Revision)
			}
			if diff := cmp.Diff([]string{c1, c2, c3, c4}, revs); diff != "" {
				t.Errorf("stored changes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPollUnreachableRemoteKeepsMirror polls a remote whose loopback port
// refuses connections: the poll fails, and the mirror is neither checked
// nor rebuilt nor written to, so a flaky remote costs no clone.
func TestPollUnreachableRemoteKeepsMirror(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	url, srv := serveHTTP(t, r)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	workdir := filepath.Join(t.TempDir(), "gitpoller-work")
	var logs logBuffer
	rec := &recorder{}
	p := NewGitPoller(GitPollerConfig{RepoURL: url, Workdir: workdir}, db, rec.notify, logs.logger())
	poll(t, p)
	c1 := r.commit("one", "a", "1\n")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c1, "one"}}, briefs(rec.take())); diff != "" {
		t.Fatalf("announced (-want +got):\n%s", diff)
	}

	srv.Close()
	before := snapshot(t, workdir)
	r.commit("two", "a", "2\n")
	for range 2 {
		err := p.Poll(t.Context())
		if err == nil || !strings.Contains(err.Error(), "list refs") {
			t.Fatalf("Poll of an unreachable remote: %v", err)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, workdir)); diff != "" {
		t.Errorf("the mirror changed (-before +after):\n%s", diff)
	}
	if out := logs.String(); strings.Contains(out, "damaged") || strings.Contains(out, "rebuilt") || strings.Contains(out, "mirror checked") {
		t.Errorf("an unreachable remote led to a check or a repair of the mirror:\n%s", out)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("announced %v", briefs(got))
	}
	if _, err := os.Stat(workdir + ".damaged"); !os.IsNotExist(err) {
		t.Errorf("a mirror was set aside: %v", err)
	}
}

// TestPollSoundMirrorNotRebuilt makes a poll fail in a way that may lie in
// the mirror but does not (the local remote lost an object): the check
// finds the mirror sound, so the poll fails and the mirror stays as it was.
func TestPollSoundMirrorNotRebuilt(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	workdir := filepath.Join(t.TempDir(), "gitpoller-work")
	var logs logBuffer
	rec := &recorder{}
	p := NewGitPoller(GitPollerConfig{RepoURL: r.url(), Workdir: workdir}, db, rec.notify, logs.logger())
	poll(t, p)
	before := snapshot(t, workdir)

	c1 := r.commit("one", "a", "1\n")
	if err := os.Remove(looseObject(filepath.Join(r.dir, ".git"), c1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Poll(t.Context()); err == nil {
		t.Fatal("Poll of a remote that lost its tip's commit succeeded")
	}
	if diff := cmp.Diff(before, snapshot(t, workdir)); diff != "" {
		t.Errorf("the mirror changed (-before +after):\n%s", diff)
	}
	if out := logs.String(); strings.Contains(out, "damaged") || !strings.Contains(out, "checked after a failed poll: sound") {
		t.Errorf("a sound mirror was taken for damaged, or not checked:\n%s", out)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("announced %v", briefs(got))
	}
}

// TestPollKeepsForeignWorkdir points a poller at a directory that holds
// someone's files and no repository: the poll fails and names the
// directory, and nothing in it is moved or removed.
func TestPollKeepsForeignWorkdir(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	workdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(workdir, "master.toml"), []byte("title = \"mine\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(workdir, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, workdir)
	var logs logBuffer
	p := NewGitPoller(GitPollerConfig{RepoURL: r.url(), Workdir: workdir}, db, nil, logs.logger())
	err := p.Poll(t.Context())
	if err == nil || !strings.Contains(err.Error(), "master.toml") || !strings.Contains(err.Error(), "not removing it") {
		t.Fatalf("Poll into a directory with someone's files: %v", err)
	}
	if diff := cmp.Diff(before, snapshot(t, workdir)); diff != "" {
		t.Errorf("the directory changed (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(workdir + ".damaged"); !os.IsNotExist(err) {
		t.Errorf("the directory was set aside: %v", err)
	}
}

// TestPollFetchCutKeepsMirror lets the remote list its refs, then cuts the
// connection in the middle of each fetch: the poll fails, the mirror is
// checked, found sound, and left as it was; once the remote is whole the
// next poll announces the commit.
func TestPollFetchCutKeepsMirror(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	backend := gitBackend(t, r)
	var cut atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if cut.Load() && strings.HasSuffix(req.URL.Path, "/git-upload-pack") && fetchRequest(t, req) {
			w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("0008NAK\n0023\x01PACK")) // then the connection drops
			panic(http.ErrAbortHandler)
		}
		backend.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/" + filepath.Base(r.dir)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	workdir := filepath.Join(t.TempDir(), "gitpoller-work")
	var logs logBuffer
	rec := &recorder{}
	p := NewGitPoller(GitPollerConfig{RepoURL: url, Workdir: workdir}, db, rec.notify, logs.logger())
	poll(t, p)
	c1 := r.commit("one", "a", "1\n")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c1, "one"}}, briefs(rec.take())); diff != "" {
		t.Fatalf("announced (-want +got):\n%s", diff)
	}

	before := snapshot(t, workdir)
	cut.Store(true)
	c2 := r.commit("two", "a", "2\n")
	err := p.Poll(t.Context())
	if err == nil || !strings.Contains(err.Error(), "fetch") {
		t.Fatalf("Poll with the fetch cut: %v", err)
	}
	// git may leave a temporary pack behind; what the mirror held is
	// untouched and nothing was set aside or rebuilt.
	after := snapshot(t, workdir)
	for path, st := range before {
		if after[path] != st {
			t.Errorf("%s changed with the fetch cut", path)
		}
	}
	if out := logs.String(); strings.Contains(out, "damaged") || strings.Contains(out, "rebuilt") || !strings.Contains(out, "checked after a failed poll: sound") {
		t.Errorf("a cut fetch led to a repair, or to no check of the mirror:\n%s", out)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("announced %v", briefs(got))
	}

	cut.Store(false)
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c2, "two"}}, briefs(rec.take())); diff != "" {
		t.Errorf("after the remote is whole (-want +got):\n%s", diff)
	}
}

// fetchRequest reports whether req asks git-upload-pack for objects (not
// for the list of refs, which protocol v2 asks by the same POST), and
// leaves its body to be read again.
func fetchRequest(t *testing.T, req *http.Request) bool {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Errorf("read the request: %v", err)
		return false
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	text := body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Errorf("read the gzipped request: %v", err)
			return false
		}
		if text, err = io.ReadAll(zr); err != nil {
			t.Errorf("read the gzipped request: %v", err)
			return false
		}
	}
	return !bytes.Contains(text, []byte("command=ls-refs"))
}

// TestPollRepairAfterForcePush damages the mirror while the remote is
// force-pushed past the last seen tip: the new mirror never gets that tip,
// but the walk reads it from the damaged mirror set aside, so the commits
// below it, announced before, are not announced again.
func TestPollRepairAfterForcePush(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	workdir := filepath.Join(t.TempDir(), "gitpoller-work")
	var logs logBuffer
	rec := &recorder{}
	p := NewGitPoller(GitPollerConfig{RepoURL: r.url(), Workdir: workdir}, db, rec.notify, logs.logger())
	poll(t, p)
	b := r.commit("base", "a", "1\n")
	c1 := r.commit("dropped", "a", "2\n")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", b, "base"}, {"main", c1, "dropped"}}, briefs(rec.take())); diff != "" {
		t.Fatalf("before the damage (-want +got):\n%s", diff)
	}

	if err := os.WriteFile(filepath.Join(workdir, "refs/heads/main"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r.git("reset", "-q", "--hard", b)
	n1 := r.commit("new", "a", "3\n")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", n1, "new"}}, briefs(rec.take())); diff != "" {
		t.Errorf("after the repair (-want +got):\n%s", diff)
	}
	if out := logs.String(); !strings.Contains(out, "git mirror rebuilt") {
		t.Errorf("no repair logged:\n%s", out)
	}
	if _, err := os.Stat(workdir + ".damaged"); !os.IsNotExist(err) {
		t.Errorf("the damaged mirror is left behind: %v", err)
	}
}

// TestPollCancelStopsHungFetch lets the remote list its refs, then hangs
// in the middle of the fetch: cancelling the poll returns it, the remote
// sees its connection close, and the mirror's refs stay as they were.
func TestPollCancelStopsHungFetch(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	backend := gitBackend(t, r)
	var hang atomic.Bool
	hung := make(chan struct{}, 1)
	gone := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if hang.Load() && strings.HasSuffix(req.URL.Path, "/git-upload-pack") && fetchRequest(t, req) {
			w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("0008NAK\n"))
			w.(http.Flusher).Flush()
			hung <- struct{}{}
			<-req.Context().Done() // the client went away
			gone <- struct{}{}
			return
		}
		backend.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/" + filepath.Base(r.dir)
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	workdir := filepath.Join(t.TempDir(), "gitpoller-work")
	rec := &recorder{}
	p := NewGitPoller(GitPollerConfig{RepoURL: url, Workdir: workdir}, db, rec.notify, nil)
	poll(t, p)
	before := snapshot(t, filepath.Join(workdir, "refs"))

	hang.Store(true)
	r.commit("one", "a", "1\n")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Poll(ctx) }()
	select {
	case <-hung:
	case err := <-done:
		t.Fatalf("Poll returned before the fetch hung: %v", err)
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("a cancelled Poll returned %v", err)
	}
	<-gone
	if diff := cmp.Diff(before, snapshot(t, filepath.Join(workdir, "refs"))); diff != "" {
		t.Errorf("the mirror's refs changed (-before +after):\n%s", diff)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("announced %v", briefs(got))
	}
}

// TestInputClosedEarly: go-git's "closing input: EOF" from an ssh session
// the remote closed first is fetched again; other errors are not.
func TestInputClosedEarly(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("closing input: EOF"), true},
		{fmt.Errorf("fetch: %w", errors.New("closing input: EOF")), true},
		{errors.New("closing input: broken pipe"), false},
		{errors.New("authentication required"), false},
	} {
		if got := inputClosedEarly(tt.err); got != tt.want {
			t.Errorf("inputClosedEarly(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
