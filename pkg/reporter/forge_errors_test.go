package reporter

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// The forge's answer decides what the dispatcher does: 2xx delivered, 422
// given up with the forge's message, 429 retried after Retry-After, 502
// retried with backoff, and the token never shows in the error.
func TestForgeErrorClassification(t *testing.T) {
	t.Parallel()
	token := testSecrets["github_token"]
	ss := store.SourceStamp{Repository: "https://github.com/octo/hello", Revision: testSHA}
	for _, tc := range []struct {
		name      string
		answer    func(w http.ResponseWriter, r *http.Request)
		permanent bool
		after     time.Duration // a *RetryAfterError's, when > 0
		says      string        // what the error must say
	}{
		{
			name: "422 validation failed",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusUnprocessableEntity)
				io.WriteString(w, `{"message":"Validation Failed","errors":[{"message":"No commit found for SHA"}],"documentation_url":"https://docs.github.com/rest"}`)
			},
			permanent: true,
			says:      "422 Unprocessable Entity Validation Failed; No commit found for SHA",
		},
		{
			name: "404 echoing the credentials",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, `{"message":"Not Found for %s"}`, r.Header.Get("Authorization"))
			},
			permanent: true,
			says:      "Not Found for token <redacted>",
		},
		{
			name: "429 with Retry-After",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "30")
				w.WriteHeader(http.StatusTooManyRequests)
				io.WriteString(w, `{"message":"slow down"}`)
			},
			after: 30 * time.Second,
			says:  "429 Too Many Requests slow down",
		},
		{
			name: "GitHub's rate limit: 403 with no requests left",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(2*time.Hour).Unix(), 10))
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"message":"API rate limit exceeded"}`)
			},
			after: time.Hour, // at least
			says:  "API rate limit exceeded",
		},
		{
			name: "502 bad gateway",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, "<html>nginx</html>")
			},
			says: "502 Bad Gateway <html>nginx</html>",
		},
		{
			name: "408 request timeout",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusRequestTimeout)
			},
			says: "408 Request Timeout",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := newForgeServer(t, "github.json", "")
			fs.setAnswer(tc.answer)
			s := newForgeSender(t, config.Reporter{Type: "github_status", Token: "%(secret:github_token)s", BaseURL: fs.URL})
			err := s.Send(t.Context(), testReport(Finished, store.Success, nil, ss))
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("the error shows the token: %v", err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if got := IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v (%v)", got, tc.permanent, err)
			}
			var ra *RetryAfterError
			switch {
			case tc.after > 0 && !errors.As(err, &ra):
				t.Errorf("not a *RetryAfterError: %v", err)
			case tc.after > 0 && ra.After < tc.after:
				t.Errorf("retry after %s, want at least %s", ra.After, tc.after)
			case tc.after == 0 && errors.As(err, &ra):
				t.Errorf("a *RetryAfterError without a Retry-After: %v", err)
			}
		})
	}
}

// A forge that refuses connections is retried, and the error names no
// secret.
func TestForgeUnreachableIsRetried(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	for _, typ := range []string{"github_status", "gitlab_status", "gitea_status", "bitbucket_server_status", "bitbucket_cloud_status"} {
		cfg := config.Reporter{Type: typ, Token: "%(secret:forge_token)s", BaseURL: "http://" + addr}
		if typ == "bitbucket_cloud_status" {
			cfg.Token, cfg.ClientID, cfg.ClientSecret = "", "consumer", "%(secret:forge_token)s"
		}
		s := newForgeSender(t, cfg)
		err := s.Send(t.Context(), testReport(Started, 0, nil, store.SourceStamp{Repository: "https://git.example.com/team/app.git", Revision: testSHA}))
		if err == nil || IsPermanent(err) {
			t.Errorf("%s: got %v, want a retryable error", typ, err)
		}
		if err != nil && strings.Contains(err.Error(), testSecrets["forge_token"]) {
			t.Errorf("%s: the error shows the token: %v", typ, err)
		}
	}
}

// A Bitbucket Cloud access token the API refuses is dropped and the try
// retried, so the next try gets a new one.
func TestForgeBitbucketCloudRefusedTokenIsRenewed(t *testing.T) {
	t.Parallel()
	fs := newForgeServer(t, "bitbucket_cloud.json", "/2.0")
	var issued atomic.Int32
	fs.extra["/site/oauth2/access_token"] = func(w http.ResponseWriter, r *http.Request) {
		issued.Add(1)
		fmt.Fprintf(w, `{"access_token":"tok-%d","expires_in":7200}`, issued.Load())
	}
	fs.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"type":"error","error":{"message":"Access token expired."}}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	s := newForgeSender(t, config.Reporter{Type: "bitbucket_cloud_status", ClientID: "consumer", ClientSecret: "%(secret:bb_client)s", BaseURL: fs.URL + "/2.0"})
	r := testReport(Finished, store.Success, nil, store.SourceStamp{Repository: "https://bitbucket.org/team/app", Revision: testSHA})
	err := s.Send(t.Context(), r)
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "Access token expired.") {
		t.Fatalf("first try: got %v, want a retryable error with Bitbucket's message", err)
	}
	if err := s.Send(t.Context(), r); err != nil {
		t.Fatalf("second try: %v", err)
	}
	if issued.Load() != 2 {
		t.Errorf("%d tokens issued, want 2", issued.Load())
	}
}

// Basic credentials echoed by a forge (the header or its base64 alone)
// never reach the error.
func TestForgeBasicCredentialsNotInErrors(t *testing.T) {
	t.Parallel()
	srv := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"errors":[{"message":"bad credentials %s (%s)"}]}`, auth, strings.TrimPrefix(auth, "Basic "))
	})
	s := newForgeSender(t, config.Reporter{Type: "bitbucket_server_status", User: "ci", Password: "%(secret:bb_password)s", BaseURL: srv})
	err := s.Send(t.Context(), testReport(Finished, store.Success, nil, store.SourceStamp{Revision: testSHA}))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "bad credentials") {
		t.Fatalf("got %v, want a permanent error with Bitbucket's message", err)
	}
	b64 := strings.TrimPrefix(basicAuth("ci", testSecrets["bb_password"]), "Basic ")
	if strings.Contains(err.Error(), b64) || strings.Contains(err.Error(), testSecrets["bb_password"]) {
		t.Errorf("the error shows the credentials: %v", err)
	}
}

// GitLab's 409 (another update of the status in progress, in its API
// description) is retried; its 400 is not.
func TestForgeGitLabConflictIsRetried(t *testing.T) {
	t.Parallel()
	fs := newForgeServer(t, "gitlab.json", "")
	s := newForgeSender(t, config.Reporter{Type: "gitlab_status", Token: "%(secret:forge_token)s", BaseURL: fs.URL})
	r := testReport(Finished, store.Success, nil, store.SourceStamp{Repository: "https://gitlab.com/g/p.git", Revision: testSHA})
	for code, permanent := range map[int]bool{http.StatusConflict: false, http.StatusBadRequest: true} {
		fs.setAnswer(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			io.WriteString(w, `{"message":"Another update to this commit status is in progress"}`)
		})
		err := s.Send(t.Context(), r)
		if err == nil || IsPermanent(err) != permanent {
			t.Errorf("%d: got %v, want permanent=%v", code, err, permanent)
		}
	}
}
