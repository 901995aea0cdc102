package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const gitOptionConfig = loopback + workerW1 + `
[www.change_hook.base]

[[schedulers]]
type = "force"
name = "force"
builder_names = ["checkout", "pinned"]

[[schedulers]]
type = "force"
name = "cbs"
builder_names = ["lib"]
  [schedulers.codebases.lib]
  repository = "file://{{.Dir}}/repo"
  branch = "master"

[[schedulers]]
type = "any_branch"
name = "changes"
builder_names = ["checkout"]

[[builders]]
name = "checkout"
worker_names = ["w1"]
  [[builders.steps]]
  type = "git"
  repourl = "file://{{.Dir}}/repo"
  [[builders.steps]]
  type = "shell"
  name = "cat"
  command = ["cat", "hello.txt"]

[[builders]]
name = "pinned"
worker_names = ["w1"]
  [[builders.steps]]
  type = "git"
  repourl = "file://{{.Dir}}/repo"
  branch = "master"
  [[builders.steps]]
  type = "shell"
  name = "cat"
  command = ["cat", "hello.txt"]

[[builders]]
name = "lib"
worker_names = ["w1"]
  [[builders.steps]]
  type = "git"
  repourl = "file://{{.Dir}}/repo"
  codebase = "lib"
`

// TestGitOptionInjection: probe-cfg1's exploit. A forced branch
// --upload-pack=CMD (plain, or a codebase's lib_branch, through JSON-RPC
// or the force form) or one sent to a change hook became an option of
// git fetch on the worker and ran CMD there. Each is refused with a 400
// that says why, no build runs and CMD never runs. And a forced branch
// wins over the git step's own branch, as buildbot's Source step
// (s.branch or self.branch).
func TestGitOptionInjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	repo := filepath.Join(e.Dir, "repo")
	makeRepo(t, repo, map[string]string{"hello.txt": "hello from master\n"})
	git := func(args ...string) {
		t.Helper()
		mustRun(t, "git", append([]string{"-C", repo, "-c", "user.name=A U Thor", "-c", "user.email=a@example.com"}, args...)...)
	}
	git("checkout", "-q", "-b", "dev")
	if err := os.WriteFile(filepath.Join(repo, "hello.txt"), []byte("hello from dev\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "dev")
	git("checkout", "-q", "master")

	e.writeConfig(strings.ReplaceAll(gitOptionConfig, "{{.Dir}}", e.Dir))
	e.startMaster()
	e.startWorker("w1", "secret")
	ids := e.builderIDs()

	// The first builds clone: the exploit needs a checkout to fetch into.
	for _, b := range []string{"checkout", "pinned"} {
		if got := e.waitBuild(e.force("force", ids[b], "clone"), 2*time.Minute); got.Results == nil || *got.Results != 0 {
			t.Fatalf("%s: first build results %v", b, got.Results)
		}
	}
	if got := e.waitBuild(e.force("cbs", ids["lib"], "clone"), 2*time.Minute); got.Results == nil || *got.Results != 0 {
		t.Fatalf("lib: first build results %v", got.Results)
	}
	builds := len(e.builds())

	pwned := filepath.Join(e.Dir, "PWNED")
	upload := "--upload-pack=touch " + pwned + ";git-upload-pack"
	post := func(path, ctype, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.url(path), strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	rpc := func(scheduler string, params map[string]any) (int, string) {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "force", "id": 1, "params": params})
		return post("/api/v2/forceschedulers/"+scheduler, "application/json", string(b))
	}
	tok := strings.Repeat("0123456789abcdef", 4) // a double-submit CSRF token
	want := fmt.Sprintf("%q starts with \"-\": git would read it as an option", upload)
	wantJSON, _ := json.Marshal(want)
	wantHTML := strings.ReplaceAll(want, `"`, "&#34;")
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"rpc branch", 0, "", `"branch: ` + string(wantJSON[1:])},
		{"rpc lib_branch", 0, "", `"lib_branch: ` + string(wantJSON[1:])},
		{"form branch", 0, "", wantHTML},
		{"base hook branch", 0, "", `"branch ` + string(wantJSON[1:])},
	} {
		switch tc.name {
		case "rpc branch":
			tc.status, tc.body = rpc("force", map[string]any{"builderid": ids["checkout"], "branch": upload})
		case "rpc lib_branch":
			tc.status, tc.body = rpc("cbs", map[string]any{"builderid": ids["lib"], "lib_branch": upload})
		case "form branch":
			tc.status, tc.body = post("/force/force", "application/x-www-form-urlencoded",
				url.Values{"csrf_token": {tok}, "builderid": {fmt.Sprint(ids["checkout"])}, "branch": {upload}}.Encode(),
				"Cookie", "gbb_csrf="+tok, "Accept", "text/html")
		case "base hook branch":
			tc.status, tc.body = post("/change_hook/base", "application/x-www-form-urlencoded",
				url.Values{"author": {"mallory"}, "branch": {upload}}.Encode())
		}
		if tc.status != http.StatusBadRequest || !strings.Contains(tc.body, tc.want) {
			t.Errorf("%s: %d, want 400 with %q:\n%.2000s", tc.name, tc.status, tc.want, tc.body)
		}
	}
	// A refusal adds no buildset: no build came of them, and git ran
	// nothing.
	if n := len(e.builds()); n != builds {
		t.Errorf("%d builds after the refusals, want %d", n, builds)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatalf("%s exists: a forced branch ran as a git option on the worker", pwned)
	}

	// A forced branch beats the step's own branch.
	b := e.waitBuild(e.forceParams("force", ids["pinned"], fmt.Sprintf(`{"builderid":%d,"branch":"dev"}`, ids["pinned"])), 2*time.Minute)
	if b.Results == nil || *b.Results != 0 || e.catOutput(b.BuildID) != "ohello from dev\n" {
		t.Errorf("pinned forced to dev: %s, cat %q, want dev's file", b.StateString, e.catOutput(b.BuildID))
	}
	b = e.waitBuild(e.force("force", ids["pinned"], "no branch"), 2*time.Minute)
	if b.Results == nil || *b.Results != 0 || e.catOutput(b.BuildID) != "ohello from master\n" {
		t.Errorf("pinned, no forced branch: %s, cat %q, want master's file", b.StateString, e.catOutput(b.BuildID))
	}
}
