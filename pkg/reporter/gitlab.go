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

// gitLabProject is the project a source stamp's status goes to, as it
// goes in the URL's path: the source_project_id property of a merge
// request's build (gbb's GitLab hook sets it, as buildbot's; only digits,
// as the hook stores a number: a forced build can set any property), else
// the URL-encoded path group/subgroup/project of the repository URL, which
// GitLab's API takes for the project's id. why says what is wrong when
// there is none.
func gitLabProject(r *Report, ss store.SourceStamp) (project, why string) {
	if id := propString(r.Props, "source_project_id"); id != "" {
		if !allDigits(id) || len(id) > 18 {
			return "", fmt.Sprintf("source_project_id %q is not a project id (digits)", id)
		}
		return id, ""
	}
	g, why := stampRepo(ss)
	switch {
	case why != "":
		return "", why
	case g.Owner == "":
		return "", "the repository URL names no group"
	case otherPublicForge(g.Host, "gitlab"):
		return "", fmt.Sprintf("the repository is on %s, another forge", g.Host)
	}
	path := g.Owner + "/" + g.Repo
	if why := checkSegments("project", strings.Split(path, "/")...); why != "" {
		return "", why
	}
	return url.PathEscape(path), ""
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
		project, why := gitLabProject(r, ss)
		if why == "" {
			why = checkRevision(ss.Revision)
		}
		if why != "" {
			s.http.skipped(r, ss, why)
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
