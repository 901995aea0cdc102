package hooks

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gbb-ci/gbb/pkg/store"
)

// The secrets of the test server's change hooks; base has none.
var testHooks = map[string]Config{
	"github": {Secret: "gh-secret"},
	"gitlab": {Secret: "gl-token"},
	"gitea":  {Secret: "gitea-secret"},
	"base":   {},
}

func mac(h func() hash.Hash, secret string, body []byte) string {
	m := hmac.New(h, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// hookPost posts body to /change_hook/DIALECT with headers, and returns the
// status and the decoded reply.
func (f *fixture) hookPost(t *testing.T, path string, hdr map[string]string, body []byte) (int, map[string]any) {
	t.Helper()
	req := must(http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(string(body))))(t)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp := must(http.DefaultClient.Do(req))(t)
	defer resp.Body.Close()
	data := must(io.ReadAll(resp.Body))(t)
	var reply map[string]any
	if err := json.Unmarshal(data, &reply); err != nil {
		t.Fatalf("POST %s: status %d, body not JSON: %q", path, resp.StatusCode, data)
	}
	return resp.StatusCode, reply
}

// storedChanges returns the changes whose ids reply lists.
func (f *fixture) storedChanges(t *testing.T, reply map[string]any) []store.Change {
	t.Helper()
	var out []store.Change
	for _, id := range reply["changeids"].([]any) {
		out = append(out, must(f.db.Change(int64(id.(float64))))(t))
	}
	return out
}

func fixtureFile(t *testing.T, name string) []byte {
	t.Helper()
	return must(os.ReadFile("testdata/hooks/" + name))(t)
}

func props(kv ...any) store.Properties {
	p := store.Properties{}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i].(string)] = prop(kv[i+1])
	}
	return p
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

var ignoreIDs = cmpopts.IgnoreFields(store.Change{}, "ID", "SourceStampID", "ParentChangeIDs")

func TestHookChanges(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	const ghRepo = "https://github.com/baxterthehacker/public-repo"
	tests := []struct {
		name, dialect, event, file string
		want                       []store.Change
		ignored                    string
	}{
		{"github push", "github", "push", "github_push.json", []store.Change{
			{
				Author: "baxterthehacker <baxterthehacker@users.noreply.github.com>", Committer: "GitHub <noreply@github.com>",
				Comments: "Update README.md", Branch: "main", Revision: "7d8f5eaf1f6ba5c57fc3c7d91ac0fd1c0d1a26e6",
				Repository: ghRepo, Project: "baxterthehacker/public-repo",
				RevLink: ghRepo + "/commit/7d8f5eaf1f6ba5c57fc3c7d91ac0fd1c0d1a26e6",
				When:    mustTime("2015-05-05T19:40:15-04:00"), Files: []string{"docs/new.md", "README.md", "old.txt"},
				Properties: props("event", "push", "github_distinct", true),
			},
			{ // not distinct (already in the repository): a change all the same, as buildbot's
				Author: "Ann Other <ann@example.org>", Committer: "Ann Other <ann@example.org>",
				Comments: "Merged from another branch", Branch: "main", Revision: "5a2b0a5de1c5c8d4d5f43a3dca0b0e2e5e0f9a11",
				Repository: ghRepo, Project: "baxterthehacker/public-repo",
				RevLink: ghRepo + "/commit/5a2b0a5de1c5c8d4d5f43a3dca0b0e2e5e0f9a11",
				When:    mustTime("2015-05-05T19:41:00-04:00"), Files: []string{"main.go"},
				Properties: props("event", "push", "github_distinct", false),
			},
			{
				Author: "Ann Other <ann@example.org>", Committer: "baxterthehacker <baxterthehacker@users.noreply.github.com>",
				Comments: "Fix the build\n\nLonger description.", Branch: "main", Revision: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
				Repository: ghRepo, Project: "baxterthehacker/public-repo",
				RevLink: ghRepo + "/commit/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
				When:    mustTime("2015-05-05T19:42:30-04:00"), Files: []string{"main.go", "main_test.go"},
				Properties: props("event", "push", "github_distinct", true),
			},
		}, ""},
		{"github tag", "github", "push", "github_tag.json", []store.Change{{
			Author: "Ann Other <ann@example.org>", Committer: "baxterthehacker <baxterthehacker@users.noreply.github.com>",
			Comments: "Fix the build\n\nLonger description.", Branch: "v1.0.0", Revision: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
			Repository: ghRepo, Project: "baxterthehacker/public-repo", Category: "tag",
			RevLink: ghRepo + "/commit/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
			When:    mustTime("2015-05-05T19:42:30-04:00"), Files: []string{"main.go", "main_test.go"},
			Properties: props("event", "push", "github_distinct", true),
		}}, ""},
		// A push that creates its branch makes a change of its head commit only, as buildbot's.
		{"github new branch", "github", "push", "github_push_created.json", []store.Change{{
			Author: "Ann Other <ann@example.org>", Committer: "Ann Other <ann@example.org>",
			Comments: "Test feature x", Branch: "feature-x", Revision: "f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1",
			Repository: ghRepo, Project: "baxterthehacker/public-repo",
			RevLink: ghRepo + "/commit/f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1",
			When:    mustTime("2015-05-06T10:05:00-04:00"), Files: []string{"x_test.go", "x.go"},
			Properties: props("event", "push", "github_distinct", true),
		}}, ""},
		{"github branch delete", "github", "push", "github_push_delete.json", nil, "branch feature-x deleted"},
		{"github pull request", "github", "pull_request", "github_pull_request.json", []store.Change{{
			Author:   "baxterthehacker",
			Comments: "GitHub Pull Request #1 (1 commit)\nUpdate the README with new information\nThis is a pretty simple change that we need to pull into main.",
			Branch:   "refs/pull/1/merge", Revision: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
			Repository: ghRepo, Project: "baxterthehacker/public-repo", Category: "pull",
			RevLink: ghRepo + "/pull/1", When: mustTime("2015-05-05T23:40:27Z"),
			Properties: props("event", "pull_request", "basename", "main", "pullrequesturl", ghRepo+"/pull/1",
				"github.number", 1, "github.title", "Update the README with new information",
				"github.html_url", ghRepo+"/pull/1", "github.user.login", "baxterthehacker",
				"github.head.ref", "changes", "github.head.sha", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
				"github.base.ref", "main", "github.base.sha", "9049f1265b7d61be4a8904a9a27120d2064dab3b",
				"github.head.repo.full_name", "baxterthehacker/public-repo"),
		}}, ""},
		{"github ping", "github", "ping", "github_ping.json", nil, "ping"},
		{"github issues ignored", "github", "issues", "github_ping.json", nil, `event "issues" is not handled`},
		{"gitlab push", "gitlab", "Push Hook", "gitlab_push.json", []store.Change{
			{
				Author:   "Jordi Mallach <jordi@softcatala.org>",
				Comments: "Update Catalan translation to e38cb41.\n\nSee https://gitlab.com/gitlab-org/gitlab for more information",
				Branch:   "master", Revision: "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
				Repository: "git@example.com:mike/diaspora.git", Project: "Diaspora", Category: "push",
				RevLink: "http://example.com/mike/diaspora/commit/b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
				When:    mustTime("2011-12-12T14:27:31+02:00"), Files: []string{"CHANGELOG", "app/controller/application.rb"},
				Properties: props("event", "push"),
			},
			{
				Author: "GitLab dev user <gitlabdev@dv6700.(none)>", Comments: "fixed readme",
				Branch: "master", Revision: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
				Repository: "git@example.com:mike/diaspora.git", Project: "Diaspora", Category: "push",
				RevLink: "http://example.com/mike/diaspora/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
				When:    mustTime("2012-01-03T23:36:29+02:00"), Files: []string{"CHANGELOG", "app/controller/application.rb"},
				Properties: props("event", "push"),
			},
		}, ""},
		// A tag on an existing commit lists no commits: no change, as buildbot 3.7's.
		{"gitlab tag push", "gitlab", "Tag Push Hook", "gitlab_tag_push.json", nil, "push to refs/tags/v1.0.0 lists no commits"},
		{"gitlab merge request", "gitlab", "Merge Request Hook", "gitlab_merge_request.json", []store.Change{{
			Author: "GitLab dev user <gitlabdev@dv6700.(none)>", Comments: "MR#1: MS-Viewport\n\n",
			Branch: "master", Revision: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
			Repository: "http://example.com/awesome_space/awesome_project.git", Project: "Awesome Project",
			Category: "merge_request", RevLink: "http://example.com/diaspora/merge_requests/1",
			When: mustTime("2012-01-03T23:36:29+02:00"),
			Properties: props("event", "merge_request", "source_branch", "ms-viewport", "source_project_id", 14,
				"source_repository", "http://example.com/awesome_space/awesome_project.git",
				"source_git_ssh_url", "git@example.com:awesome_space/awesome_project.git",
				"target_branch", "master", "target_project_id", 14,
				"target_repository", "http://example.com/awesome_space/awesome_project.git",
				"target_git_ssh_url", "git@example.com:awesome_space/awesome_project.git"),
		}}, ""},
		{"gitlab note on a merge request", "gitlab", "Note Hook", "gitlab_note.json", []store.Change{{
			Author:   "John Smith <john@example.com>",
			Comments: "MR#1: Tempora et eos debitis quae laborum et.\n\nEt voluptas corrupti assumenda temporibus. Architecto cum animi eveniet amet asperiores. Vitae numquam voluptate est natus sit et ad id.",
			Branch:   "markdown", Revision: "562e173be03b8ff2efb05345d12df18815438a4b",
			Repository: "http://example.com/gitlab-org/gitlab-test.git", Project: "Gitlab Test",
			Category: "note", RevLink: "http://example.com/gitlab-org/gitlab-test/merge_requests/1",
			When: mustTime("2015-04-08T21:00:25-07:00"),
			Properties: props("event", "note", "comments", "This MR needs work.",
				"source_branch", "master", "source_project_id", 5,
				"source_repository", "http://example.com/gitlab-org/gitlab-test.git",
				"source_git_ssh_url", "git@example.com:gitlab-org/gitlab-test.git",
				"target_branch", "markdown", "target_project_id", 5,
				"target_repository", "http://example.com/gitlab-org/gitlab-test.git",
				"target_git_ssh_url", "git@example.com:gitlab-org/gitlab-test.git"),
		}}, ""},
		{"gitea push", "gitea", "push", "gitea_push.json", []store.Change{
			{
				Author: "Gitea <someone@gitea.io>", Committer: "Gitea <someone@gitea.io>", Comments: "First commit\n",
				Branch: "develop", Revision: "28e1879d029cb852e4844d9c718537df08844e03",
				Repository: "ssh://gitea@localhost:2222/gitea/webhooks.git", Project: "gitea/webhooks", Category: "push",
				RevLink: "http://localhost:3000/gitea/webhooks/commit/28e1879d029cb852e4844d9c718537df08844e03",
				When:    mustTime("2017-03-13T13:50:00-04:00"), Files: []string{"README.md"},
				Properties: props("event", "push", "repository_name", "webhooks", "owner", "gitea"),
			},
			{
				Author: "Gitea <someone@gitea.io>", Committer: "Gitea <someone@gitea.io>", Comments: "Webhooks Yay!\n",
				Branch: "develop", Revision: "bffeb74224043ba2feb48d137756c8a9331c449a",
				Repository: "ssh://gitea@localhost:2222/gitea/webhooks.git", Project: "gitea/webhooks", Category: "push",
				RevLink: "http://localhost:3000/gitea/webhooks/commit/bffeb74224043ba2feb48d137756c8a9331c449a",
				When:    mustTime("2017-03-13T13:52:11-04:00"), Files: []string{"README.md"},
				Properties: props("event", "push", "repository_name", "webhooks", "owner", "gitea"),
			},
		}, ""},
		{"gitea pull request", "gitea", "pull_request", "gitea_pull_request.json", []store.Change{{
			Author: "Ann Other <ann@example.org>", Comments: "PR#7: Add a feature\n\nIt does things.",
			Branch: "feature", Revision: "4b0a2c8e1f3d5a7b9c0d2e4f6a8b0c1d3e5f7a9b",
			Repository: "ssh://gitea@localhost:2222/gitea/webhooks.git", Project: "gitea/webhooks", Category: "pull_request",
			RevLink: "http://localhost:3000/gitea/webhooks/pulls/7", When: mustTime("2017-03-14T09:10:11-04:00"),
			Properties: props("event", "pull_request", "base_branch", "master", "base_sha", "28e1879d029cb852e4844d9c718537df08844e03",
				"head_branch", "feature", "head_sha", "4b0a2c8e1f3d5a7b9c0d2e4f6a8b0c1d3e5f7a9b", "pr_id", 83, "pr_number", 7,
				"repository_name", "webhooks", "owner", "gitea",
				"base_repository", "http://localhost:3000/gitea/webhooks.git", "base_git_ssh_url", "ssh://gitea@localhost:2222/gitea/webhooks.git",
				"head_repository", "http://localhost:3000/ann/webhooks.git", "head_git_ssh_url", "ssh://gitea@localhost:2222/ann/webhooks.git"),
		}}, ""},
		{"gitea create ignored", "gitea", "create", "gitea_push.json", nil, `event "create" is not handled`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := fixtureFile(t, tt.file)
			hdr := signed(tt.dialect, tt.event, body)
			status, reply := f.hookPost(t, "/change_hook/"+tt.dialect, hdr, body)
			if status != http.StatusOK {
				t.Fatalf("status %d: %v", status, reply)
			}
			if got, _ := reply["ignored"].(string); got != tt.ignored {
				t.Errorf("ignored = %q, want %q", got, tt.ignored)
			}
			got := f.storedChanges(t, reply)
			for i := range min(len(got), len(tt.want)) {
				if tt.want[i].When.IsZero() {
					tt.want[i].When = got[i].When // now, when the payload has no time
				}
			}
			if diff := cmp.Diff(tt.want, got, ignoreIDs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			for _, c := range got {
				if c.When.IsZero() {
					t.Errorf("change %d: zero When", c.ID)
				}
			}
		})
	}
}

// signed returns the headers a forge sends with body: the event and a
// good signature or token.
func signed(dialect, event string, body []byte) map[string]string {
	switch dialect {
	case "github":
		return map[string]string{"Content-Type": "application/json", "X-GitHub-Event": event,
			"X-Hub-Signature-256": "sha256=" + mac(sha256.New, testHooks["github"].Secret, body)}
	case "gitlab":
		return map[string]string{"Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Token": testHooks["gitlab"].Secret}
	case "gitea":
		return map[string]string{"Content-Type": "application/json", "X-Gitea-Event": event,
			"X-Gitea-Signature": mac(sha256.New, testHooks["gitea"].Secret, body)}
	}
	return map[string]string{"Content-Type": "application/json"}
}

func TestHookSignatures(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	gh := fixtureFile(t, "github_push.json")
	gl := fixtureFile(t, "gitlab_push.json")
	gt := fixtureFile(t, "gitea_push.json")
	ghForm := []byte(url.Values{"payload": {string(gh)}}.Encode())
	tests := []struct {
		name, dialect string
		hdr           map[string]string
		body          []byte
		status        int
	}{
		{"github sha1", "github", map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push",
			"X-Hub-Signature": "sha1=" + mac(sha1.New, "gh-secret", gh)}, gh, 200},
		{"github form", "github", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "push",
			"X-Hub-Signature-256": "sha256=" + mac(sha256.New, "gh-secret", ghForm)}, ghForm, 200},
		{"github wrong secret", "github", map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push",
			"X-Hub-Signature-256": "sha256=" + mac(sha256.New, "other", gh)}, gh, 403},
		{"github body changed", "github", map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push",
			"X-Hub-Signature-256": "sha256=" + mac(sha256.New, "gh-secret", gh)}, append([]byte(" "), gh...), 403},
		{"github sha1 wrong", "github", map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push",
			"X-Hub-Signature": "sha1=" + mac(sha1.New, "other", gh)}, gh, 403},
		{"github no signature", "github", map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push"}, gh, 403},
		{"github not hex", "github", map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push",
			"X-Hub-Signature-256": "sha256=zz"}, gh, 403},
		{"gitlab wrong token", "gitlab", map[string]string{"Content-Type": "application/json", "X-Gitlab-Token": "gl-tokeN"}, gl, 403},
		{"gitlab no token", "gitlab", map[string]string{"Content-Type": "application/json"}, gl, 403},
		{"gitea wrong secret", "gitea", map[string]string{"Content-Type": "application/json", "X-Gitea-Event": "push",
			"X-Gitea-Signature": mac(sha256.New, "other", gt)}, gt, 403},
		{"gitea no signature", "gitea", map[string]string{"Content-Type": "application/json", "X-Gitea-Event": "push"}, gt, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the test counts the changes stored.
			before := len(must(f.db.Changes(store.ChangeFilter{}))(t))
			status, reply := f.hookPost(t, "/change_hook/"+tt.dialect, tt.hdr, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %v", status, tt.status, reply)
			}
			after := len(must(f.db.Changes(store.ChangeFilter{}))(t))
			if tt.status != 200 {
				if after != before {
					t.Errorf("%d changes stored by a refused request", after-before)
				}
				if reply["error"] == "" || reply["error"] == nil {
					t.Errorf("no error message: %v", reply)
				}
				return
			}
			if after != before+3 { // github_push.json's three commits
				t.Errorf("%d changes stored, want 3", after-before)
			}
		})
	}
}

func TestHookErrors(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	gh := func(event, body string) (map[string]string, []byte) {
		return signed("github", event, []byte(body)), []byte(body)
	}
	big := make([]byte, MaxBody+1)
	for i := range big {
		big[i] = ' '
	}
	tests := []struct {
		name, path string
		hdr        map[string]string
		body       []byte
		status     int
		msg        string
	}{
		{"malformed json", "/change_hook/github", nil, nil, 400, "malformed JSON payload"},
		{"push without ref", "/change_hook/github", nil, nil, 400, "missing ref"},
		{"push without repository", "/change_hook/github", nil, nil, 400, "missing repository"},
		{"commit without id", "/change_hook/github", nil, nil, 400, "commits[0]: missing id"},
		{"bad timestamp", "/change_hook/github", nil, nil, 400, `commits[0].timestamp: bad timestamp "yesterday"`},
		{"no event", "/change_hook/github", map[string]string{"Content-Type": "application/json"}, []byte("{}"), 403, "missing X-Hub-Signature-256"},
		{"pr without pull_request", "/change_hook/github", nil, nil, 400, "missing pull_request"},
		{"gitlab no kind", "/change_hook/gitlab", map[string]string{"Content-Type": "application/json", "X-Gitlab-Token": "gl-token"}, []byte(`{}`), 400, "missing object_kind and X-Gitlab-Event"},
		{"gitea no event", "/change_hook/gitea", signed("gitea", "", []byte(`{}`)), []byte(`{}`), 400, "missing X-Gitea-Event header"},
		{"too big", "/change_hook/github", map[string]string{"Content-Type": "application/json"}, big, 413, fmt.Sprintf("request body larger than %d bytes", MaxBody)},
		{"unknown dialect", "/change_hook/bitbucket", nil, []byte(`{}`), 404, `change hook dialect "bitbucket" is not enabled`},
	}
	tests[0].hdr, tests[0].body = gh("push", `{"ref": `)
	tests[1].hdr, tests[1].body = gh("push", `{"repository": {"html_url": "x"}}`)
	tests[2].hdr, tests[2].body = gh("push", `{"ref": "refs/heads/main", "commits": [{"id": "abc"}]}`)
	tests[3].hdr, tests[3].body = gh("push", `{"ref": "refs/heads/main", "repository": {}, "commits": [{"message": "m"}]}`)
	tests[4].hdr, tests[4].body = gh("push", `{"ref": "refs/heads/main", "repository": {}, "commits": [{"id": "abc", "timestamp": "yesterday", "author": {"name": "a"}}]}`)
	tests[6].hdr, tests[6].body = gh("pull_request", `{"action": "opened", "repository": {}}`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, reply := f.hookPost(t, tt.path, tt.hdr, tt.body)
			if status != tt.status {
				t.Errorf("status %d, want %d: %v", status, tt.status, reply)
			}
			if got, _ := reply["error"].(string); !strings.HasPrefix(got, tt.msg) {
				t.Errorf("error %q, want it to start with %q", got, tt.msg)
			}
		})
	}
	if n := len(must(f.db.Changes(store.ChangeFilter{}))(t)); n != 0 {
		t.Errorf("%d changes stored by bad requests", n)
	}
}

func TestHookIgnoredActions(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	closed := strings.Replace(string(fixtureFile(t, "github_pull_request.json")), `"action": "opened"`, `"action": "closed"`, 1)
	status, reply := f.hookPost(t, "/change_hook/github", signed("github", "pull_request", []byte(closed)), []byte(closed))
	if status != 200 || reply["ignored"] != "pull request #1 closed" {
		t.Errorf("closed PR: %d %v", status, reply)
	}
	skip := strings.Replace(string(fixtureFile(t, "github_push.json")), `"Fix the build\n\nLonger description.",
    "timestamp"`, `"Fix the build [skip ci]",
    "timestamp"`, 1)
	status, reply = f.hookPost(t, "/change_hook/github", signed("github", "push", []byte(skip)), []byte(skip))
	if status != 200 || reply["ignored"] != "the head commit of the push to refs/heads/main asks to skip CI" {
		t.Errorf("[skip ci]: %d %v", status, reply)
	}
	merged := strings.Replace(string(fixtureFile(t, "gitlab_merge_request.json")), `"state": "opened"`, `"state": "merged"`, 1)
	status, reply = f.hookPost(t, "/change_hook/gitlab", signed("gitlab", "Merge Request Hook", []byte(merged)), []byte(merged))
	if status != 200 || reply["ignored"] != "merge request !1 is merged" {
		t.Errorf("merged MR: %d %v", status, reply)
	}
	note := `{"object_kind": "note", "object_attributes": {"id": 1244, "note": "This is a commit comment.", "noteable_type": "Commit"}}`
	status, reply = f.hookPost(t, "/change_hook/gitlab", signed("gitlab", "Note Hook", []byte(note)), []byte(note))
	if status != 200 || reply["ignored"] != "note 1244 is not on a merge request" {
		t.Errorf("note: %d %v", status, reply)
	}
	if n := len(must(f.db.Changes(store.ChangeFilter{}))(t)); n != 0 {
		t.Errorf("%d changes stored by ignored events", n)
	}
}

func TestHookBase(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	form := url.Values{
		"author": {"Jane <jane@example.org>"}, "comments": {"fix it"}, "branch": {"main"}, "revision": {"abc123"},
		"repository": {"https://example.org/r.git"}, "project": {"p"}, "category": {"hotfix"},
		"revlink": {"https://example.org/r/abc123"}, "when_timestamp": {"1700000000"},
		"files": {`["a.go","b/c.go"]`}, "properties": {`{"ticket": 42, "who": "jane"}`},
	}
	status, reply := f.hookPost(t, "/change_hook/base?codebase=app", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(form.Encode()))
	if status != 200 {
		t.Fatalf("form: %d %v", status, reply)
	}
	want := []store.Change{{
		Author: "Jane <jane@example.org>", Comments: "fix it", Branch: "main", Revision: "abc123",
		Repository: "https://example.org/r.git", Project: "p", Codebase: "app", Category: "hotfix",
		RevLink: "https://example.org/r/abc123", When: time.Unix(1700000000, 0), Files: []string{"a.go", "b/c.go"},
		Properties: store.Properties{"ticket": {Value: json.RawMessage(`42`), Source: "Change"}, "who": {Value: json.RawMessage(`"jane"`), Source: "Change"}},
	}}
	if diff := cmp.Diff(want, f.storedChanges(t, reply), ignoreIDs); diff != "" {
		t.Errorf("form change (-want +got):\n%s", diff)
	}

	body := `[{"who": "bob", "revision": "r1", "files": ["x"]}, {"author": "carol", "revision": "r2", "properties": {"k": [1, "two"]}}]`
	status, reply = f.hookPost(t, "/change_hook/base", map[string]string{"Content-Type": "application/json"}, []byte(body))
	if status != 200 {
		t.Fatalf("json: %d %v", status, reply)
	}
	got := f.storedChanges(t, reply)
	if len(got) != 2 || got[0].Author != "bob" || got[1].Revision != "r2" || string(got[1].Properties["k"].Value) != `[1,"two"]` {
		t.Errorf("json changes: %+v", got)
	}

	for _, tt := range []struct{ ctype, body, msg string }{
		{"application/json", `{"revision": "r"}`, "missing author"},
		{"application/json", `{"author": "a", "revison": "r"}`, `malformed JSON: json: unknown field "revison"`},
		{"application/json", `{"author": "a", "when_timestamp": "soon"}`, `when_timestamp must be unix seconds, not "soon"`},
		{"application/x-www-form-urlencoded", "author=a&when_timestamp=soon", `when_timestamp must be unix seconds, not "soon"`},
		{"application/x-www-form-urlencoded", "author=a&files=x.go", "files must be a JSON list of strings"},
		{"application/x-www-form-urlencoded", "author=a&colour=red", `unknown field "colour"`},
		{"text/plain", "author=a", `unsupported Content-Type "text/plain"`},
	} {
		status, reply := f.hookPost(t, "/change_hook/base", map[string]string{"Content-Type": tt.ctype}, []byte(tt.body))
		if got, _ := reply["error"].(string); status != 400 || !strings.HasPrefix(got, tt.msg) {
			t.Errorf("%s %s: %d %q, want 400 %q", tt.ctype, tt.body, status, got, tt.msg)
		}
	}
}

// TestHookBaseSecret checks the bearer token of the base dialect, and that a
// handler without a change sink enables no hook.
func TestHookBaseSecret(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	srv := New(StoreSink{DB: f.db}, map[string]Config{"base": {Secret: "tok"}}, nil)
	none := New(nil, map[string]Config{"base": {}}, nil)
	for _, tt := range []struct {
		srv    *Handler
		auth   string
		status int
	}{
		{srv, "Bearer tok", 200},
		{srv, "Bearer tok2", 403},
		{srv, "tok", 403},
		{srv, "", 403},
		{none, "Bearer tok", 404},
	} {
		req := must(http.NewRequest(http.MethodPost, "/change_hook/base", strings.NewReader(`{"author": "a"}`)))(t)
		req.Header.Set("Content-Type", "application/json")
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		tt.srv.Serve(rec, req, "base")
		if rec.Code != tt.status {
			t.Errorf("Authorization %q: status %d, want %d: %s", tt.auth, rec.Code, tt.status, rec.Body)
		}
	}
	if n := len(must(f.db.Changes(store.ChangeFilter{}))(t)); n != 1 {
		t.Errorf("%d changes stored, want 1", n)
	}
}

// TestHookChangeNoStoreTakes: a change no store takes (a NUL byte, which
// PostgreSQL refuses) is the sender's error: 400 with the reason, nothing
// stored, and the next change stored as usual. (A time JSON cannot hold,
// which made its store panic, is refused before: TestHookWhenTimestamp.)
func TestHookChangeNoStoreTakes(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for _, tt := range []struct{ body, msg string }{
		{"author=a&project=p%00q", `its project "p\x00q" holds a NUL byte`},
		{"author=a&codebase=%00", `its codebase "\x00" holds a NUL byte`},
		{"author=a&comments=x%00", `its comments "x\x00" holds a NUL byte`},
	} {
		status, reply := f.hookPost(t, "/change_hook/base", form, []byte(tt.body))
		if got, _ := reply["error"].(string); status != 400 || !strings.Contains(got, tt.msg) {
			t.Errorf("%s: %d %q, want 400 %q", tt.body, status, got, tt.msg)
		}
	}
	if n := must(f.db.CountChanges(store.ChangeFilter{}))(t); n != 0 {
		t.Fatalf("%d changes stored from refused hooks", n)
	}
	status, reply := f.hookPost(t, "/change_hook/base", form, []byte("author=a&project=p"))
	if status != 200 {
		t.Fatalf("a good change after refusals: %d %v", status, reply)
	}
	if got := f.storedChanges(t, reply); len(got) != 1 || got[0].ID != 1 {
		t.Errorf("stored %+v, want change 1", got)
	}
}
