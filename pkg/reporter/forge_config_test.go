package reporter

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Each forge kind, configured as a user writes master.toml, makes a sender
// whose first status is one the forge's API description takes.
func TestForgeKindsFromConfig(t *testing.T) {
	t.Parallel()
	gh := newForgeServer(t, "github.json", "/api/v3")
	gl := newForgeServer(t, "gitlab.json", "")
	gt := newForgeServer(t, "gitea.json", "/api/v1")
	bc := newForgeServer(t, "bitbucket_cloud.json", "/2.0")
	bc.extra["/site/oauth2/access_token"] = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"access_token":"oauth-xyz","expires_in":3600}`)
	}
	bs := newRecorder(t, http.StatusNoContent)

	src := fmt.Sprintf(`
[[reporters]]
type = "github_status"
token = "%%(secret:github_token)s"
base_url = "%s/api/v3"

[[reporters]]
type = "github_comment"
token = "%%(secret:github_token)s"
base_url = "%s/api/v3"
mode = "all"

[[reporters]]
type = "gitlab_status"
token = "%%(secret:forge_token)s"
base_url = "%s"

[[reporters]]
type = "gitea_status"
token = "%%(secret:forge_token)s"
base_url = "%s"

[[reporters]]
type = "bitbucket_cloud_status"
client_id = "consumer"
client_secret = "%%(secret:bb_client)s"
base_url = "%s/2.0"

[[reporters]]
type = "bitbucket_server_status"
user = "ci"
password = "%%(secret:bb_password)s"
base_url = "%s"
`, gh.URL, gh.URL, gl.URL, gt.URL, bc.URL, bs.URL)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "master.toml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Reporters) != 6 {
		t.Fatalf("got %d reporters, want 6", len(cfg.Reporters))
	}
	repos := map[string]string{
		"github_status":           "https://github.com/octo/hello.git",
		"github_comment":          "https://github.com/octo/hello.git",
		"gitlab_status":           "https://gitlab.example.com/group/project.git",
		"gitea_status":            "https://gitea.example.com/team/tool.git",
		"bitbucket_cloud_status":  "https://bitbucket.org/team/app.git",
		"bitbucket_server_status": "ssh://git@bitbucket.example.com:7999/proj/repo.git",
	}
	for _, rc := range cfg.Reporters {
		s, err := newSender(rc, Deps{HTTP: &http.Client{}})
		if err != nil {
			t.Fatalf("%s: %v", rc.Name, err)
		}
		ss := store.SourceStamp{Repository: repos[rc.Type], Branch: "refs/pull/3/head", Revision: testSHA}
		if err := s.Send(t.Context(), testReport(Finished, store.Success, nil, ss)); err != nil {
			t.Errorf("%s: %v", rc.Name, err)
		}
	}
	for name, n := range map[string]int{"github": len(gh.Calls()), "gitlab": len(gl.Calls()), "gitea": len(gt.Calls()), "bitbucket cloud": len(bc.Calls()), "bitbucket server": len(bs.Calls())} {
		want := 1
		switch name {
		case "github":
			want = 2 // the status and the comment
		case "bitbucket cloud":
			want = 2 // the token and the status
		}
		if n != want {
			t.Errorf("%s got %d requests, want %d", name, n, want)
		}
	}
}
