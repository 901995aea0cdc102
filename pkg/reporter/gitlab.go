package reporter

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// gitLabBase is buildbot's HOSTED_BASE_URL: the instance, not its API.
const gitLabBase = "https://gitlab.com"

// gitLabStatus is buildbot's GitLabStatusPush: a commit status per source
// stamp, running when the build starts and its result when it ends.
type gitLabStatus struct {
	cfg  config.Reporter
	http forgeHTTP
}

func newGitLabStatus(r config.Reporter, d Deps) (Sender, error) {
	h, err := newForgeHTTP(r, d, gitLabBase)
	if err != nil {
		return nil, err
	}
	// base_url is the instance, as buildbot's; one given with the API's
	// path is taken too.
	h.base = strings.TrimSuffix(h.base, "/api/v4")
	return &gitLabStatus{cfg: r, http: h}, nil
}

// gitLabState is buildbot's GitLab state of a report.
func gitLabState(r *Report) string {
	if r.Event != Finished {
		return "running" // the build has started
	}
	switch r.Build.Results {
	case store.Success, store.Warnings, store.Skipped:
		return "success"
	case store.Retry:
		return "pending"
	case store.Cancelled:
		return "canceled"
	default: // failure, exception and anything unknown
		return "failed"
	}
}

// gitLabProject is the project a source stamp's status goes to: the
// source_project_id property of a merge request's build (gbb's GitLab
// hook sets it, as buildbot's), else the URL-encoded path
// group/subgroup/project of the repository URL, which GitLab's API takes
// for the project's id.
func gitLabProject(r *Report, ss store.SourceStamp) (string, bool) {
	if id := propString(r.Props, "source_project_id"); id != "" {
		return id, true
	}
	if ss.Repository == "" {
		return "", false
	}
	g, ok := parseGitRepo(ss.Repository)
	if !ok || g.Owner == "" || otherPublicForge(g.Host, "gitlab") {
		return "", false
	}
	return url.PathEscape(g.Owner + "/" + g.Repo), true
}

func (s *gitLabStatus) Send(ctx context.Context, r *Report) error {
	if r.Event != Started && r.Event != Finished {
		return nil
	}
	token, err := renderSecret(r, "token", s.cfg.Token)
	if err != nil {
		return err
	}
	name, err := render(r, s.cfg.Context)
	if err != nil {
		return Permanent(fmt.Errorf("render context: %w", err))
	}
	desc := descStarted
	if r.Event == Finished {
		desc = descDone
	}
	state := gitLabState(r)
	var errs []error
	for _, ss := range stampsWithRevision(r) {
		project, ok := gitLabProject(r, ss)
		if !ok {
			continue
		}
		ref := propString(r.Props, "source_branch")
		if ref == "" {
			ref = ss.Branch
		}
		body := map[string]any{
			"state":       state,
			"target_url":  r.URL,
			"description": desc,
			"name":        name,
		}
		if ref != "" {
			body["ref"] = ref
		}
		err := s.http.do(ctx, forgeRequest{
			method:  http.MethodPost,
			url:     s.http.base + "/api/v4/projects/" + project + "/statuses/" + url.PathEscape(ss.Revision),
			header:  http.Header{"Private-Token": {token}},
			body:    body,
			secrets: []string{token},
			what:    fmt.Sprintf("status %s for project %s@%s", state, project, ss.Revision),
			// "Another update to this commit status is in progress".
			retry: []int{http.StatusConflict},
		}, nil)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sendAll(errs)
}
