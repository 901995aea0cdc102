package reporter

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// gitHubBase is buildbot's HOSTED_BASE_URL; GitHub Enterprise's is
// https://HOST/api/v3.
const gitHubBase = "https://api.github.com"

// gitHubStatus is buildbot's GitHubStatusPush: a commit status per source
// stamp, pending when the build starts and its result when it ends.
type gitHubStatus struct {
	cfg  config.Reporter
	http forgeHTTP
}

func newGitHubStatus(r config.Reporter, d Deps) (Sender, error) {
	h, err := newForgeHTTP(r, d, gitHubBase)
	if err != nil {
		return nil, err
	}
	return &gitHubStatus{cfg: r, http: h}, nil
}

// gitHubState is buildbot's GitHub state of a report: pending while the
// build runs, then success, failure or error.
func gitHubState(r *Report) string {
	if r.Event != Finished {
		return "pending"
	}
	switch r.Build.Results {
	case store.Success, store.Warnings, store.Skipped:
		return "success"
	case store.Failure:
		return "failure"
	case store.Retry:
		return "pending"
	default: // exception, cancelled and anything unknown
		return "error"
	}
}

// gitHubRepo is the owner and name of the GitHub repository of a source
// stamp, as buildbot's _extract_github_info: the project when it reads
// owner/name (what the GitHub hook sets), else the repository URL. why
// says what is wrong when there is none.
func gitHubRepo(ss store.SourceStamp) (owner, name, why string) {
	if o, n, found := strings.Cut(ss.Project, "/"); found && o != "" && n != "" && !strings.Contains(n, "/") {
		if why := checkSegments("project", o, n); why != "" {
			return "", "", why
		}
		return o, n, ""
	}
	g, why := stampRepo(ss)
	switch {
	case why != "":
		return "", "", why
	case g.Owner == "":
		return "", "", "the repository URL names no owner"
	case otherPublicForge(g.Host, "github"):
		return "", "", fmt.Sprintf("the repository is on %s, another forge", g.Host)
	case strings.Contains(g.Owner, "/"):
		// buildbot posts to /repos/group%2Fsub/…, which GitHub never has.
		return "", "", fmt.Sprintf("GitHub has no subgroups: %s/%s", g.Owner, g.Repo)
	}
	if why := checkSegments("repository", g.Owner, g.Repo); why != "" {
		return "", "", why
	}
	return g.Owner, g.Repo, ""
}

// gitHubAuth is the Authorization header of a token: as buildbot,
// "token …"; a token given as "Bearer …" (a GitHub App's) is sent so.
func gitHubAuth(token string) string {
	if strings.HasPrefix(token, "Bearer ") || strings.HasPrefix(token, "token ") {
		return token
	}
	return "token " + token
}

func (s *gitHubStatus) Send(ctx context.Context, r *Report) error {
	if r.Event != Started && r.Event != Finished {
		return nil
	}
	token, err := renderSecret(r, "token", s.cfg.Token)
	if err != nil {
		return err
	}
	statusContext, err := render(r, s.cfg.Context)
	if err != nil {
		return Permanent(fmt.Errorf("render context: %w", err))
	}
	desc := descStarted
	if r.Event == Finished {
		desc = descDone
	}
	state := gitHubState(r)
	var errs []error
	for _, ss := range stampsWithRevision(r) {
		owner, name, why := gitHubRepo(ss)
		if why == "" {
			why = checkRevision(ss.Revision)
		}
		if why != "" {
			s.http.skipped(r, ss, why)
			continue
		}
		body := map[string]any{
			"state":       state,
			"target_url":  r.URL,
			"description": desc,
			"context":     statusContext,
		}
		err := s.http.do(ctx, forgeRequest{
			method:  http.MethodPost,
			url:     s.http.base + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/statuses/" + url.PathEscape(ss.Revision),
			header:  http.Header{"Authorization": {gitHubAuth(token)}},
			body:    body,
			secrets: []string{token},
			what:    fmt.Sprintf("status %s for %s/%s@%s", state, owner, name, ss.Revision),
		}, nil)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sendAll(errs)
}

// gitHubComment is buildbot's GitHubCommentPush: a comment on the pull
// request a build was for, when it ends.
type gitHubComment struct {
	cfg  config.Reporter
	http forgeHTTP
}

func newGitHubComment(r config.Reporter, d Deps) (Sender, error) {
	h, err := newForgeHTTP(r, d, gitHubBase)
	if err != nil {
		return nil, err
	}
	return &gitHubComment{cfg: r, http: h}, nil
}

// pullRefRE is the branch of a pull request's build, as buildbot reads it.
var pullRefRE = regexp.MustCompile(`refs/pull/([0-9]+)/(head|merge)`)

// gitHubIssue is the number of the pull request a build was for: from the
// branch refs/pull/N/head|merge (buildbot's _extract_issue, on the build's
// branch property and then its source stamps'), else the github.number
// property gbb's GitHub hook sets.
func gitHubIssue(r *Report) string {
	branches := []string{propString(r.Props, "branch")}
	for _, ss := range r.Buildset.SourceStamps {
		branches = append(branches, ss.Branch)
	}
	for _, b := range branches {
		if m := pullRefRE.FindStringSubmatch(b); m != nil && len(m[1]) <= 18 {
			return m[1]
		}
	}
	if n := propString(r.Props, "github.number"); allDigits(n) && len(n) <= 18 {
		return n
	}
	return ""
}

// gitHubCommentBody is the comment: buildbot's "Build done." and what the
// reader then looks for, the result and the build's page.
func gitHubCommentBody(r *Report) string {
	var b strings.Builder
	b.WriteString(descDone)
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "Build %s #%d: **%s**", r.Builder.Name, r.Build.Number, forgeResultName(r.Build.Results))
	if r.URL != "" {
		fmt.Fprintf(&b, " (%s)", r.URL)
	}
	if r.Build.StateString != "" {
		fmt.Fprintf(&b, "\n\n%s", r.Build.StateString)
	}
	return b.String()
}

func (s *gitHubComment) Send(ctx context.Context, r *Report) error {
	// Buildbot's comment has no text at the start: only the end comments.
	if r.Event != Finished {
		return nil
	}
	issue := gitHubIssue(r)
	if issue == "" {
		return nil // not a pull request's build
	}
	token, err := renderSecret(r, "token", s.cfg.Token)
	if err != nil {
		return err
	}
	for _, ss := range r.Buildset.SourceStamps {
		owner, name, why := gitHubRepo(ss)
		if why != "" {
			s.http.skipped(r, ss, why)
			continue
		}
		// One comment per pull request: the first source stamp on GitHub.
		return s.http.do(ctx, forgeRequest{
			method:  http.MethodPost,
			url:     s.http.base + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/issues/" + url.PathEscape(issue) + "/comments",
			header:  http.Header{"Authorization": {gitHubAuth(token)}},
			body:    map[string]any{"body": gitHubCommentBody(r)},
			secrets: []string{token},
			what:    fmt.Sprintf("comment on %s/%s#%s", owner, name, issue),
		}, nil)
	}
	return nil
}
