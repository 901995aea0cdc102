package reporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// forgeKinds makes the forges' reporters: commit statuses and pull request
// comments.
var forgeKinds = map[string]newFunc{
	"github_status":           newGitHubStatus,
	"github_comment":          newGitHubComment,
	"gitlab_status":           newGitLabStatus,
	"gitea_status":            newGiteaStatus,
	"bitbucket_server_status": newBitbucketServerStatus,
	"bitbucket_cloud_status":  newBitbucketCloudStatus,
}

// The descriptions buildbot's status reporters send (their default
// generators' MessageFormatterRenderable texts).
const (
	descStarted = "Build started."
	descDone    = "Build done."
)

// defaultContext is config's default context, buildbot's.
const defaultContext = "buildbot/%(prop:buildername)s"

// forgeResultName is buildbot's name of a build result.
func forgeResultName(r int) string {
	names := []string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}
	if r >= 0 && r < len(names) {
		return names[r]
	}
	return fmt.Sprintf("result %d", r)
}

// forgeHTTP is what every forge kind shares: the client, the base URL
// and the secrets its errors must never show.
type forgeHTTP struct {
	kind   string // the reporter's type, for errors
	client *http.Client
	base   string // the API root, without a trailing slash
	// users are the config's user and client_id: an echoed basic auth
	// header is base64 of one of them and a secret.
	users []string
	log   *slog.Logger
	// skips samples the log of skipped source stamps: the first few,
	// then one a minute.
	skips *rate.Sometimes
}

// skipped logs (sampled) a source stamp the reporter does not report on,
// and why.
func (f forgeHTTP) skipped(r *Report, ss store.SourceStamp, why string) {
	if f.log == nil || f.skips == nil {
		return
	}
	f.skips.Do(func() {
		f.log.Info("source stamp not reported", "build", r.Build.ID, "repository", ss.Repository,
			"revision", ss.Revision, "why", why)
	})
}

func newForgeHTTP(r config.Reporter, d Deps, defaultBase string) (forgeHTTP, error) {
	base := strings.TrimRight(r.BaseURL, "/")
	if base == "" {
		base = defaultBase
	}
	if base == "" {
		return forgeHTTP{}, fmt.Errorf("reporter %s: base_url is required", r.Name)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return forgeHTTP{}, fmt.Errorf("reporter %s: base_url %q is not an http or https URL", r.Name, base)
	}
	c := d.HTTP
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return forgeHTTP{kind: r.Type, client: c, base: base, log: log, users: []string{r.User, r.ClientID},
		skips: &rate.Sometimes{First: 10, Interval: time.Minute}}, nil
}

// renderSecret renders a reporter's secret (a token, a password). A
// secret that cannot be rendered is a configuration error: retrying will
// not cure it.
func renderSecret(r *Report, name, s string) (string, error) {
	v, err := render(r, s)
	if err != nil {
		return "", Permanent(fmt.Errorf("render %s: %w", name, err))
	}
	return v, nil
}

// forgeRequest is one request to a forge.
type forgeRequest struct {
	method string
	url    string // absolute
	header http.Header
	body   any // sent as JSON unless form is set
	form   url.Values
	// secrets are scrubbed from any error (the forge may echo them).
	secrets []string
	// what names the request in errors: "status pending for o/r@sha".
	what string
	// retry are 4xx statuses this forge means as "try again" (GitLab's
	// 409 for a status being updated concurrently).
	retry []int
}

// do sends q and classifies the answer as the dispatcher needs it: nil for
// 2xx; a *RetryAfterError for 429/503 with Retry-After (or GitHub's rate
// limit reset); a plain error for the retryable 408, 429, 5xx and network
// failures; Permanent for any other 4xx, with the forge's message. The
// response body of a 2xx is decoded into out when out is not nil.
func (f forgeHTTP) do(ctx context.Context, q forgeRequest, out any) error {
	var body io.Reader
	contentType := ""
	switch {
	case q.form != nil:
		body = strings.NewReader(q.form.Encode())
		contentType = "application/x-www-form-urlencoded"
	case q.body != nil:
		b, err := json.Marshal(q.body)
		if err != nil {
			return Permanent(fmt.Errorf("%s %s: encode: %w", f.kind, q.what, err))
		}
		body = bytes.NewReader(b)
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, q.method, q.url, body)
	if err != nil {
		return Permanent(fmt.Errorf("%s %s: %s", f.kind, q.what, f.scrub(err.Error(), q.secrets)))
	}
	for k, vs := range q.header {
		req.Header[k] = vs
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "gbb")
	resp, err := f.client.Do(req)
	if err != nil {
		// Refused, reset, timed out: the forge may be back soon.
		return fmt.Errorf("%s %s: %s", f.kind, q.what, f.scrub(err.Error(), q.secrets))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1))
	cut := len(data) > 1<<20
	if cut {
		data = data[:1<<20]
	}
	if resp.StatusCode/100 == 2 {
		if out != nil && len(data) > 0 {
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("%s %s: decode answer: %w", f.kind, q.what, err)
			}
		}
		return nil
	}
	msg := forgeMessage(data)
	if cut {
		msg += cutMark
	}
	msg = f.scrub(msg, q.secrets)
	err = &forgeStatusError{Code: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s %s", f.kind, q.what, resp.Status, msg)}
	retryable := retryableStatus(resp) || slices.Contains(q.retry, resp.StatusCode)
	if after, ok := retryAfter(resp.Header, time.Now()); ok && retryable {
		return &RetryAfterError{After: after, Err: err}
	}
	if retryable {
		return err
	}
	return Permanent(err)
}

// forgeStatusError is a forge's answer other than 2xx.
type forgeStatusError struct {
	Code int // the HTTP status
	msg  string
}

func (e *forgeStatusError) Error() string { return e.msg }

// retryableStatus reports whether the answer is one a later try may cure:
// 408, 429 and 5xx, and GitHub's rate limit (a 403 with no requests left).
func retryableStatus(resp *http.Response) bool {
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return true
	case c == http.StatusForbidden && resp.Header.Get("X-RateLimit-Remaining") == "0":
		return true
	}
	return false
}

// retryAfter reads when the forge wants the next try: Retry-After (seconds
// or an HTTP date), else GitHub's X-RateLimit-Reset (a Unix time) when no
// requests are left.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			return time.Duration(s) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	if h.Get("X-RateLimit-Remaining") == "0" {
		if s, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Unix(s, 0).Sub(now), 0), true
		}
	}
	return 0, false
}

// forgeMessage is the forge's own explanation in an error answer:
// GitHub's, GitLab's and Gitea's "message", Bitbucket Cloud's
// error.message, Bitbucket Server's errors[].message, else the start of
// the body.
func forgeMessage(data []byte) string {
	var m struct {
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
		Errors  []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(data, &m) == nil {
		var parts []string
		if s := rawText(m.Message); s != "" {
			parts = append(parts, s)
		}
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(m.Error, &e) == nil && e.Message != "" {
			parts = append(parts, e.Message)
		} else if s := rawText(m.Error); s != "" {
			parts = append(parts, s)
		}
		for _, e := range m.Errors {
			if e.Message != "" {
				parts = append(parts, e.Message)
			}
		}
		if len(parts) > 0 {
			return strings.Join(parts, "; ")
		}
	}
	// Whole: it is cut only after the secrets are taken out of it.
	return strings.TrimSpace(string(data))
}

// rawText is a JSON string's text, or the JSON itself for other values
// (GitLab's message may be an object of field errors).
func rawText(m json.RawMessage) string {
	if len(m) == 0 || string(m) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(m, &s) == nil {
		return s
	}
	return string(m)
}

// scrub hides every secret of a request in s, in the forms a forge may
// echo them (scrubText), and cuts it to its length after.
func (f forgeHTTP) scrub(s string, secrets []string) string {
	return scrubText(s, secrets, f.users)
}

// sendAll sends one status per source stamp and returns what went wrong:
// nil when all went, Permanent when every failure is permanent, else an
// error the dispatcher retries (a retry sends every status again, which
// a forge takes as the same status).
func sendAll(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	err := errors.Join(errs...)
	for _, e := range errs {
		var ra *RetryAfterError
		if errors.As(e, &ra) {
			// The wait is said once, by the joined error's wrapper.
			inner := make([]error, len(errs))
			for i, e := range errs {
				inner[i] = e
				if r, ok := e.(*RetryAfterError); ok {
					inner[i] = r.Err
				}
			}
			return &RetryAfterError{After: ra.After, Err: errors.Join(inner...)}
		}
	}
	for _, e := range errs {
		if !IsPermanent(e) {
			return err
		}
	}
	return Permanent(err)
}

// gitRepo is a repository URL in the parts buildbot's giturlparse gives:
// https://host/owner/repo(.git), ssh://user@host[:port]/owner/repo and
// the scp-like user@host:owner/repo. Owner holds every path segment but
// the last (GitLab's groups and subgroups); it is empty when the path has
// one segment.
type gitRepo struct {
	Host  string
	Owner string
	Repo  string
}

// parseGitRepo splits a repository URL as buildbot's giturlparse does.
func parseGitRepo(s string) (gitRepo, bool) {
	rest := s
	for _, p := range []string{"https://", "http://", "ssh://", "git://"} {
		if strings.HasPrefix(rest, p) {
			rest = rest[len(p):]
			break
		}
	}
	// A user is everything up to the last @ (giturlparse's greedy user).
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	i := strings.IndexAny(rest, "/:")
	if i <= 0 {
		return gitRepo{}, false
	}
	host, sep, path := rest[:i], rest[i], rest[i+1:]
	if sep == ':' {
		// host:PORT/path, or the scp-like host:path.
		if j := strings.IndexByte(path, '/'); j > 0 && allDigits(path[:j]) {
			path = path[j+1:]
		}
	}
	path = strings.TrimSuffix(path, ".git")
	if path == "" || strings.HasSuffix(path, "/") {
		return gitRepo{}, false
	}
	r := gitRepo{Host: host, Repo: path}
	if j := strings.LastIndexByte(path, '/'); j >= 0 {
		r.Owner, r.Repo = path[:j], path[j+1:]
	}
	return r, true
}

// stampRepo parses the repository URL of ss for a forge: as buildbot's
// giturlparse, but a URL ending in "/" is taken without it (buildbot
// reports nothing for one). The reason is "" when it parses.
func stampRepo(ss store.SourceStamp) (gitRepo, string) {
	if ss.Repository == "" {
		return gitRepo{}, "the source stamp has no repository"
	}
	g, ok := parseGitRepo(strings.TrimRight(ss.Repository, "/"))
	if !ok {
		return gitRepo{}, "the repository URL names no owner/repository"
	}
	return g, ""
}

// checkRevision is why rev cannot be posted to a forge ("" when it can):
// a commit id is 7 to 64 hex digits (SHA-1 or SHA-256, maybe abbreviated).
func checkRevision(rev string) string {
	if len(rev) < 7 || len(rev) > 64 {
		return fmt.Sprintf("revision %q is not a commit id (7 to 64 hex digits)", rev)
	}
	for _, c := range rev {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return fmt.Sprintf("revision %q is not a commit id (7 to 64 hex digits)", rev)
		}
	}
	return ""
}

// checkSegments is why one of segs cannot be a segment of a forge's URL
// path ("" when all can): each is escaped where it is put in a path, but
// an empty segment, "." and ".." would still move the request elsewhere,
// and control characters are never part of a name.
func checkSegments(what string, segs ...string) string {
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || len(s) > 255 {
			return fmt.Sprintf("%s %q is not a name a forge takes", what, strings.Join(segs, "/"))
		}
		for _, c := range s {
			if c < 0x20 || c == 0x7f {
				return fmt.Sprintf("%s %q is not a name a forge takes", what, strings.Join(segs, "/"))
			}
		}
	}
	return ""
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// publicForgeHosts are the hosts of the public forges: a source stamp on
// one of them does not belong to another forge's reporter.
var publicForgeHosts = map[string]string{
	"github.com":        "github",
	"gitlab.com":        "gitlab",
	"bitbucket.org":     "bitbucket",
	"api.bitbucket.org": "bitbucket",
	"codeberg.org":      "gitea",
}

// otherPublicForge reports whether repo lives on a public forge that is
// not forge (so a GitHub reporter does not post a GitLab project's
// commits to GitHub).
func otherPublicForge(host, forge string) bool {
	host = strings.ToLower(host)
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	f, ok := publicForgeHosts[host]
	return ok && f != forge
}

// propString is a build property as text ("" when unset): numbers as
// integers where they are.
func propString(props map[string]any, name string) string {
	switch v := props[name].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		if v == float64(int64(v)) {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

// stampsWithRevision are the report's source stamps that name a commit:
// a status is about a commit.
func stampsWithRevision(r *Report) []store.SourceStamp {
	var out []store.SourceStamp
	for _, ss := range r.Buildset.SourceStamps {
		if ss.Revision != "" {
			out = append(out, ss)
		}
	}
	return out
}
