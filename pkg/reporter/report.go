package reporter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/interpolate"
	"github.com/gbb-ci/gbb/pkg/store"
)

// errGone is returned by loadReport when the entry's build or worker is
// no longer in the store (the janitor deleted it): nothing to report.
var errGone = errors.New("reporter: the report's build is gone")

// maxPrevious bounds the walk back over RETRY builds for Report.Previous.
const maxPrevious = 1000

// loadReport fills the Report of outbox entry e from the store, as it is
// now: a retry sends what a first try would have.
func (d *Dispatcher) loadReport(e store.OutboxEntry, site site) (*Report, error) {
	st := d.cfg.Store
	r := &Report{Event: e.Event}
	switch e.Event {
	case store.OutboxWorkerMissing:
		w, ok := site.workers[e.Worker]
		if !ok {
			return nil, fmt.Errorf("worker %s: %w", e.Worker, errGone)
		}
		mw := &MissingWorker{Name: w.Name, Admins: w.NotifyOnMissing, LastSeen: e.LastSeen, Timeout: w.MissingAfter()}
		if sw, err := st.WorkerByName(w.Name); err == nil {
			mw.Info = sw.Info
			mw.URL = fmt.Sprintf("%sworkers#worker-%d", site.url, sw.ID)
		}
		r.Missing = mw
		r.Render, r.RenderURL = d.renderer(r, nil, false), d.renderer(r, nil, true)
		return r, nil
	case store.OutboxStarted, store.OutboxFinished:
	default:
		return nil, fmt.Errorf("outbox entry %d: unknown event %q", e.Seq, e.Event)
	}
	b, err := st.Build(e.BuildID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("build %d: %w", e.BuildID, errGone)
	}
	if err != nil {
		return nil, err
	}
	if e.Event == store.OutboxStarted {
		// The report of a start tells of the build as it started, even
		// when it is sent after the build ended.
		b.Complete, b.Results = false, -1
	}
	r.Build = b
	if r.Builder, err = st.Builder(b.BuilderID); err != nil {
		return nil, err
	}
	if w, err := st.Worker(b.WorkerID); err == nil {
		r.Worker = w.Name
	}
	r.URL = fmt.Sprintf("%sbuilders/%d/builds/%d", site.url, b.BuilderID, b.Number)
	if b.BuildRequestID != 0 {
		if br, err := st.BuildRequest(b.BuildRequestID); err == nil {
			if bs, err := st.Buildset(br.BuildsetID); err == nil {
				r.Buildset = bs
			}
		}
	}
	seen := map[string]bool{}
	for _, id := range r.Buildset.ChangeIDs {
		c, err := st.Change(id)
		if err != nil {
			continue
		}
		r.Changes = append(r.Changes, c)
		if c.Author != "" && !seen[c.Author] {
			seen[c.Author] = true
			r.Blamelist = append(r.Blamelist, c.Author)
		}
	}
	if e.Event == store.OutboxFinished {
		if r.Steps, err = st.Steps(b.ID); err != nil {
			return nil, err
		}
	}
	for n := b.Number - 1; n >= 1 && n >= b.Number-maxPrevious; n-- {
		p, err := st.BuildByNumber(b.BuilderID, n)
		if err != nil {
			break
		}
		if p.Results != store.Retry {
			r.Previous = &p
			break
		}
	}
	r.Props = map[string]any{}
	for name, p := range b.Properties {
		// Numbers as the build renders them: 3, not 3.0.
		d := json.NewDecoder(bytes.NewReader(p.Value))
		d.UseNumber()
		var v any
		if d.Decode(&v) == nil {
			r.Props[name] = v
		}
	}
	// A report may be read before the build has recorded these.
	for name, v := range map[string]any{"buildnumber": json.Number(fmt.Sprint(b.Number)), "buildername": r.Builder.Name, "workername": r.Worker} {
		if _, ok := r.Props[name]; !ok && v != "" {
			r.Props[name] = v
		}
	}
	r.Render = d.renderer(r, r.Buildset.SourceStamps, false)
	r.RenderURL = d.renderer(r, r.Buildset.SourceStamps, true)
	return r, nil
}

// renderer renders a reporter's %(prop:)s, %(src:)s and %(secret:)s
// strings for r, and remembers the secrets it gave out, so that the
// dispatcher can keep them out of what it records and logs. With
// escape, for a URL, the values of properties and source stamps are
// percent-encoded (escapeURLValue): they stay inside their path segment
// or query value (secrets are the config's, and are not).
func (d *Dispatcher) renderer(r *Report, stamps []store.SourceStamp, escape bool) func(string) (string, error) {
	return func(s string) (string, error) {
		// With escape, a value that is "." or ".." is put in as a mark
		// (holding a NUL, which no escaped value nor URL holds), to see
		// after where it went: in the path it would climb (a proxy
		// normalizes /a/../b to /b), so it is refused there.
		var dots []string
		var empty bool
		urlValue := func(v string) string {
			if v == "" {
				empty = true
			}
			if v == "." || v == ".." {
				dots = append(dots, v)
				return fmt.Sprintf("\x00dot%d\x00", len(dots)-1)
			}
			return escapeURLValue(v)
		}
		out, secrets, err := interpolate.Render(s, interpolate.Context{
			Property: func(name string) (any, bool) {
				v, ok := r.Props[name]
				if ok && escape {
					return urlValue(propString(r.Props, name)), true
				}
				return v, ok
			},
			Source: func(codebase, attr string) (string, bool) {
				v, ok := sourceAttr(stamps, codebase, attr)
				if ok && escape {
					v = urlValue(v)
				}
				return v, ok
			},
			Secret: d.secret,
		})
		d.redactor.add(secrets...)
		if err != nil || !escape {
			return out, err
		}
		return placeDots(out, dots, empty)
	}
}

// placeDots puts back in the rendered URL u the values "." and ".." that
// urlValue marked, and refuses u when one is in its path, or when a value
// was empty and the path has an empty segment: /hook/../status and
// /hook//status are not the path the config wrote, once a proxy
// normalizes them. In the query they are values as any other.
func placeDots(u string, dots []string, empty bool) (string, error) {
	path := u
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if i := strings.Index(path, "://"); i >= 0 {
		path = path[i+3:]
	}
	for i, v := range dots {
		mark := fmt.Sprintf("\x00dot%d\x00", i)
		if strings.Contains(path, mark) {
			return "", fmt.Errorf("a property or source stamp value %q would be a segment of the url's path: refused", v)
		}
		u = strings.ReplaceAll(u, mark, v)
	}
	if empty && strings.Contains(path, "//") {
		return "", errors.New("a property or source stamp value is empty, which leaves an empty segment in the url's path: refused")
	}
	return u, nil
}

// sourceAttr is attr of the source stamp of codebase.
func sourceAttr(stamps []store.SourceStamp, codebase, attr string) (string, bool) {
	for _, ss := range stamps {
		if ss.Codebase != codebase {
			continue
		}
		switch attr {
		case "branch":
			return ss.Branch, true
		case "revision":
			return ss.Revision, true
		case "repository":
			return ss.Repository, true
		case "project":
			return ss.Project, true
		case "codebase":
			return ss.Codebase, true
		}
	}
	return "", false
}

// escapeURLValue percent-encodes every byte of s but the unreserved
// (RFC 3986: letters, digits, - . _ ~), so that s is one path segment or
// one query value wherever it is put in a URL.
func escapeURLValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func (d *Dispatcher) secret(name string) (string, error) {
	if d.cfg.Secrets == nil {
		return "", fmt.Errorf("secret %q: no secrets provider is configured", name)
	}
	v, err := d.cfg.Secrets(name)
	if err == nil {
		d.redactor.add(v)
	}
	return v, err
}

// redactor holds every secret value rendered so far, to blank them out of
// errors before they are stored or logged.
type redactor struct {
	mu     sync.Mutex
	values []string // guarded by mu
}

func (x *redactor) add(vs ...string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, v := range vs {
		if len(v) >= 4 && !slices.Contains(x.values, v) {
			x.values = append(x.values, v)
		}
	}
}

// secrets are the values added so far.
func (x *redactor) secrets() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.values)
}

// site is what the reports need of the master's config.
type site struct {
	url     string                   // buildbot_url, ending in /
	workers map[string]config.Worker // by name
}
