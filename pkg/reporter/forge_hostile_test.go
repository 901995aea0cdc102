package reporter

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// syncBuffer is a log's buffer that goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Build properties and change fields are anyone's who can force a build
// or push a branch: none of them may move a forge request to another
// path, add a query, or name another host. Each hostile value either
// stays inside its escaped path segment or the source stamp is skipped,
// with the reason logged.
func TestForgeHostileValuesStayInTheirSegment(t *testing.T) {
	t.Parallel()
	type req struct{ path, query string }
	var mu sync.Mutex
	var got []req
	base := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, req{r.URL.EscapedPath(), r.URL.RawQuery})
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"access_token":"tok","expires_in":3600}`))
	})
	seg := `[^/?#]+`
	hex := `[0-9a-f]{7,64}`
	cases := []struct {
		name   string
		kind   string
		props  map[string]any
		ss     store.SourceStamp
		branch string
		want   string // the path every request must match; "" for no request
		quiet  bool   // no request and nothing to log: not a pull request's build
	}{
		{name: "gitlab project id with a path", kind: "gitlab_status",
			props: map[string]any{"source_project_id": "42/members?user_id=666&access_level=50#"},
			ss:    store.SourceStamp{Repository: "https://gitlab.example.com/a/b", Revision: testSHA}},
		{name: "gitlab project id climbing", kind: "gitlab_status",
			props: map[string]any{"source_project_id": "../../users/1"},
			ss:    store.SourceStamp{Repository: "https://gitlab.example.com/a/b", Revision: testSHA}},
		{name: "gitlab project path climbing", kind: "gitlab_status",
			ss: store.SourceStamp{Repository: "https://gitlab.example.com/../../api/v4/users/b", Revision: testSHA}},
		{name: "gitlab revision with a path", kind: "gitlab_status",
			ss: store.SourceStamp{Repository: "https://gitlab.example.com/a/b", Revision: "abcdef0/../../../members?x=1"}},
		{name: "gitlab odd project name is escaped", kind: "gitlab_status",
			ss:   store.SourceStamp{Repository: "https://gitlab.example.com/a?b=1/c#d", Revision: testSHA},
			want: `^/api/v4/projects/` + seg + `/statuses/` + hex + `$`},
		{name: "github project climbing", kind: "github_status",
			ss: store.SourceStamp{Project: "../orgs", Repository: "https://github.com/a/b", Revision: testSHA}},
		{name: "github project with a query is escaped", kind: "github_status",
			ss:   store.SourceStamp{Project: "octo/hello?x=1#frag", Revision: testSHA},
			want: `^/repos/` + seg + `/` + seg + `/statuses/` + hex + `$`},
		{name: "github revision not hex", kind: "github_status",
			ss: store.SourceStamp{Project: "octo/hello", Revision: "../../../user/repos"}},
		{name: "github comment number not digits", kind: "github_comment",
			props: map[string]any{"github.number": "1/../../../user"},
			ss:    store.SourceStamp{Project: "octo/hello", Revision: testSHA}, quiet: true},
		{name: "github comment branch with a number", kind: "github_comment",
			ss:   store.SourceStamp{Project: "octo/hello", Branch: "refs/pull/12/head", Revision: testSHA},
			want: `^/repos/octo/hello/issues/12/comments$`},
		{name: "gitea owner climbing", kind: "gitea_status",
			props: map[string]any{"owner": "..", "repository_name": "admin"},
			ss:    store.SourceStamp{Repository: "https://gitea.example.com/a/b", Revision: testSHA}},
		{name: "gitea owner with a slash is escaped", kind: "gitea_status",
			props: map[string]any{"owner": "a/../../admin", "repository_name": "x?y"},
			ss:    store.SourceStamp{Repository: "https://gitea.example.com/a/b", Revision: testSHA},
			want:  `^/api/v1/repos/` + seg + `/` + seg + `/statuses/` + hex + `$`},
		{name: "bitbucket cloud workspace climbing", kind: "bitbucket_cloud_status",
			ss: store.SourceStamp{Repository: "https://bb.example.com/../app.git", Revision: testSHA}},
		{name: "bitbucket cloud revision not hex", kind: "bitbucket_cloud_status",
			ss: store.SourceStamp{Repository: "https://bb.example.com/team/app.git", Revision: "HEAD?x=1"}},
		{name: "bitbucket server revision climbing", kind: "bitbucket_server_status",
			ss: store.SourceStamp{Repository: "https://bbs.example.com/scm/p/r.git", Revision: "../../../../rest/api/1.0/admin"}},
		{name: "bitbucket server github.com commit", kind: "bitbucket_server_status",
			ss: store.SourceStamp{Repository: "https://github.com/octo/hello.git", Revision: testSHA}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			var logs syncBuffer
			cfg := config.Reporter{Type: c.kind, Name: c.kind, BaseURL: base, Context: defaultContext,
				Token: "t0ken-value", User: "u", Password: "pw-value"}
			s, err := newSender(cfg, Deps{HTTP: &http.Client{}, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			r := testReport(Finished, store.Success, c.props, c.ss)
			if err := s.Send(context.Background(), r); err != nil {
				t.Fatalf("Send: %v", err)
			}
			mu.Lock()
			reqs := append([]req(nil), got...)
			mu.Unlock()
			if c.want == "" {
				if len(reqs) != 0 {
					t.Fatalf("requests %v, want none", reqs)
				}
				if !c.quiet && (!strings.Contains(logs.String(), "source stamp not reported") || !strings.Contains(logs.String(), "why=")) {
					t.Errorf("the skip is not logged with its reason: %q", logs.String())
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("requests %v, want one", reqs)
			}
			re := regexp.MustCompile(c.want)
			if !re.MatchString(reqs[0].path) || reqs[0].query != "" {
				t.Errorf("request to %q?%q, want a path matching %s and no query", reqs[0].path, reqs[0].query, c.want)
			}
			for _, p := range strings.Split(reqs[0].path, "/") {
				if u, _ := url.PathUnescape(p); u == ".." || u == "." {
					t.Errorf("request path %q has a segment %q", reqs[0].path, u)
				}
			}
		})
	}
}
