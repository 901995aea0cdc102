package reporter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// bitbucketCloudBase is Bitbucket Cloud's API root.
const bitbucketCloudBase = "https://api.bitbucket.org/2.0"

// bitbucketCloudStatus is buildbot's BitbucketStatusPush: a build status
// per source stamp, in progress when the build starts and its result when
// it ends, with an OAuth consumer's token (client credentials) or basic
// auth (an app password).
type bitbucketCloudStatus struct {
	cfg      config.Reporter
	http     forgeHTTP
	tokenURL string

	mu      sync.Mutex
	token   string    // guarded by mu: the last access token
	expires time.Time // guarded by mu: when it stops being good
	keyFor  string    // guarded by mu: the client secret it was got with
}

func newBitbucketCloudStatus(r config.Reporter, d Deps) (Sender, error) {
	h, err := newForgeHTTP(r, d, bitbucketCloudBase)
	if err != nil {
		return nil, err
	}
	return &bitbucketCloudStatus{cfg: r, http: h, tokenURL: bitbucketTokenURL(h.base)}, nil
}

// bitbucketTokenURL is the OAuth token endpoint that goes with an API
// root: bitbucket.org's for api.bitbucket.org (buildbot's _OAUTH_URL),
// else the same path on the API's own host (a test's server).
func bitbucketTokenURL(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	host := u.Host
	if host == "api.bitbucket.org" {
		host = "bitbucket.org"
	}
	return u.Scheme + "://" + host + "/site/oauth2/access_token"
}

// bitbucketCloudRepo is the workspace and repository slug of a source
// stamp's repository URL, as buildbot's get_owner_and_repo: the https,
// ssh and scp-like clone URLs and the API's own repository URL. why says
// what is wrong when there is none.
func bitbucketCloudRepo(ss store.SourceStamp) (workspace, slug, why string) {
	g, why := stampRepo(ss)
	switch {
	case why != "":
		return "", "", why
	case otherPublicForge(g.Host, "bitbucket"):
		return "", "", fmt.Sprintf("the repository is on %s, another forge", g.Host)
	}
	owner := strings.TrimPrefix(g.Owner, "2.0/repositories/")
	if owner == "" || strings.Contains(owner, "/") {
		return "", "", "the repository URL names no workspace/repository"
	}
	if why := checkSegments("repository", owner, g.Repo); why != "" {
		return "", "", why
	}
	return owner, g.Repo, ""
}

// accessToken gets (or reuses) a client-credentials access token.
func (s *bitbucketCloudStatus) accessToken(ctx context.Context, secret string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.keyFor == secret && time.Now().Before(s.expires) {
		return s.token, nil
	}
	var answer struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	err := s.http.do(ctx, forgeRequest{
		method:  http.MethodPost,
		url:     s.tokenURL,
		header:  http.Header{"Authorization": {basicAuth(s.cfg.ClientID, secret)}},
		form:    url.Values{"grant_type": {"client_credentials"}},
		secrets: []string{secret},
		what:    "access token",
	}, &answer)
	if err != nil {
		return "", err
	}
	if answer.AccessToken == "" {
		return "", fmt.Errorf("%s access token: the answer has no access_token", s.cfg.Type)
	}
	s.token, s.keyFor = answer.AccessToken, secret
	// A minute's margin, so a token is not used as it runs out.
	s.expires = time.Now().Add(time.Duration(answer.ExpiresIn)*time.Second - time.Minute)
	return s.token, nil
}

// forgetToken drops the cached access token.
func (s *bitbucketCloudStatus) forgetToken() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = ""
}

func (s *bitbucketCloudStatus) Send(ctx context.Context, r *Report) error {
	if r.Event != Started && r.Event != Finished {
		return nil
	}
	var auth string
	var secrets []string
	if s.cfg.ClientID != "" {
		secret, err := renderSecret(r, "client_secret", s.cfg.ClientSecret)
		if err != nil {
			return err
		}
		token, err := s.accessToken(ctx, secret)
		if err != nil {
			return err
		}
		auth, secrets = "Bearer "+token, []string{secret, token}
	} else {
		password, err := renderSecret(r, "password", s.cfg.Password)
		if err != nil {
			return err
		}
		auth = basicAuth(s.cfg.User, password)
		secrets = []string{password, auth, strings.TrimPrefix(auth, "Basic ")}
	}
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
		workspace, slug, why := bitbucketCloudRepo(ss)
		if why == "" {
			why = checkRevision(ss.Revision)
		}
		if why != "" {
			s.http.skipped(r, ss, why)
			continue
		}
		err := s.http.do(ctx, forgeRequest{
			method: http.MethodPost,
			url:    s.http.base + "/repositories/" + url.PathEscape(workspace) + "/" + url.PathEscape(slug) + "/commit/" + url.PathEscape(ss.Revision) + "/statuses/build",
			header: http.Header{"Authorization": {auth}},
			body: map[string]any{
				"state":       state,
				"key":         key,
				"name":        key,
				"url":         r.URL,
				"description": desc,
			},
			secrets: secrets,
			what:    fmt.Sprintf("build status %s for %s/%s@%s", state, workspace, slug, ss.Revision),
		}, nil)
		var se *forgeStatusError
		if errors.As(err, &se) && se.Code == http.StatusUnauthorized && s.cfg.ClientID != "" {
			// The access token was revoked or ran out early: get a new
			// one on the next try.
			s.forgetToken()
			err = fmt.Errorf("%s (access token refused: a new one is asked for on the next try)", se.msg)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sendAll(errs)
}
