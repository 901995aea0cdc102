package reporter

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// newForgeSender makes the sender of cfg as the master does, through the
// kinds' tables.
func newForgeSender(t *testing.T, cfg config.Reporter) Sender {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = cfg.Type
	}
	if cfg.Context == "" {
		cfg.Context = defaultContext
	}
	s, err := newSender(cfg, Deps{HTTP: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// send sends each report and fails the test on an error.
func send(t *testing.T, s Sender, reports ...*Report) {
	t.Helper()
	for _, r := range reports {
		if err := s.Send(context.Background(), r); err != nil {
			t.Fatalf("Send %s: %v", r.Event, err)
		}
	}
}

// call is what a test expects of one request.
type call struct {
	Method, Path, Auth string
	Body               map[string]any
}

func callsOf(got []forgeCall, authHeader string) []call {
	var out []call
	for _, c := range got {
		out = append(out, call{Method: c.Method, Path: c.Path, Auth: c.Header.Get(authHeader), Body: c.Body})
	}
	return out
}

func TestForgeGitHubStatusMatchesOpenAPI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, basePath string
	}{
		{"api.github.com", ""},
		{"GitHub Enterprise", "/api/v3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := newForgeServer(t, "github.json", tc.basePath)
			s := newForgeSender(t, config.Reporter{Type: "github_status", Token: "%(secret:github_token)s", BaseURL: fs.URL + tc.basePath + "/"})
			ss := store.SourceStamp{Repository: "https://github.com/octo-org/hello-world.git", Branch: "main", Revision: testSHA}
			send(t, s,
				testReport(Started, 0, nil, ss),
				testReport(Finished, store.Success, nil, ss),
			)
			path := tc.basePath + "/repos/octo-org/hello-world/statuses/" + testSHA
			auth := "token " + testSecrets["github_token"]
			want := []call{
				{"POST", path, auth, map[string]any{"state": "pending", "context": "buildbot/runtests", "description": "Build started.", "target_url": "http://gbb.example.org/#/builders/1/builds/7"}},
				{"POST", path, auth, map[string]any{"state": "success", "context": "buildbot/runtests", "description": "Build done.", "target_url": "http://gbb.example.org/#/builders/1/builds/7"}},
			}
			if diff := cmp.Diff(want, callsOf(fs.Calls(), "Authorization")); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestForgeGitHubStatusOnePerSourceStamp(t *testing.T) {
	t.Parallel()
	fs := newForgeServer(t, "github.json", "")
	s := newForgeSender(t, config.Reporter{Type: "github_status", Token: "tok-1234", BaseURL: fs.URL, Context: "ci/%(prop:buildername)s"})
	send(t, s, testReport(Finished, store.Failure, nil,
		// project owner/name wins, as buildbot's _extract_github_info
		store.SourceStamp{Codebase: "a", Project: "octo/app", Repository: "git@github.com:someone/else.git", Revision: testSHA},
		// scp-like URL
		store.SourceStamp{Codebase: "b", Repository: "git@github.com:octo/lib.git", Revision: testSHA2},
		// no revision: no status, as buildbot
		store.SourceStamp{Codebase: "c", Repository: "https://github.com/octo/docs"},
		// a GitLab project is not GitHub's
		store.SourceStamp{Codebase: "d", Repository: "https://gitlab.com/octo/other.git", Revision: testSHA},
	))
	var got []string
	for _, c := range fs.Calls() {
		got = append(got, c.Path+" "+c.Body["state"].(string)+" "+c.Body["context"].(string))
	}
	want := []string{
		"/repos/octo/app/statuses/" + testSHA + " failure ci/runtests",
		"/repos/octo/lib/statuses/" + testSHA2 + " failure ci/runtests",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func TestForgeGitHubCommentMatchesOpenAPI(t *testing.T) {
	t.Parallel()
	ss := store.SourceStamp{Repository: "https://github.com/octo/hello", Project: "octo/hello", Branch: "refs/pull/42/merge", Revision: testSHA}
	fs := newForgeServer(t, "github.json", "")
	s := newForgeSender(t, config.Reporter{Type: "github_comment", Token: "%(secret:github_token)s", BaseURL: fs.URL})
	// The start has no comment, as buildbot's GitHubCommentPush.
	send(t, s, testReport(Started, 0, nil, ss), testReport(Finished, store.Failure, nil, ss))
	calls := fs.Calls()
	if len(calls) != 1 {
		t.Fatalf("got %d requests, want the one comment at the end: %+v", len(calls), calls)
	}
	c := calls[0]
	if c.Path != "/repos/octo/hello/issues/42/comments" || c.Header.Get("Authorization") != "token "+testSecrets["github_token"] {
		t.Errorf("comment went to %s with %q", c.Path, c.Header.Get("Authorization"))
	}
	body, _ := c.Body["body"].(string)
	for _, w := range []string{"Build done.", "runtests #7", "failure", "http://gbb.example.org/#/builders/1/builds/7"} {
		if !strings.Contains(body, w) {
			t.Errorf("comment %q lacks %q", body, w)
		}
	}

	// The PR number from github.number, which gbb's GitHub hook sets, when
	// the branch does not say it.
	fs2 := newForgeServer(t, "github.json", "")
	s2 := newForgeSender(t, config.Reporter{Type: "github_comment", Token: "tok-1234", BaseURL: fs2.URL})
	send(t, s2, testReport(Finished, store.Success, map[string]any{"github.number": float64(9)},
		store.SourceStamp{Repository: "https://github.com/octo/hello", Branch: "feature", Revision: testSHA}))
	// Not a pull request's build: no comment.
	send(t, s2, testReport(Finished, store.Success, nil,
		store.SourceStamp{Repository: "https://github.com/octo/hello", Branch: "main", Revision: testSHA}))
	var paths []string
	for _, c := range fs2.Calls() {
		paths = append(paths, c.Path)
	}
	if diff := cmp.Diff([]string{"/repos/octo/hello/issues/9/comments"}, paths); diff != "" {
		t.Errorf("comments (-want +got):\n%s", diff)
	}
}

func TestForgeGitLabStatusMatchesOpenAPI(t *testing.T) {
	t.Parallel()
	fs := newForgeServer(t, "gitlab.json", "")
	s := newForgeSender(t, config.Reporter{Type: "gitlab_status", Token: "%(secret:forge_token)s", BaseURL: fs.URL})
	ss := store.SourceStamp{Repository: "git@gitlab.example.com:group/sub/project.git", Branch: "main", Revision: testSHA}
	send(t, s,
		testReport(Started, 0, nil, ss),
		testReport(Finished, store.Cancelled, nil, ss),
	)
	// A merge request's build: its source project and branch, as buildbot.
	send(t, s, testReport(Finished, store.Success, map[string]any{"source_project_id": float64(1234), "source_branch": "topic"}, ss))

	path := "/api/v4/projects/group%2Fsub%2Fproject/statuses/" + testSHA
	tok := testSecrets["forge_token"]
	target := "http://gbb.example.org/#/builders/1/builds/7"
	want := []call{
		{"POST", path, tok, map[string]any{"state": "running", "name": "buildbot/runtests", "ref": "main", "description": "Build started.", "target_url": target}},
		{"POST", path, tok, map[string]any{"state": "canceled", "name": "buildbot/runtests", "ref": "main", "description": "Build done.", "target_url": target}},
		{"POST", "/api/v4/projects/1234/statuses/" + testSHA, tok, map[string]any{"state": "success", "name": "buildbot/runtests", "ref": "topic", "description": "Build done.", "target_url": target}},
	}
	if diff := cmp.Diff(want, callsOf(fs.Calls(), "PRIVATE-TOKEN")); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestForgeGiteaStatusMatchesOpenAPI(t *testing.T) {
	t.Parallel()
	fs := newForgeServer(t, "gitea.json", "/api/v1")
	s := newForgeSender(t, config.Reporter{Type: "gitea_status", Token: "%(secret:forge_token)s", BaseURL: fs.URL})
	ss := store.SourceStamp{Repository: "ssh://git@gitea.example.com:2222/team/tool.git", Branch: "main", Revision: testSHA}
	send(t, s,
		testReport(Started, 0, nil, ss),
		testReport(Finished, store.Warnings, nil, ss),
	)
	// A pull request's build: owner and repository_name from gbb's Gitea
	// hook, and the plugin's pull request context.
	send(t, s, testReport(Finished, store.Exception, map[string]any{"owner": "upstream", "repository_name": "tool", "pr_id": float64(5)}, ss))

	path := "/api/v1/repos/team/tool/statuses/" + testSHA
	auth := "token " + testSecrets["forge_token"]
	target := "http://gbb.example.org/#/builders/1/builds/7"
	want := []call{
		{"POST", path, auth, map[string]any{"state": "pending", "context": "buildbot/runtests", "description": "Build started.", "target_url": target}},
		{"POST", path, auth, map[string]any{"state": "warning", "context": "buildbot/runtests", "description": "Build done.", "target_url": target}},
		{"POST", "/api/v1/repos/upstream/tool/statuses/" + testSHA, auth, map[string]any{"state": "error", "context": "buildbot/pull_request/runtests", "description": "Build done.", "target_url": target}},
	}
	if diff := cmp.Diff(want, callsOf(fs.Calls(), "Authorization")); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestForgeBitbucketCloudStatusMatchesOpenAPI(t *testing.T) {
	t.Parallel()
	ss := store.SourceStamp{Repository: "git@bitbucket.org:team/app.git", Branch: "main", Revision: testSHA}
	target := "http://gbb.example.org/#/builders/1/builds/7"
	path := "/2.0/repositories/team/app/commit/" + testSHA + "/statuses/build"

	t.Run("oauth client credentials", func(t *testing.T) {
		t.Parallel()
		fs := newForgeServer(t, "bitbucket_cloud.json", "/2.0")
		// The token endpoint is the spec's oauth2 tokenUrl's path on the
		// API's host.
		doc := loadSpec(t, "testdata/openapi/bitbucket_cloud.json")
		tokenPath := "/site/oauth2/access_token"
		if f := doc.Components.SecuritySchemes["oauth2"].Value.Flows; f == nil || !strings.HasSuffix(f.AuthorizationCode.TokenURL, tokenPath) {
			t.Fatalf("the description's oauth2 tokenUrl is not %s", tokenPath)
		}
		var tokens atomic.Int32
		fs.extra[tokenPath] = func(w http.ResponseWriter, r *http.Request) {
			user, pass, ok := r.BasicAuth()
			body, _ := io.ReadAll(r.Body)
			if r.Method != "POST" || !ok || user != "consumer-key" || pass != testSecrets["bb_client"] || string(body) != "grant_type=client_credentials" {
				t.Errorf("token request %s %q with %q:%q", r.Method, body, user, pass)
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
			tokens.Add(1)
			json.NewEncoder(w).Encode(map[string]any{"access_token": "oauth-access-123", "expires_in": 7200, "token_type": "bearer"})
		}
		s := newForgeSender(t, config.Reporter{Type: "bitbucket_cloud_status", ClientID: "consumer-key", ClientSecret: "%(secret:bb_client)s", BaseURL: fs.URL + "/2.0"})
		send(t, s, testReport(Started, 0, nil, ss), testReport(Finished, store.Success, nil, ss))
		var got []call
		for _, c := range fs.Calls() {
			if c.Path == tokenPath {
				continue
			}
			got = append(got, call{c.Method, c.Path, c.Header.Get("Authorization"), c.Body})
		}
		want := []call{
			{"POST", path, "Bearer oauth-access-123", map[string]any{"state": "INPROGRESS", "key": "buildbot/runtests", "name": "buildbot/runtests", "description": "Build started.", "url": target}},
			{"POST", path, "Bearer oauth-access-123", map[string]any{"state": "SUCCESSFUL", "key": "buildbot/runtests", "name": "buildbot/runtests", "description": "Build done.", "url": target}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("requests (-want +got):\n%s", diff)
		}
		if tokens.Load() != 1 {
			t.Errorf("got %d token requests, want 1 (the token is reused until it expires)", tokens.Load())
		}
	})

	t.Run("app password", func(t *testing.T) {
		t.Parallel()
		fs := newForgeServer(t, "bitbucket_cloud.json", "/2.0")
		s := newForgeSender(t, config.Reporter{Type: "bitbucket_cloud_status", User: "ci-bot", Password: "%(secret:bb_password)s", BaseURL: fs.URL + "/2.0"})
		send(t, s, testReport(Finished, store.Failure, nil, ss))
		calls := fs.Calls()
		if len(calls) != 1 {
			t.Fatalf("got %d requests, want 1", len(calls))
		}
		user, pass, ok := (&http.Request{Header: calls[0].Header}).BasicAuth()
		if !ok || user != "ci-bot" || pass != testSecrets["bb_password"] || calls[0].Body["state"] != "FAILED" || calls[0].Path != path {
			t.Errorf("got %s %v with basic %v %q:%q", calls[0].Path, calls[0].Body, ok, user, pass)
		}
	})
}

// Bitbucket Server publishes no machine-readable description of its
// build-status API: the request is checked against buildbot's
// BitbucketServerStatusPush.
func TestForgeBitbucketServerStatus(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, http.StatusNoContent)
	ss := store.SourceStamp{Repository: "ssh://git@bitbucket.example.com:7999/proj/repo.git", Branch: "main", Revision: testSHA}
	target := "http://gbb.example.org/#/builders/1/builds/7"

	s := newForgeSender(t, config.Reporter{Type: "bitbucket_server_status", Token: "%(secret:forge_token)s", BaseURL: srv.URL + "/bitbucket"})
	send(t, s, testReport(Started, 0, nil, ss), testReport(Finished, store.Warnings, nil, ss))
	s2 := newForgeSender(t, config.Reporter{Type: "bitbucket_server_status", User: "ci", Password: "%(secret:bb_password)s", BaseURL: srv.URL + "/bitbucket"})
	send(t, s2, testReport(Finished, store.Success, nil, ss))

	path := "/bitbucket/rest/build-status/1.0/commits/" + testSHA
	want := []call{
		{"POST", path, "Bearer " + testSecrets["forge_token"], map[string]any{"state": "INPROGRESS", "key": "buildbot/runtests", "name": "buildbot/runtests", "description": "Build started.", "url": target}},
		{"POST", path, "Bearer " + testSecrets["forge_token"], map[string]any{"state": "FAILED", "key": "buildbot/runtests", "name": "buildbot/runtests", "description": "Build done.", "url": target}},
		{"POST", path, basicAuth("ci", testSecrets["bb_password"]), map[string]any{"state": "SUCCESSFUL", "key": "buildbot/runtests", "name": "buildbot/runtests", "description": "Build done.", "url": target}},
	}
	got := callsOf(srv.Calls(), "Authorization")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	for _, c := range srv.Calls() {
		if ct := c.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
	}
}

// recorder is a loopback server that records requests and answers code.
type recorder struct {
	*forgeServer
}

func newRecorder(t *testing.T, code int) recorder {
	fs := &forgeServer{t: t, extra: map[string]http.HandlerFunc{}}
	srv := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c := forgeCall{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone()}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &c.Body); err != nil {
				t.Errorf("body is not JSON: %v", err)
			}
		}
		fs.mu.Lock()
		fs.calls = append(fs.calls, c)
		fs.mu.Unlock()
		w.WriteHeader(code)
	})
	fs.URL = srv
	return recorder{fs}
}
