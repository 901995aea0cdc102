package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pollerConfig polls {{.Dir}}/repo's master branch every second and builds
// each change: a git step checks out the change's revision and a shell step
// prints hello.txt.
const pollerConfig = loopback + workerW1 + `
[[change_source]]
type = "git_poller"
repourl = "file://{{.Dir}}/repo"
branches = ["master"]
poll_interval = "1s"

[[schedulers]]
type = "single_branch"
name = "on-master"
branch = "master"
tree_stable_timer = "{{.StableTimer}}"
builder_names = ["build"]

[[builders]]
name = "build"
worker_names = ["w1"]

  [[builders.steps]]
  type = "git"
  repourl = "file://{{.Dir}}/repo"

  [[builders.steps]]
  type = "shell"
  name = "cat"
  command = ["cat", "hello.txt"]
`

// repo is a git repository that a test commits to with the git CLI.
type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T, dir string) *repo {
	makeRepo(t, dir, map[string]string{"hello.txt": "first\n"})
	return &repo{t: t, dir: dir}
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	return strings.TrimSpace(mustRun(r.t, "git", append([]string{"-C", r.dir,
		"-c", "user.name=A U Thor", "-c", "user.email=a@example.com"}, args...)...))
}

// commit writes hello.txt on the current branch and returns the revision.
func (r *repo) commit(text string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, "hello.txt"), []byte(text+"\n"), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.git("commit", "-q", "-am", text)
	return r.git("rev-parse", "HEAD")
}

// builds returns the builds of the test's builder, oldest first.
func (e *env) builds() []apiBuild {
	e.t.Helper()
	var r struct{ Builds []apiBuild }
	e.get("/api/v2/builds?order=buildid", &r)
	return r.Builds
}

// waitBuilds waits until n builds are complete and returns them.
func (e *env) waitBuilds(n int) []apiBuild {
	e.t.Helper()
	var bs []apiBuild
	waitFor(e.t, fmt.Sprintf("%d complete builds", n), 60*time.Second, func() bool {
		bs = e.builds()
		if len(bs) < n {
			return false
		}
		for _, b := range bs {
			if !b.Complete {
				return false
			}
		}
		return true
	})
	if len(bs) != n {
		e.t.Fatalf("%d builds, want %d: %+v", len(bs), n, bs)
	}
	return bs
}

// property reads one property of a build.
func (e *env) property(buildid int64, name string) any {
	e.t.Helper()
	var r struct {
		Properties []map[string][]any
	}
	e.get(fmt.Sprintf("/api/v2/builds/%d/properties", buildid), &r)
	if len(r.Properties) != 1 || len(r.Properties[0][name]) != 2 {
		return nil
	}
	return r.Properties[0][name][0]
}

// buildChanges returns the revisions of a build's changes.
func (e *env) buildChanges(buildid int64) []string {
	e.t.Helper()
	var r struct {
		Changes []struct {
			Revision string `json:"revision"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/builds/%d/changes", buildid), &r)
	var revs []string
	for _, c := range r.Changes {
		revs = append(revs, c.Revision)
	}
	return revs
}

type pollerEnv struct {
	*env
	StableTimer string
}

// TestPollerBuildsCommits: a commit on the watched branch starts exactly one
// build, which checks out that revision and sees its files; a commit on
// another branch starts none; a commit made while the master is down is
// built once after it restarts. The master runs with a PATH that has no
// git (its poller is go-git); the worker's git step runs git.
func TestPollerBuildsCommits(t *testing.T) {
	t.Parallel()
	e := &pollerEnv{env: newEnv(t), StableTimer: "0s"}
	e.masterEnv = []string{"PATH=" + t.TempDir()}
	r := newRepo(t, filepath.Join(e.Dir, "repo"))
	e.writeConfigData(pollerConfig, e)
	e.startMaster()
	e.startWorker("w1", "secret")
	// The first poll records the tips and builds nothing, as buildbot's
	// GitPoller; wait for it through the poller's mirror.
	waitFor(t, "first poll", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(e.masterDir, "gitpoller-work"))
		return err == nil
	})

	// A commit on another branch, then one on master.
	r.git("checkout", "-q", "-b", "other")
	r.commit("on other")
	r.git("checkout", "-q", "master")
	rev1 := r.commit("second")
	bs := e.waitBuilds(1)
	if *bs[0].Results != 0 {
		t.Fatalf("build of %s: %+v", rev1, bs[0])
	}
	if got := e.property(bs[0].BuildID, "got_revision"); got != rev1 {
		t.Errorf("got_revision %v, want %s", got, rev1)
	}
	if got := e.property(bs[0].BuildID, "branch"); got != "master" {
		t.Errorf("branch property %v, want master", got)
	}
	steps := e.steps(bs[0].BuildID)
	if out := channelLines(e.stdio(steps[2].StepID), "o"); out != "osecond\n" {
		t.Errorf("cat step printed %q", out)
	}
	if diff := e.buildChanges(bs[0].BuildID); len(diff) != 1 || diff[0] != rev1 {
		t.Errorf("build changes %v, want [%s]", diff, rev1)
	}

	// A commit while the master is down is built once after the restart;
	// a later commit's build comes after it, with nothing in between.
	e.stopMaster()
	rev2 := r.commit("while down")
	e.startMaster()
	e.waitBuilds(2)
	rev3 := r.commit("after restart")
	bs = e.waitBuilds(3)
	for i, want := range []string{rev1, rev2, rev3} {
		if got := e.property(bs[i].BuildID, "got_revision"); got != want {
			t.Errorf("build %d got_revision %v, want %s", i+1, got, want)
		}
	}
	var changes struct {
		Changes []struct {
			Branch string `json:"branch"`
		}
	}
	e.get("/api/v2/changes", &changes)
	if len(changes.Changes) != 3 {
		t.Errorf("%d changes, want 3 (none from the other branch): %+v", len(changes.Changes), changes.Changes)
	}
}

// TestTreeStableTimer: three commits inside the stable timer give one build
// with three changes.
func TestTreeStableTimer(t *testing.T) {
	t.Parallel()
	e := &pollerEnv{env: newEnv(t), StableTimer: "3s"}
	r := newRepo(t, filepath.Join(e.Dir, "repo"))
	e.writeConfigData(pollerConfig, e)
	e.startMaster()
	e.startWorker("w1", "secret")
	waitFor(t, "first poll", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(e.masterDir, "gitpoller-work"))
		return err == nil
	})
	revs := []string{r.commit("one"), r.commit("two"), r.commit("three")}
	bs := e.waitBuilds(1)
	if got := e.buildChanges(bs[0].BuildID); strings.Join(got, " ") != strings.Join(revs, " ") {
		t.Errorf("build changes %v, want %v", got, revs)
	}
	if got := e.property(bs[0].BuildID, "got_revision"); got != revs[2] {
		t.Errorf("got_revision %v, want %s", got, revs[2])
	}
	// Nothing else was built: a later commit is build 2.
	r.commit("four")
	e.waitBuilds(2)
}

const hookConfig = loopback + workerW1 + `
[www.change_hook.github]
secret = "s3cret"

[www.change_hook.base]

[[schedulers]]
type = "any_branch"
name = "any"
builder_names = ["echo"]

[[builders]]
name = "echo"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  command = "echo building"
`

// TestWebhookAndSendchange: a signed GitHub push starts a build of its
// revision; a forged one is refused and stores nothing; sendchange starts
// another.
func TestWebhookAndSendchange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(hookConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	body := `{"ref":"refs/heads/main","before":"1111111111111111111111111111111111111111",
"after":"2222222222222222222222222222222222222222",
"repository":{"name":"hello","full_name":"me/hello","html_url":"https://github.com/me/hello","clone_url":"https://github.com/me/hello.git"},
"pusher":{"name":"me","email":"me@example.com"},
"head_commit":{"id":"2222222222222222222222222222222222222222"},
"commits":[{"id":"2222222222222222222222222222222222222222","message":"fix","timestamp":"2026-11-28T10:00:00Z",
"url":"https://github.com/me/hello/commit/2222222","author":{"name":"Me","email":"me@example.com","username":"me"},
"committer":{"name":"Me","email":"me@example.com"},"added":["a.txt"],"removed":[],"modified":["b.txt"]}]}`
	post := func(sig string) int {
		req, _ := http.NewRequest("POST", e.url("/change_hook/github"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("sha256=" + strings.Repeat("0", 64)); code != http.StatusForbidden {
		t.Errorf("forged push: status %d, want 403", code)
	}
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(body))
	if code := post("sha256=" + hex.EncodeToString(mac.Sum(nil))); code != http.StatusOK {
		t.Fatalf("signed push: status %d", code)
	}
	bs := e.waitBuilds(1)
	if got := e.property(bs[0].BuildID, "revision"); got != strings.Repeat("2", 40) {
		t.Errorf("revision property %v", got)
	}

	out := mustRun(t, e.master, "sendchange", "--master", e.url("/"), "--who", "Me <me@example.com>",
		"--branch", "feature", "--revision", "abc123", "--comments", "by hand", "a.txt")
	// sendchange prints the new change's id, for scripts.
	if out != "2\n" {
		t.Errorf("sendchange printed %q, want the change id 2", out)
	}
	bs = e.waitBuilds(2)
	if got := e.property(bs[1].BuildID, "branch"); got != "feature" {
		t.Errorf("sendchange build branch %v", got)
	}
	var changes struct {
		Changes []struct {
			Author string `json:"author"`
		}
	}
	e.get("/api/v2/changes", &changes)
	if len(changes.Changes) != 2 {
		t.Errorf("%d changes, want 2 (the forged push stored nothing)", len(changes.Changes))
	}
}
