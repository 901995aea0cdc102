package changesource

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/store"
)

// base is the time of the first test commit; each next one is a minute on.
var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// repo is a git repository made for a test with the git binary.
type repo struct {
	t   *testing.T
	dir string
	n   int // commits made, for their times
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	r := &repo{t: t, dir: filepath.Join(t.TempDir(), "upstream")}
	r.git("init", "-q", "-b", "main", r.dir)
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command(gitBin, args...)
	if args[0] != "init" {
		cmd.Dir = r.dir
	}
	when := base.Add(time.Duration(r.n) * time.Minute).Format(time.RFC3339)
	cmd.Env = append(fixtureEnv(),
		"GIT_AUTHOR_NAME=A U Thor", "GIT_AUTHOR_EMAIL=author@example.org", "GIT_AUTHOR_DATE="+when,
		"GIT_COMMITTER_NAME=C O Mitter", "GIT_COMMITTER_EMAIL=committer@example.org", "GIT_COMMITTER_DATE="+when,
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+r.t.TempDir(),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (name, content pairs) and commits them with msg on
// the current branch, returning the new revision.
func (r *repo) commit(msg string, files ...string) string {
	r.t.Helper()
	for i := 0; i+1 < len(files); i += 2 {
		path := filepath.Join(r.dir, files[i])
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(files[i+1]), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	r.n++
	return r.git("rev-parse", "HEAD")
}

func (r *repo) url() string { return "file://" + r.dir }

func (r *repo) when(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }

// openStore opens a store at path; cleanup checks and closes it.
func openStore(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		db.Close()
	})
	return db
}

// recorder collects what a poller announces.
type recorder struct {
	mu      sync.Mutex
	changes []store.Change
	calls   int
}

func (r *recorder) notify(cs []store.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, cs...)
	r.calls++
}

// take returns what was announced since the last take.
func (r *recorder) take() []store.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.changes
	r.changes = nil
	return cs
}

func newTestPoller(t *testing.T, cfg GitPollerConfig, st Store) (*GitPoller, *recorder) {
	t.Helper()
	if cfg.Workdir == "" {
		cfg.Workdir = filepath.Join(t.TempDir(), "gitpoller-work")
	}
	rec := &recorder{}
	return NewGitPoller(cfg, st, rec.notify, nil), rec
}

func poll(t *testing.T, p *GitPoller) {
	t.Helper()
	if err := p.Poll(t.Context()); err != nil {
		t.Fatalf("Poll: %v", err)
	}
}

// brief is what a test compares of a change.
type brief struct{ Branch, Revision, Comments string }

func briefs(cs []store.Change) []brief {
	var out []brief
	for _, c := range cs {
		out = append(out, brief{c.Branch, c.Revision, c.Comments})
	}
	return out
}

func TestPollAnnouncesNewCommits(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{
		RepoURL:  r.url(),
		Category: "cat",
		Project:  "proj",
		RevLink:  "https://example.org/commit/%s",
	}, db)

	poll(t, p)
	if got := rec.take(); len(got) != 0 || rec.calls != 0 {
		t.Fatalf("first poll announced %v", got)
	}

	rev1 := r.commit("add a\n\nwith a body\n", "a.go", "package a\n", "dir/b.go", "package b\n")
	rev2 := r.commit("change a", "a.go", "package a // changed\n")
	r.git("rm", "-q", "README")
	rev3 := r.commit("remove README")
	poll(t, p)
	got := rec.take()
	want := []store.Change{
		{
			ID: 1, SourceStampID: 1,
			Author: "A U Thor <author@example.org>", Committer: "C O Mitter <committer@example.org>",
			Comments: "add a\n\nwith a body", Branch: "main", Revision: rev1,
			Repository: r.url(), Project: "proj", Category: "cat",
			RevLink: "https://example.org/commit/" + rev1,
			When:    r.when(1), Files: []string{"a.go", "dir/b.go"},
		},
		{
			ID: 2, SourceStampID: 2, ParentChangeIDs: []int64{1},
			Author: "A U Thor <author@example.org>", Committer: "C O Mitter <committer@example.org>",
			Comments: "change a", Branch: "main", Revision: rev2,
			Repository: r.url(), Project: "proj", Category: "cat",
			RevLink: "https://example.org/commit/" + rev2,
			When:    r.when(2), Files: []string{"a.go"},
		},
		{
			ID: 3, SourceStampID: 3, ParentChangeIDs: []int64{2},
			Author: "A U Thor <author@example.org>", Committer: "C O Mitter <committer@example.org>",
			Comments: "remove README", Branch: "main", Revision: rev3,
			Repository: r.url(), Project: "proj", Category: "cat",
			RevLink: "https://example.org/commit/" + rev3,
			When:    r.when(3), Files: []string{"README"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
	stored, err := db.Changes(store.ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	ss, err := db.SourceStamp(stored[0].SourceStampID)
	if err != nil || ss.Revision != rev1 || ss.Branch != "main" || ss.Repository != r.url() || ss.Project != "proj" {
		t.Errorf("sourcestamp of the first change: %+v %v", ss, err)
	}

	// Nothing new: nothing announced, nothing written.
	poll(t, p)
	if got := rec.take(); len(got) != 0 || rec.calls != 1 {
		t.Errorf("poll without news announced %v (calls %d)", got, rec.calls)
	}
}

func TestPollNewBranchAnnouncesItsTip(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "f", "1")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url(), AllBranches: true}, db)
	poll(t, p)

	r.git("checkout", "-q", "-b", "feature")
	r.commit("feature 1", "f", "2")
	tip := r.commit("feature 2", "f", "3")
	r.git("checkout", "-q", "-b", "same-as-feature") // new branch, no new commit
	poll(t, p)
	want := []brief{{"feature", tip, "feature 2"}}
	if diff := cmp.Diff(want, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}

	// One more commit on the branch, now known: announced alone.
	r.git("checkout", "-q", "feature")
	next := r.commit("feature 3", "f", "4")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"feature", next, "feature 3"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
}

func TestPollBuildPushesWithNoCommits(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	first := r.commit("initial", "f", "1")
	second := r.commit("second", "f", "2")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url(), AllBranches: true, BuildPushesWithNoCommits: true}, db)
	poll(t, p)
	r.git("branch", "copy")               // a new branch at a known commit
	r.git("reset", "-q", "--hard", first) // main moves back
	poll(t, p)
	want := []brief{{"copy", second, "second"}, {"main", first, "initial"}}
	if diff := cmp.Diff(want, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
}

func TestPollForcePush(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	base := r.commit("base", "f", "1")
	r.commit("dropped", "f", "2")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url()}, db)
	poll(t, p)
	r.git("reset", "-q", "--hard", base)
	n1 := r.commit("new 1", "f", "3")
	n2 := r.commit("new 2", "f", "4")
	poll(t, p)
	want := []brief{{"main", n1, "new 1"}, {"main", n2, "new 2"}}
	if diff := cmp.Diff(want, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
}

func TestPollMerge(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "f", "1")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url(), Branches: []string{"main", "refs/heads/topic"}}, db)
	r.git("branch", "topic")
	poll(t, p)

	r.git("checkout", "-q", "topic")
	t1 := r.commit("topic 1", "t", "1")
	r.git("checkout", "-q", "main")
	m1 := r.commit("main 1", "m", "1")
	r.git("merge", "-q", "--no-ff", "-m", "merge topic", "topic")
	r.n++
	merge := r.git("rev-parse", "HEAD")
	poll(t, p)
	// Branches are polled by name: main's walk finds the topic's commit
	// first, and announces it once, on main; topic has nothing new left.
	want := []brief{
		{"main", t1, "topic 1"},
		{"main", m1, "main 1"},
		{"main", merge, "merge topic"},
	}
	got := rec.take()
	if diff := cmp.Diff(want, briefs(got)); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
	if len(got) == 3 {
		if diff := cmp.Diff([]string{"t"}, got[2].Files); diff != "" {
			t.Errorf("files of the merge, against its first parent (-want +got):\n%s", diff)
		}
	}
}

func TestPollRestart(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "f", "1")
	path := filepath.Join(t.TempDir(), "state.db")
	workdir := filepath.Join(t.TempDir(), "gitpoller-work")
	cfg := GitPollerConfig{RepoURL: r.url(), Workdir: workdir}

	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, rec := newTestPoller(t, cfg, db)
	poll(t, p)
	c1 := r.commit("before the restart", "f", "2")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c1, "before the restart"}}, briefs(rec.take())); diff != "" {
		t.Errorf("before the restart (-want +got):\n%s", diff)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Pushed while the master is down.
	c2 := r.commit("while down 1", "f", "3")
	c3 := r.commit("while down 2", "f", "4")

	db = openStore(t, path)
	p, rec = newTestPoller(t, cfg, db)
	poll(t, p)
	want := []brief{{"main", c2, "while down 1"}, {"main", c3, "while down 2"}}
	if diff := cmp.Diff(want, briefs(rec.take())); diff != "" {
		t.Errorf("after the restart (-want +got):\n%s", diff)
	}
	poll(t, p)
	if got := rec.take(); len(got) != 0 {
		t.Errorf("second poll after the restart announced %v", briefs(got))
	}
	all, err := db.Changes(store.ChangeFilter{})
	if err != nil || len(all) != 3 {
		t.Errorf("stored %d changes (%v), want 3", len(all), err)
	}

	// A new mirror (workdir lost) with the same store announces nothing old.
	p, rec = newTestPoller(t, GitPollerConfig{RepoURL: r.url()}, db)
	poll(t, p)
	if got := rec.take(); len(got) != 0 {
		t.Errorf("poll with a new mirror announced %v", briefs(got))
	}
}

func TestPollBranchSelection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  GitPollerConfig
		want []string // branches announced
	}{
		{"default branch", GitPollerConfig{}, []string{"main"}},
		{"listed", GitPollerConfig{Branches: []string{"dev", "release/1", "gone"}}, []string{"dev", "release/1"}},
		{"all", GitPollerConfig{AllBranches: true}, []string{"dev", "main", "release/1", "release/2"}},
		{"regex", GitPollerConfig{BranchRegex: regexp.MustCompile(`^release/`)}, []string{"release/1", "release/2"}},
		{"only tags", GitPollerConfig{OnlyTags: true}, []string{"refs/tags/v1", "refs/tags/v2-rc"}},
		{"only tags regex", GitPollerConfig{OnlyTags: true, BranchRegex: regexp.MustCompile(`^v\d+$`)}, []string{"refs/tags/v1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRepo(t)
			r.commit("initial", "f", "0")
			for _, b := range []string{"dev", "release/1", "release/2"} {
				r.git("branch", b)
			}
			db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
			tc.cfg.RepoURL = r.dir // a plain path works as well as file://
			p, rec := newTestPoller(t, tc.cfg, db)
			poll(t, p)
			for i, b := range []string{"main", "dev", "release/1", "release/2"} {
				r.git("checkout", "-q", b)
				r.commit("on "+b, "f", fmt.Sprint(i+1))
			}
			r.git("checkout", "-q", "main")
			r.git("tag", "-a", "-m", "version 1", "v1", "dev")
			r.git("tag", "v2-rc", "release/1")
			poll(t, p)
			var got []string
			for _, c := range rec.take() {
				got = append(got, c.Branch)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("branches announced (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPollOnlyTagsPeelsAnnotatedTags(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "f", "0")
	r.git("tag", "-a", "-m", "v0", "v0")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url(), OnlyTags: true}, db)
	poll(t, p)
	r.commit("one", "f", "1")
	rev := r.commit("two", "f", "2")
	r.git("tag", "-a", "-m", "release 1", "v1")
	poll(t, p)
	// A new tag is a new "branch": its commit alone is announced.
	want := []brief{{"refs/tags/v1", rev, "two"}}
	if diff := cmp.Diff(want, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
}

func TestPollFailingRemote(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "later")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: "file://" + dir}, db)
	err := p.Poll(t.Context())
	if err == nil || !strings.Contains(err.Error(), "poll file://"+dir) {
		t.Fatalf("Poll of a missing repository: %v", err)
	}
	if v, found, _ := db.GetState(p.Name(), "lastRev"); found {
		t.Errorf("a failed poll stored state %s", v)
	}

	// The repository appears: the next poll works.
	r := &repo{t: t, dir: dir}
	r.git("init", "-q", "-b", "main", dir)
	r.commit("initial", "f", "0")
	poll(t, p)
	rev := r.commit("next", "f", "1")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", rev, "next"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
	if p.Name() != "GitPoller:file://"+dir {
		t.Errorf("default name %q", p.Name())
	}
}

func TestPollNeedsWorkdir(t *testing.T) {
	t.Parallel()
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p := NewGitPoller(GitPollerConfig{RepoURL: "file:///nowhere"}, db, nil, nil)
	if err := p.Poll(t.Context()); err == nil || !strings.Contains(err.Error(), "no workdir") {
		t.Errorf("Poll without a workdir: %v", err)
	}
}

// logSignal is a slog.Handler that sends the message of each record on a
// channel, so that a test can wait for what a poller logs.
type logSignal chan string

func (h logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h logSignal) Handle(_ context.Context, r slog.Record) error {
	h <- r.Message
	return nil
}
func (h logSignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logSignal) WithGroup(string) slog.Handler      { return h }

// waitLog waits for a message that starts with prefix.
func waitLog(t *testing.T, logs logSignal, prefix string) {
	t.Helper()
	for msg := range logs {
		if strings.HasPrefix(msg, prefix) {
			return
		}
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "f", "0")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	logs := make(logSignal, 100)
	// A poll at launch records the state; the long interval never fires.
	p := NewGitPoller(GitPollerConfig{
		RepoURL: r.url(), Workdir: filepath.Join(t.TempDir(), "w"),
		PollAtLaunch: true, PollInterval: time.Hour,
	}, db, nil, slog.New(logs))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	waitLog(t, logs, "first poll")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, found, _ := db.GetState(p.Name(), "lastRev"); !found {
		t.Error("no state after the poll at launch")
	}
}

func TestRunKeepsPollingAfterErrors(t *testing.T) {
	t.Parallel()
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	logs := make(logSignal, 100)
	p := NewGitPoller(GitPollerConfig{
		RepoURL: filepath.Join(t.TempDir(), "missing"), Workdir: filepath.Join(t.TempDir(), "w"),
		PollAtLaunch: true, PollInterval: time.Millisecond,
	}, db, nil, slog.New(logs))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	for range 3 {
		waitLog(t, logs, "poll failed") // three failed polls in a row: Run goes on
	}
	cancel()
	go func() {
		for range logs { // a poll may still be logging
		}
	}()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	close(logs)
}

func TestPollFiles(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "old name", "content\n", "dir/keep", "k\n")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url(), AllBranches: true}, db)
	poll(t, p)

	r.git("mv", "old name", "dir/new name")
	renamed := r.commit("rename")
	empty := r.commit("nothing changed")
	r.git("checkout", "-q", "--orphan", "orphan")
	r.git("rm", "-q", "-r", "--cached", ".")
	r.git("clean", "-q", "-f", "-d")
	root := r.commit("a root of its own", "x", "1\n", "y/z", "2\n")
	poll(t, p)
	got := map[string][]string{}
	for _, c := range rec.take() {
		got[c.Revision] = c.Files
	}
	want := map[string][]string{
		renamed: {"dir/new name", "old name"}, // a rename is both names
		empty:   nil,
		root:    {"x", "y/z"}, // a root commit: every file
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

// TestPollBigPush announces a push of many commits, in order: their
// details are read by a few git commands, not one per commit.
func TestPollBigPush(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	first := r.commit("initial", "f", "0")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url()}, db)
	poll(t, p)

	const n = 300
	var stream strings.Builder
	for i := range n {
		when := base.Add(time.Duration(i+1) * time.Minute).Unix()
		msg := fmt.Sprintf("commit %d\n\nwith\x01odd bytes\n", i)
		fmt.Fprintf(&stream, "commit refs/heads/main\nmark :%d\n", i+1)
		fmt.Fprintf(&stream, "author A U Thor <author@example.org> %d +0200\n", when)
		fmt.Fprintf(&stream, "committer C O Mitter <committer@example.org> %d +0200\n", when)
		fmt.Fprintf(&stream, "data %d\n%s", len(msg), msg)
		if i == 0 {
			fmt.Fprintf(&stream, "from %s\n", first)
		}
		fmt.Fprintf(&stream, "M 644 inline file-%d\ndata 2\n%d\n\n", i%7, i%10)
	}
	cmd := exec.Command(gitBin, "fast-import", "--quiet")
	cmd.Dir = r.dir
	cmd.Env = fixtureEnv()
	cmd.Stdin = strings.NewReader(stream.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	poll(t, p)
	got := rec.take()
	if len(got) != n {
		t.Fatalf("announced %d changes, want %d", len(got), n)
	}
	for i, c := range got {
		want := fmt.Sprintf("commit %d\n\nwith\x01odd bytes", i)
		if c.Comments != want || !c.When.Equal(base.Add(time.Duration(i+1)*time.Minute)) || c.When.Location() != time.UTC {
			t.Fatalf("change %d: comments %q, when %v", i, c.Comments, c.When)
		}
		if diff := cmp.Diff([]string{fmt.Sprintf("file-%d", i%7)}, c.Files); i >= 7 && i%10 != i%7 && diff != "" {
			t.Errorf("change %d: files (-want +got):\n%s", i, diff)
		}
	}
}

// TestPollCancelStopsFetch cancels a poll hung on a remote that never
// answers: Poll returns, and the remote sees its connection closing.
func TestPollCancelStopsFetch(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the listener is closed: cleanups run last first
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 10)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	})
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, _ := newTestPoller(t, GitPollerConfig{RepoURL: "http://" + ln.Addr().String() + "/repo.git"}, db)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Poll(ctx) }()
	var c net.Conn
	select {
	case c = <-conns:
	case err := <-done:
		t.Fatalf("Poll returned before reaching the remote: %v", err)
	}
	defer c.Close()
	// Read the request, then wait for the cancelled poll to close the
	// connection.
	c.SetReadDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("read the request: %v", err)
	}
	cancel()
	if err := <-done; err == nil {
		t.Error("a cancelled Poll returned no error")
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Errorf("the connection was not closed: %v", err)
	}
	if _, err := os.Stat(p.cfg.Workdir); !os.IsNotExist(err) {
		t.Errorf("a poll that never listed the remote's refs made the mirror: %v", err)
	}
}

// TestPollLocalForcePushPruned force-pushes a local remote and prunes the
// commit the mirror's ref still names: the local fetch leaves it out of
// what it asks the remote to skip, and announces the new commits.
func TestPollLocalForcePushPruned(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	base := r.commit("base", "f", "1")
	r.commit("dropped", "f", "2")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url()}, db)
	poll(t, p)
	r.git("reset", "-q", "--hard", base)
	r.git("reflog", "expire", "--expire=now", "--all")
	r.git("gc", "-q", "--prune=now")
	n1 := r.commit("new 1", "f", "3")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", n1, "new 1"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
}
