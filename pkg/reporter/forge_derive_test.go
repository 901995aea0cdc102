package reporter

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/store"
)

// repoURLs are repository URLs as source stamps hold them: https, ssh,
// scp-like, with ports, users, subgroups, GHE and Bitbucket's API form.
var repoURLs = []string{
	"https://github.com/octo/hello.git",
	"https://github.com/octo/hello",
	"http://github.com/octo/hello.git",
	"git@github.com:octo/hello.git",
	"git@github.com:octo/hello",
	"ssh://git@github.com/octo/hello.git",
	"ssh://git@github.com:22/octo/hello.git",
	"git://github.com/octo/hello.git",
	"https://user:pw@ghe.example.com/org/tool.git",
	"https://ghe.example.com:8443/org/tool",
	"https://gitlab.com/group/sub/project.git",
	"git@gitlab.example.com:group/sub/deeper/project.git",
	"ssh://git@gitea.example.com:2222/team/tool.git",
	"gitea.example.com:team/tool.git",
	"https://bitbucket.org/team/app.git",
	"https://ci@bitbucket.org/team/app.git",
	"https://api.bitbucket.org/2.0/repositories/team/app",
	"ssh://git@bitbucket.example.com:7999/proj/repo.git",
	"https://github.com/just-a-repo",
	"https://github.com/octo/hello/",
	"/srv/git/local.git",
	"",
}

// parseGitRepo derives owner and repository as buildbot 3.7's giturlparse,
// which the GitHub and GitLab reporters use: the reference is buildbot's
// own function, run by Debian's python3-buildbot.
func TestForgeParseGitRepoMatchesBuildbot(t *testing.T) {
	t.Parallel()
	// Debian's buildbot package installs into Debian's python3, which may
	// not be the first python3 on PATH.
	testdeb.Need(t, "buildbot", "buildbot")
	py := "/usr/bin/python3"
	in, _ := json.Marshal(repoURLs)
	cmd := exec.Command(py, "-c", `
import json, sys
from buildbot.util.giturlparse import giturlparse
out = []
for u in json.load(sys.stdin):
    g = giturlparse(u)
    out.append(None if g is None else {"host": g.domain, "owner": g.owner or "", "repo": g.repo})
print(json.dumps(out))
`)
	cmd.Stdin = strings.NewReader(string(in))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("buildbot's giturlparse: %v\n%s", err, stderr.String())
	}
	var want []*gitRepo
	var raw []map[string]string
	if err := json.Unmarshal(outb, &raw); err != nil {
		t.Fatalf("%s: %v", outb, err)
	}
	for _, m := range raw {
		if m == nil {
			want = append(want, nil)
			continue
		}
		want = append(want, &gitRepo{Host: m["host"], Owner: m["owner"], Repo: m["repo"]})
	}
	var got []*gitRepo
	for _, u := range repoURLs {
		if g, ok := parseGitRepo(u); ok {
			got = append(got, &g)
		} else {
			got = append(got, nil)
		}
	}
	for i, u := range repoURLs {
		if diff := cmp.Diff(want[i], got[i]); diff != "" {
			t.Errorf("%q (-buildbot +gbb):\n%s", u, diff)
		}
	}
}

// What each forge posts to for a source stamp, as its buildbot reporter.
func TestForgeRepoDerivation(t *testing.T) {
	t.Parallel()
	type row struct {
		repo, project string
		props         map[string]any
		github        string // owner/name, "" for none
		gitlab        string // the project id as posted
		gitea         string
		bitbucket     string
	}
	for _, r := range []row{
		{repo: "https://github.com/octo/hello.git", github: "octo/hello", gitlab: "", gitea: "", bitbucket: ""},
		{repo: "git@github.com:octo/hello.git", project: "octo/other", github: "octo/other"},
		{repo: "https://ghe.example.com/org/tool", github: "org/tool", gitlab: "org%2Ftool", gitea: "org/tool", bitbucket: "org/tool"},
		{repo: "git@gitlab.com:group/sub/project.git", gitlab: "group%2Fsub%2Fproject"},
		{repo: "git@gitlab.example.com:group/sub/project.git", github: "" /* buildbot posts to owner "group/sub"; GitHub has no subgroups */, gitlab: "group%2Fsub%2Fproject"},
		{repo: "https://gitlab.example.com/a/b", props: map[string]any{"source_project_id": float64(77)}, github: "a/b", gitlab: "77", gitea: "a/b", bitbucket: "a/b"},
		{repo: "ssh://git@gitea.example.com:2222/team/tool.git", props: map[string]any{"owner": "up", "repository_name": "tool"}, github: "team/tool", gitlab: "team%2Ftool", gitea: "up/tool", bitbucket: "team/tool"},
		{repo: "https://bitbucket.org/team/app.git", bitbucket: "team/app"},
		{repo: "https://api.bitbucket.org/2.0/repositories/team/app", bitbucket: "team/app"},
		{repo: "https://codeberg.org/team/app.git", gitea: "team/app"},
		{repo: "/srv/git/local.git"},
		// A URL ending in "/" is taken without it.
		{repo: "https://ghe.example.com/org/tool/", github: "org/tool", gitlab: "org%2Ftool", gitea: "org/tool", bitbucket: "org/tool"},
	} {
		ss := store.SourceStamp{Repository: r.repo, Project: r.project, Revision: testSHA}
		rep := testReport(Finished, 0, r.props, ss)
		got := row{repo: r.repo, project: r.project, props: r.props}
		if o, n, why := gitHubRepo(ss); why == "" {
			got.github = o + "/" + n
		}
		if p, why := gitLabProject(rep, ss); why == "" {
			got.gitlab = p
		}
		if o, n, why := giteaRepo(rep, ss); why == "" {
			got.gitea = o + "/" + n
		}
		if o, n, why := bitbucketCloudRepo(ss); why == "" {
			got.bitbucket = o + "/" + n
		}
		if diff := cmp.Diff(r, got, cmp.AllowUnexported(row{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", r.repo, diff)
		}
	}
}

// The states per result, as buildbot 3.7's reporters map them.
func TestForgeStateMapping(t *testing.T) {
	t.Parallel()
	type states struct{ GitHub, GitLab, Gitea, Bitbucket string }
	want := map[string]states{
		"started":   {"pending", "running", "pending", "INPROGRESS"},
		"success":   {"success", "success", "success", "SUCCESSFUL"},
		"warnings":  {"success", "success", "warning", "FAILED"},
		"failure":   {"failure", "failed", "failure", "FAILED"},
		"skipped":   {"success", "success", "success", "FAILED"},
		"exception": {"error", "failed", "error", "FAILED"},
		"retry":     {"pending", "pending", "pending", "FAILED"},
		"cancelled": {"error", "canceled", "error", "FAILED"},
	}
	got := map[string]states{}
	r := testReport(Started, 0, nil)
	got["started"] = states{gitHubState(r), gitLabState(r), giteaState(r), bitbucketState(r)}
	for res := store.Success; res <= store.Cancelled; res++ {
		r := testReport(Finished, res, nil)
		got[forgeResultName(res)] = states{gitHubState(r), gitLabState(r), giteaState(r), bitbucketState(r)}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
}
