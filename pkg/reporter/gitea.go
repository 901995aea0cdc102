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

// giteaPullContext is buildbot_gitea's default context for a pull
// request's build.
const giteaPullContext = "buildbot/pull_request/%(prop:buildername)s"

// giteaStatus is the buildbot_gitea plugin's GiteaStatusPush (Gitea and
// Forgejo): a commit status per source stamp, pending when the build
// starts and its result when it ends.
type giteaStatus struct {
	cfg  config.Reporter
	http forgeHTTP
}

func newGiteaStatus(r config.Reporter, d Deps) (Sender, error) {
	h, err := newForgeHTTP(r, d, "")
	if err != nil {
		return nil, err
	}
	// base_url is the instance, as the plugin's baseURL; one given with
	// the API's path is taken too.
	h.base = strings.TrimSuffix(h.base, "/api/v1")
	return &giteaStatus{cfg: r, http: h}, nil
}

// giteaState is buildbot_gitea's state of a report (its default
// warningAsSuccess=False: warnings are Gitea's "warning").
func giteaState(r *Report) string {
	if r.Event != Finished {
		return "pending"
	}
	switch r.Build.Results {
	case store.Success, store.Skipped:
		return "success"
	case store.Warnings:
		return "warning"
	case store.Exception, store.Cancelled:
		return "error"
	case store.Retry:
		return "pending"
	default: // failure and anything unknown
		return "failure"
	}
}

// giteaRepo is the owner and name of a source stamp's repository: the
// owner and repository_name properties gbb's Gitea hook sets (as the
// plugin's), else the repository URL. why says what is wrong when there
// is none.
func giteaRepo(r *Report, ss store.SourceStamp) (owner, name, why string) {
	owner, name = propString(r.Props, "owner"), propString(r.Props, "repository_name")
	if owner != "" && name != "" {
		// Properties: a forced build can set them to anything.
		if why := checkSegments("owner and repository_name", owner, name); why != "" {
			return "", "", why
		}
		return owner, name, ""
	}
	g, why := stampRepo(ss)
	switch {
	case why != "":
		return "", "", why
	case g.Owner == "":
		return "", "", "the repository URL names no owner"
	case strings.Contains(g.Owner, "/"):
		return "", "", fmt.Sprintf("Gitea has no subgroups: %s/%s", g.Owner, g.Repo)
	case otherPublicForge(g.Host, "gitea"):
		return "", "", fmt.Sprintf("the repository is on %s, another forge", g.Host)
	}
	if owner == "" {
		owner = g.Owner
	}
	if name == "" {
		name = g.Repo
	}
	if why := checkSegments("repository", owner, name); why != "" {
		return "", "", why
	}
	return owner, name, ""
}

func (s *giteaStatus) Send(ctx context.Context, r *Report) error {
	if r.Event != Started && r.Event != Finished {
		return nil
	}
	token, err := renderSecret(r, "token", s.cfg.Token)
	if err != nil {
		return err
	}
	tmpl := s.cfg.Context
	if _, pr := r.Props["pr_id"]; pr && tmpl == defaultContext {
		tmpl = giteaPullContext
	}
	statusContext, err := render(r, tmpl)
	if err != nil {
		return Permanent(fmt.Errorf("render context: %w", err))
	}
	desc := descStarted
	if r.Event == Finished {
		desc = descDone
	}
	state := giteaState(r)
	var errs []error
	for _, ss := range stampsWithRevision(r) {
		owner, name, why := giteaRepo(r, ss)
		if why == "" {
			why = checkRevision(ss.Revision)
		}
		if why != "" {
			s.http.skipped(r, ss, why)
			continue
		}
		err := s.http.do(ctx, forgeRequest{
			method: http.MethodPost,
			url:    s.http.base + "/api/v1/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/statuses/" + url.PathEscape(ss.Revision),
			header: http.Header{"Authorization": {"token " + token}},
			body: map[string]any{
				"state":       state,
				"target_url":  r.URL,
				"description": desc,
				"context":     statusContext,
			},
			secrets: []string{token},
			what:    fmt.Sprintf("status %s for %s/%s@%s", state, owner, name, ss.Revision),
		}, nil)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sendAll(errs)
}
