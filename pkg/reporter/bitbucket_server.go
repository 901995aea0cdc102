package reporter

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// bitbucketServerStatus is buildbot's BitbucketServerStatusPush (Bitbucket
// Server and Data Center): a build status per source stamp on the
// build-status API, in progress when the build starts and its result
// when it ends.
type bitbucketServerStatus struct {
	cfg  config.Reporter
	http forgeHTTP
}

func newBitbucketServerStatus(r config.Reporter, d Deps) (Sender, error) {
	h, err := newForgeHTTP(r, d, "")
	if err != nil {
		return nil, err
	}
	return &bitbucketServerStatus{cfg: r, http: h}, nil
}

// bitbucketState is buildbot's Bitbucket state of a report (Server's and
// Cloud's): in progress, then successful only for success.
func bitbucketState(r *Report) string {
	if r.Event != Finished {
		return "INPROGRESS"
	}
	if r.Build.Results == store.Success {
		return "SUCCESSFUL"
	}
	return "FAILED"
}

// basicAuth is the Authorization header of user and password.
func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func (s *bitbucketServerStatus) Send(ctx context.Context, r *Report) error {
	if r.Event != Started && r.Event != Finished {
		return nil
	}
	// A token is an HTTP access token (bearer); else user and password.
	var auth string
	var secrets []string
	if s.cfg.Token != "" {
		token, err := renderSecret(r, "token", s.cfg.Token)
		if err != nil {
			return err
		}
		auth, secrets = "Bearer "+token, []string{token}
	} else {
		password, err := renderSecret(r, "password", s.cfg.Password)
		if err != nil {
			return err
		}
		auth, secrets = basicAuth(s.cfg.User, password), []string{password}
	}
	// The header too, and its base64 alone: a forge may echo either.
	secrets = append(secrets, auth, strings.TrimPrefix(auth, "Basic "))
	key, err := render(r, s.cfg.Context)
	if err != nil {
		return Permanent(fmt.Errorf("render context: %w", err))
	}
	desc := descStarted
	if r.Event == Finished {
		desc = descDone
	}
	state := bitbucketState(r)
	var errs []error
	for _, ss := range stampsWithRevision(r) {
		why := checkRevision(ss.Revision)
		if g, bad := stampRepo(ss); why == "" && bad == "" && otherPublicForge(g.Host, "") {
			// The commit lives on a public forge: not this server's.
			why = fmt.Sprintf("the repository is on %s, a public forge", g.Host)
		}
		if why != "" {
			s.http.skipped(r, ss, why)
			continue
		}
		err := s.http.do(ctx, forgeRequest{
			method: http.MethodPost,
			url:    s.http.base + "/rest/build-status/1.0/commits/" + url.PathEscape(ss.Revision),
			header: http.Header{"Authorization": {auth}},
			body: map[string]any{
				"state":       state,
				"key":         key,
				"name":        key,
				"url":         r.URL,
				"description": desc,
			},
			secrets: secrets,
			what:    fmt.Sprintf("build status %s for %s", state, ss.Revision),
		}, nil)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sendAll(errs)
}
