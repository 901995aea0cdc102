package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Events a report is about.
const (
	Started       = "started"        // a build started
	Finished      = "finished"       // a build finished (Build.Results is valid)
	WorkerMissing = "worker_missing" // a worker stayed away past its missing_timeout
)

// Report is what a reporter delivers about one event. The outbox in the
// store holds only what names the event; the dispatcher fills a Report
// from the store when it delivers, so a retry sends what a first try
// would have.
type Report struct {
	Event string // Started, Finished or WorkerMissing

	// For Started and Finished.
	Build     store.Build
	Builder   store.Builder
	Worker    string         // the build's worker's name
	URL       string         // the build's page, absolute (from buildbot_url)
	Buildset  store.Buildset // its reason and source stamps
	Changes   []store.Change // the changes built, oldest first (the blamelist's source)
	Steps     []store.Step   // the build's steps (when Finished)
	Previous  *store.Build   // the builder's previous complete build, nil when none (modes change, problem)
	Props     map[string]any // the build's properties, decoded
	Blamelist []string       // the changes' authors, as buildbot's blamelist

	// For WorkerMissing.
	Missing *MissingWorker

	// Render renders a %(prop:…)s / %(secret:…)s string of the reporter's
	// config for this report (secrets included: never log its result).
	Render func(string) (string, error)
	// RenderURL is Render for a URL: the values of properties and source
	// stamps are percent-encoded (secrets are not). nil means Render.
	RenderURL func(string) (string, error)
}

// renderURL renders the URL template u of a reporter's config for r.
func renderURL(r *Report, u string) (string, error) {
	if r.RenderURL != nil {
		return r.RenderURL(u)
	}
	return render(r, u)
}

// checkURLTemplate refuses a url whose host could come from a build: a
// %(prop:…)s or %(src:…)s (anyone's who can force a build or push) may
// be in the path or the query only, after scheme://host/ or after a
// secret's value followed by "/". Secrets are the config's.
func checkURLTemplate(name, u string) error {
	// The host is the config's: after scheme://, not empty (http:/x/p and
	// http:///x/p have none, whatever a property puts after).
	if !strings.HasPrefix(u, "%(secret:") {
		scheme, rest, ok := strings.Cut(u, "://")
		if !ok || scheme == "" || strings.ContainsAny(scheme, "/%") || rest == "" || strings.ContainsAny(rest[:1], "/?#") {
			return fmt.Errorf("reporter %s: url: want scheme://host/…, with the host written in the config (or given by a secret)", name)
		}
	}
	i := 0
	for {
		j := strings.Index(u[i:], "%(")
		if j < 0 {
			return nil
		}
		i += j
		if !strings.HasPrefix(u[i:], "%(secret:") {
			break
		}
		i += 2
	}
	prefix := strings.Replace(u[:i], "://", "", 1)
	if !strings.Contains(prefix, "/") {
		return fmt.Errorf("reporter %s: url: the host must be written in the config (or come from a secret), not from a build: put %%(prop:…)s and %%(src:…)s after scheme://host/", name)
	}
	return nil
}

// MissingWorker is the worker a WorkerMissing report is about.
type MissingWorker struct {
	Name     string
	Admins   []string // its notify_on_missing
	LastSeen time.Time
	Timeout  time.Duration // its missing_timeout
	Info     map[string]string
	URL      string // its page, absolute
}

// Sender is one reporter's delivery of a report: one kind per file.
type Sender interface {
	// Send delivers r once. An error is retried with backoff, unless it
	// is Permanent; a *RetryAfterError says when to try again.
	Send(ctx context.Context, r *Report) error
}

// Deps is what a kind's constructor gets besides its config.
type Deps struct {
	HTTP *http.Client // for the HTTP kinds; honours the reporter's verify_ssl
	Log  *slog.Logger
	// Title is the master's title (config title), for the messages
	// that name it (mail's subject); "" when none is set.
	Title string
}

// newFunc makes the Sender of one reporter.
type newFunc func(config.Reporter, Deps) (Sender, error)

// newSender makes the Sender of r from the kinds' tables.
func newSender(r config.Reporter, d Deps) (Sender, error) {
	for _, kinds := range []map[string]newFunc{forgeKinds, mailKinds, otherKinds} {
		if f, ok := kinds[r.Type]; ok {
			return f(r, d)
		}
	}
	return nil, fmt.Errorf("reporter %s: type %q has no sender", r.Name, r.Type)
}

// permanentError is an error that retrying will not cure.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying will not cure (a 4xx other
// than 408 and 429, a refused recipient): the delivery is given up at once.
func Permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfterError asks for the next try not before After (a 429 or 503
// with Retry-After).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// render renders the config string s for r; s is returned as is when it
// holds no interpolation or r has no renderer.
func render(r *Report, s string) (string, error) {
	if r.Render == nil || !strings.Contains(s, "%(") {
		return s, nil
	}
	return r.Render(s)
}
