package hooks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/internal/logsample"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Sink stores changes that arrive from outside and hands them to the
// schedulers.
type Sink interface {
	// AddChanges stores changes, in order, and returns them as stored, with
	// their ids.
	AddChanges(ctx context.Context, changes []store.Change) ([]store.Change, error)
	// AddChangesAndState does what AddChanges does and sets the state key
	// of objectName to value in the same transaction: all or none.
	AddChangesAndState(ctx context.Context, changes []store.Change, objectName, key string, value json.RawMessage) ([]store.Change, error)
	// GetState returns the state key of objectName, and whether it is set.
	GetState(objectName, key string) (json.RawMessage, bool, error)
}

// Config enables one dialect of POST /change_hook/DIALECT.
type Config struct {
	// Secret checks each request; empty means requests are not checked.
	// github: the X-Hub-Signature-256 (or X-Hub-Signature, SHA-1) HMAC of
	// the body; gitea: the X-Gitea-Signature HMAC-SHA256 of the body, in
	// hex; gitlab: equal to the X-Gitlab-Token header; base: sent as
	// "Authorization: Bearer SECRET".
	Secret string
	// Codebase is set on the changes that come with none; a request's
	// codebase query parameter overrides it. Empty means codebase "".
	Codebase string
}

// Limits of one request to a change hook.
const (
	// MaxBody bounds a change hook's request body; a larger one gets 413.
	// GitHub sends push payloads of up to 25 MB (2048 commits); the rest
	// of the web server keeps 1 MiB. Each request holds at most this much
	// (read into one buffer of its Content-Length), and all of them
	// together MaxBodies.
	MaxBody = 25 << 20
	// MaxBodies bounds what the bodies over smallBody hold together, the
	// forges' large pushes: a request whose share does not fit within
	// bodyBudgetWait gets 503 with Retry-After. With the JSON decoded from
	// them, they take some three times this of the master's memory.
	MaxBodies = 4 * MaxBody
	// smallBody is the size up to which a body takes no share of
	// MaxBodies: the most any other POST may send the web server, whose
	// connection caps bound them.
	smallBody = 1 << 20
	// bodyBudgetWait is how long a large body waits for its share of
	// MaxBodies (forges wait 10s or more for an answer).
	bodyBudgetWait = 5 * time.Second
	// MaxChanges bounds the changes one request may make, in every
	// dialect: GitHub's own cap on the commits of a push. A request that
	// would make more (a base hook's JSON list) gets 413 and makes none.
	MaxChanges = 2048
)

// changeSource is the properties' source of the changes hooks make, as
// buildbot's.
const changeSource = "Change"

// hookError is a request a hook refuses, with its HTTP status.
type hookError struct {
	status int
	msg    string
}

func (e *hookError) Error() string { return e.msg }

func badHook(format string, args ...any) error {
	return &hookError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &hookError{status: http.StatusForbidden, msg: fmt.Sprintf(format, args...)}
}

// hookRequest is what a dialect reads.
type hookRequest struct {
	header http.Header
	query  url.Values // the URL's
	body   []byte
	secret string
}

// A dialect turns a request into changes. A request it does not act on
// returns a note saying why, and no changes.
type dialect func(req hookRequest) (changes []store.Change, note string, err error)

// signedHooks are the dialects whose secret signs the body (an HMAC), so
// that a body they accepted can be recognized when it is replayed (see
// deliveries.go).
var signedHooks = map[string]bool{"github": true, "gitea": true}

var dialects = map[string]dialect{
	"base":   baseHook,
	"github": githubHook,
	"gitlab": gitlabHook,
	"gitea":  giteaHook,
}

// Handler serves the change hooks. It is safe for concurrent use.
type Handler struct {
	sink  Sink
	hooks map[string]Config
	log   *slog.Logger
	// refusals samples the lines of the requests refused, which anyone
	// who can reach the port can cause at will.
	refusals *logsample.Sampler
	// deliveries are the deliveries received, of every dialect
	// (deliveries.go).
	deliveries deliveryLog
	// budget bounds the bytes the large bodies being read or handled hold
	// together (budgetSize, MaxBodies); a request waits budgetWait for
	// its share.
	budget     *semaphore.Weighted
	budgetSize int64
	budgetWait time.Duration
}

// New returns the handler of the dialects hooks enables, which stores the
// changes they make through sink. With a nil sink no dialect is enabled.
// A nil log discards.
func New(sink Sink, hooks map[string]Config, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{
		sink: sink, hooks: hooks, log: log, refusals: logsample.New(10*time.Second, 10),
		budget: semaphore.NewWeighted(MaxBodies), budgetSize: MaxBodies, budgetWait: bodyBudgetWait,
	}
}

// Serve serves POST /change_hook/DIALECT for the dialect name: it checks
// the request with the dialect's secret, turns it into changes and stores
// them through the sink. It answers 200 with {"changeids": [...]} (and
// "ignored" with a reason when the request made no change), 403 for a bad
// secret, 400 for a malformed request, 404 for a dialect not enabled and
// 413 for a body over MaxBody or more than MaxChanges changes, 503 with
// Retry-After when large bodies already hold MaxBodies. A codebase
// query parameter sets the changes' codebase, as buildbot's. A delivery
// received before (see deliveries.go) is answered 200 with no change and
// "ignored" saying so. Every refusal is logged, sampled.
func (s *Handler) Serve(w http.ResponseWriter, r *http.Request, name string) {
	hc, enabled := s.hooks[name]
	fn, known := dialects[name]
	log := s.log.With("dialect", name, "remote", r.RemoteAddr)
	if !enabled || !known || s.sink == nil {
		s.refuse(w, log, &hookError{http.StatusNotFound, fmt.Sprintf("change hook dialect %q is not enabled", name)})
		return
	}
	body, release, err := s.readBody(w, r)
	if err != nil {
		if he, ok := errors.AsType[*hookError](err); ok && he.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "10")
		}
		s.refuse(w, log, err)
		return
	}
	defer release()
	changes, note, err := fn(hookRequest{header: r.Header, query: r.URL.Query(), body: body, secret: hc.Secret})
	if err == nil && len(changes) > MaxChanges {
		err = &hookError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the request makes %d changes, more than the %d one request may make", len(changes), MaxChanges)}
	}
	if err == nil {
		err = checkGitArgs(changes)
	}
	if err != nil {
		s.refuse(w, log, err)
		return
	}
	if cb := cmp.Or(r.URL.Query().Get("codebase"), hc.Codebase); cb != "" {
		for i := range changes {
			if changes[i].Codebase == "" {
				changes[i].Codebase = cb
			}
		}
	}
	id, err := deliveryID(name, r.Header)
	if err != nil {
		s.refuse(w, log, err)
		return
	}
	var sum string
	if signedHooks[name] && hc.Secret != "" {
		sum = bodySum(body)
	}
	ids := []int64{}
	if len(changes) > 0 {
		var stored []store.Change
		if id == "" && sum == "" {
			stored, err = s.sink.AddChanges(r.Context(), changes)
		} else {
			dl := &s.deliveries
			dl.mu.Lock()
			defer dl.mu.Unlock()
			if err := dl.load(s.sink); err != nil {
				log.Error("change hook", "err", err)
				jsonreply.Error(w, http.StatusInternalServerError, "internal error")
				return
			}
			now := time.Now()
			if d, ok := dl.seen(name, id, sum, now); ok {
				at := d.At.UTC().Format(time.RFC3339)
				note := fmt.Sprintf("delivery %s was received at %s: no new change", d.ID, at)
				switch {
				case d.Dialect != name:
					note = fmt.Sprintf("the same signed body was received at %s by the %s hook (delivery %q): no new change", at, d.Dialect, d.ID)
				case id == "" || !strings.EqualFold(d.ID, id):
					note = fmt.Sprintf("the same signed body was received at %s (delivery %q): no new change", at, d.ID)
				}
				log.Info("change hook delivery replayed", "delivery", id, "first", d.At, "first_delivery", d.ID, "first_dialect", d.Dialect)
				jsonreply.Write(w, http.StatusOK, map[string]any{"changeids": ids, "ignored": note})
				return
			}
			list := dl.with(delivery{Dialect: name, ID: id, Sum: sum}, now)
			value, _ := json.Marshal(list)
			stored, err = s.sink.AddChangesAndState(r.Context(), changes, deliveryObject, deliveryStateKey, value)
			if err == nil {
				dl.list = list
			}
		}
		if errors.Is(err, store.ErrInvalidChange) {
			// A change no store takes (a NUL byte in its source, a time
			// out of range): the sender's to fix, nothing is stored.
			s.refuse(w, log, err)
			return
		}
		if err != nil {
			log.Error("store changes", "err", err)
			jsonreply.Error(w, http.StatusInternalServerError, "internal error")
			return
		}
		for _, c := range stored {
			ids = append(ids, c.ID)
		}
		log.Info("changes received", "changes", ids, "delivery", id)
	}
	reply := map[string]any{"changeids": ids}
	if note != "" {
		reply["ignored"] = note
		log.Info("change hook request ignored", "reason", note)
	}
	jsonreply.Write(w, http.StatusOK, reply)
}

// readBody reads the request's body, at most MaxBody bytes, into one
// buffer of the size its Content-Length declares. A body declared or
// found larger is a 413, refused before it is read when declared. A body
// over smallBody first takes its size (MaxBody when undeclared) from the
// handler's budget, waiting at most budgetWait for it (503 after); the
// caller calls release once done with the body and what it made of it.
func (s *Handler) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	release = func() {}
	tooLarge := &hookError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBody)}
	if r.ContentLength > MaxBody {
		return nil, release, tooLarge
	}
	rd := http.MaxBytesReader(w, r.Body, MaxBody)
	var buf bytes.Buffer
	if r.ContentLength > smallBody {
		if release, err = s.reserve(r, r.ContentLength); err != nil {
			return nil, func() {}, err
		}
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // ReadFrom's last read, of EOF, needs MinRead free
	}
	readErr := func(err error) ([]byte, func(), error) {
		release()
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, func() {}, tooLarge
		}
		return nil, func() {}, badHook("read body: %v", err)
	}
	if r.ContentLength < 0 {
		// Undeclared (chunked): the first smallBody bytes without the
		// budget, the rest with MaxBody of it.
		if _, err := buf.ReadFrom(io.LimitReader(rd, smallBody+1)); err != nil {
			return readErr(err)
		}
		if buf.Len() <= smallBody {
			return buf.Bytes(), release, nil
		}
		if release, err = s.reserve(r, MaxBody); err != nil {
			return nil, func() {}, err
		}
	}
	if _, err := buf.ReadFrom(rd); err != nil {
		return readErr(err)
	}
	return buf.Bytes(), release, nil
}

// reserve takes n bytes of the budget of bodies, waiting at most
// budgetWait, and returns the function that gives them back.
func (s *Handler) reserve(r *http.Request, n int64) (func(), error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.budgetWait)
	defer cancel()
	if err := s.budget.Acquire(ctx, n); err != nil {
		return nil, &hookError{http.StatusServiceUnavailable, fmt.Sprintf("too many large change hook requests at once (%d bytes in all): try again later", s.budgetSize)}
	}
	var once sync.Once
	return func() { once.Do(func() { s.budget.Release(n) }) }, nil
}

// refuse answers a request the hooks refuse, with err's status (400 when
// it is no hookError) and reason, and logs it, sampled: a bad secret at
// warning level, the rest at info.
func (s *Handler) refuse(w http.ResponseWriter, log *slog.Logger, err error) {
	he, ok := errors.AsType[*hookError](err)
	if !ok {
		he = &hookError{status: http.StatusBadRequest, msg: err.Error()}
	}
	level := slog.LevelInfo
	if he.status == http.StatusForbidden {
		level = slog.LevelWarn
	}
	s.refusals.Log(log, level, "change hook request refused", "status", he.status, "reason", he.msg)
	jsonreply.Error(w, he.status, he.msg)
}

// checkHMAC checks that sig, after prefix, is the hex HMAC of body with
// secret.
func checkHMAC(newHash func() hash.Hash, secret string, body []byte, sig, prefix, header string) error {
	got, ok := strings.CutPrefix(sig, prefix)
	if !ok {
		return forbidden("%s does not start with %q", header, prefix)
	}
	gotMAC, err := hex.DecodeString(got)
	if err != nil {
		return forbidden("%s is not hex", header)
	}
	m := hmac.New(newHash, []byte(secret))
	m.Write(body)
	if !hmac.Equal(gotMAC, m.Sum(nil)) {
		return forbidden("%s does not match the body", header)
	}
	return nil
}

// checkToken compares a token with the secret in constant time.
func checkToken(secret, got, header string) error {
	if got == "" {
		return forbidden("missing %s", header)
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(got)) != 1 {
		return forbidden("wrong %s", header)
	}
	return nil
}

// mediaType is the request's Content-Type without parameters, or "".
func mediaType(h http.Header) string {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// decodePayload decodes a forge's JSON payload into v, which must be a
// pointer to a struct, naming the problem for a 400.
func decodePayload(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return badHook("malformed JSON payload: %v", err)
	}
	return nil
}

// prop is a change property with value v.
func prop(v any) store.Property {
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte("null")
	}
	return store.Property{Value: data, Source: changeSource}
}

// whenLayouts are the forms of a timestamp parseWhen reads, tried in
// order: RFC 3339 (what the forges send), with a space for the T, a zone
// without a colon, a zone after a space, no zone (UTC), and RFC 1123. Go
// reads fractional seconds after the seconds in any of them.
var whenLayouts = []string{
	time.RFC3339,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z0700",
	"2006-01-02T15:04:05 Z07:00",
	"2006-01-02T15:04:05 Z0700",
	"2006-01-02 15:04:05 Z07:00",
	"2006-01-02 15:04:05 Z0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	time.RFC1123Z,
	"Mon, 2 Jan 2006 15:04:05 -0700",
}

// parseWhen reads a forge's timestamp; empty means now. As buildbot's
// hooks (dateutil's parser), it takes the common forms of whenLayouts, a
// zone named UTC, GMT or Z after a space ("2012-01-03 23:36:29 UTC"), and
// no zone as UTC, and keeps whole seconds. A timestamp it cannot read refuses the request (400),
// as buildbot's hooks do: a forge that sends one is misconfigured, and a
// change with a wrong time would build out of order.
func parseWhen(s, field string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	v := strings.TrimSpace(s)
	for _, zone := range []string{" UTC", " GMT", " Z"} {
		if rest, ok := strings.CutSuffix(v, zone); ok {
			v = strings.TrimSpace(rest)
			break
		}
	}
	for _, layout := range whenLayouts {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t.Truncate(time.Second), nil // whole seconds, as buildbot stores
		}
	}
	return time.Time{}, badHook("%s: bad timestamp %q (want RFC 3339, such as 2006-01-02T15:04:05Z)", field, s)
}

// The parts of a push payload that GitHub, GitLab and Gitea share.
type (
	gitPerson struct {
		Name     string `json:"name"`
		Email    string `json:"email"`
		Username string `json:"username"`
	}
	gitCommit struct {
		ID        string     `json:"id"`
		Message   string     `json:"message"`
		Timestamp string     `json:"timestamp"`
		URL       string     `json:"url"`
		Distinct  *bool      `json:"distinct"`
		Author    *gitPerson `json:"author"`
		Committer *gitPerson `json:"committer"`
		Added     []string   `json:"added"`
		Modified  []string   `json:"modified"`
		Removed   []string   `json:"removed"`
	}
)

// String is "Name <email>", as buildbot's authors.
func (p *gitPerson) String() string {
	switch {
	case p == nil:
		return ""
	case p.Email == "":
		return p.Name
	}
	return p.Name + " <" + p.Email + ">"
}

var refRE = regexp.MustCompile(`^refs/(heads|tags)/(.+)$`)

// zeroSHA is the revision a forge sends as "after" when a ref is deleted.
var zeroSHA = regexp.MustCompile(`^0+$`)

// push is a push event, read from one forge's payload.
type push struct {
	ref, after string
	deleted    bool
	commits    []gitCommit
	// tip stands for the commits of a tag push that lists none (a tag on
	// an existing commit); nil means none. Gitea's only: buildbot's
	// gitlab hook makes no change of such a push, and its github hook
	// builds the head commit of any push that creates its ref (github).
	tip *gitCommit

	repository, project string
	// category of the changes of a branch push and of a tag push.
	branchCategory, tagCategory string
	props                       store.Properties // every change's

	// github is buildbot's github hook: every commit makes a change,
	// distinct (new to the repository) or not, with the github_distinct
	// property saying which; a push that creates its ref makes one change,
	// of its head commit; and a head commit whose message asks to skip CI
	// makes none. Elsewhere a commit that is not distinct makes no change.
	github  bool
	created bool
	head    *gitCommit
}

// skipCI are buildbot's github hook's default skip patterns: a push whose
// head commit's message matches one makes no change.
var skipCI = regexp.MustCompile(`\[ *skip *ci *\]|\[ *ci *skip *\]`)

// changes returns one change per commit of p, oldest first.
func (p push) changes() ([]store.Change, string, error) {
	if p.ref == "" {
		return nil, "", badHook("missing ref")
	}
	m := refRE.FindStringSubmatch(p.ref)
	if m == nil {
		return nil, fmt.Sprintf("ref %s is not a branch or tag", p.ref), nil
	}
	branch, category, what := m[2], p.branchCategory, "branch"
	if m[1] == "tags" {
		category, what = p.tagCategory, "tag"
	}
	if p.deleted || zeroSHA.MatchString(p.after) {
		return nil, fmt.Sprintf("%s %s deleted", what, branch), nil
	}
	commits := p.commits
	switch {
	case p.github && p.head != nil && skipCI.MatchString(p.head.Message):
		return nil, fmt.Sprintf("the head commit of the push to %s asks to skip CI", p.ref), nil
	case p.github && p.created && p.head != nil:
		commits = []gitCommit{*p.head}
	case len(commits) == 0 && m[1] == "tags" && p.tip != nil:
		commits = []gitCommit{*p.tip}
	}
	var out []store.Change
	for i, c := range commits {
		distinct := c.Distinct == nil || *c.Distinct
		if !distinct && !p.github {
			continue
		}
		if c.ID == "" {
			return nil, "", badHook("commits[%d]: missing id", i)
		}
		// As buildbot's hooks, which fail on a commit without an author
		// (500): a change needs one, as in the base hook.
		if c.Author == nil {
			return nil, "", badHook("commits[%d]: missing author", i)
		}
		when, err := parseWhen(c.Timestamp, fmt.Sprintf("commits[%d].timestamp", i))
		if err != nil {
			return nil, "", err
		}
		files := slices.Concat(c.Added, c.Modified, c.Removed)
		ch := store.Change{
			Author:     c.Author.String(),
			Committer:  c.Committer.String(),
			Comments:   c.Message,
			Branch:     branch,
			Revision:   c.ID,
			Repository: p.repository,
			Project:    p.project,
			Category:   category,
			RevLink:    c.URL,
			When:       when,
			Files:      files,
			Properties: store.Properties{},
		}
		for k, v := range p.props {
			ch.Properties[k] = v
		}
		if p.github {
			ch.Properties["github_distinct"] = prop(distinct)
		}
		out = append(out, ch)
	}
	if len(out) == 0 {
		if len(commits) == 0 {
			return nil, fmt.Sprintf("push to %s lists no commits", p.ref), nil
		}
		return nil, fmt.Sprintf("push to %s has no new commits", p.ref), nil
	}
	return out, "", nil
}

// baseChange is one change of the base dialect in JSON. Files and
// properties are a JSON list and object; in a form they are the same as
// JSON text.
type baseChange struct {
	Author     string         `json:"author"`
	Who        string         `json:"who"` // buildbot's older name of author
	Committer  string         `json:"committer"`
	Comments   string         `json:"comments"`
	Branch     string         `json:"branch"`
	Revision   string         `json:"revision"`
	Repository string         `json:"repository"`
	Project    string         `json:"project"`
	Codebase   string         `json:"codebase"`
	Category   string         `json:"category"`
	RevLink    string         `json:"revlink"`
	When       whenText       `json:"when_timestamp"` // unix seconds; 0 or missing means now
	Files      []string       `json:"files"`
	Properties map[string]any `json:"properties"`
	// whenField is the field When came from, for errors: "when_timestamp",
	// or buildbot's older "when" in a form.
	whenField string
}

// whenText is when_timestamp as given: a JSON number's text, or a JSON
// string's content (checked by parseUnixWhen, whose error names the
// field); null is missing.
type whenText string

func (w *whenText) UnmarshalJSON(data []byte) error {
	switch {
	case string(data) == "null":
		*w = ""
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*w = whenText(s)
	case len(data) > 0 && (data[0] == '-' || data[0] >= '0' && data[0] <= '9'):
		*w = whenText(data)
	default:
		return fmt.Errorf("when_timestamp must be unix seconds, not %s", data)
	}
	return nil
}

// baseHook is buildbot's base dialect: the fields of one change, as a form
// (and the URL's query) or as JSON (one object, or a list of them). With a secret, the request
// must carry "Authorization: Bearer SECRET".
func baseHook(req hookRequest) ([]store.Change, string, error) {
	if req.secret != "" {
		token, ok := strings.CutPrefix(req.header.Get("Authorization"), "Bearer ")
		if !ok {
			token = ""
		}
		if err := checkToken(req.secret, token, "bearer token in Authorization"); err != nil {
			return nil, "", err
		}
	}
	var in []baseChange
	switch mt := mediaType(req.header); mt {
	case "application/json":
		data := strings.TrimSpace(string(req.body))
		if strings.HasPrefix(data, "[") {
			if err := decodeStrict(data, &in); err != nil {
				return nil, "", err
			}
		} else {
			var c baseChange
			if err := decodeStrict(data, &c); err != nil {
				return nil, "", err
			}
			in = append(in, c)
		}
	case "application/x-www-form-urlencoded", "":
		form, err := url.ParseQuery(string(req.body))
		if err != nil {
			return nil, "", badHook("malformed form: %v", err)
		}
		// As buildbot's (twisted's request.args): the URL's fields,
		// updated with the form's, so that a field in both has the form's
		// values; the first of a field's values counts.
		vals := url.Values{}
		for _, v := range []url.Values{req.query, form} {
			for k, vs := range v {
				vals[k] = vs
			}
		}
		c, err := baseFromForm(vals)
		if err != nil {
			return nil, "", err
		}
		in = append(in, c)
	default:
		return nil, "", badHook("unsupported Content-Type %q (use application/json or a form)", mt)
	}
	out := make([]store.Change, 0, len(in))
	for i, c := range in {
		ch, err := c.change()
		if err != nil {
			if len(in) > 1 {
				return nil, "", badHook("change %d: %v", i+1, err) // as checkGitArgs: from 1
			}
			return nil, "", err
		}
		out = append(out, ch)
	}
	if len(out) == 0 {
		return nil, "no changes in the request", nil
	}
	return out, "", nil
}

// decodeStrict decodes JSON refusing unknown fields, so that a misspelt
// field is a 400 rather than lost.
func decodeStrict(data string, v any) error {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return badHook("malformed JSON: %v", err)
	}
	if dec.More() {
		return badHook("malformed JSON: data after the value")
	}
	return nil
}

// baseFields are the form fields of the base dialect.
var baseFields = []string{
	"author", "who", "committer", "comments", "branch", "revision", "repository", "project",
	"codebase", "category", "revlink", "when_timestamp", "when", "files", "properties",
}

func baseFromForm(v url.Values) (baseChange, error) {
	for k := range v {
		if !slices.Contains(baseFields, k) {
			return baseChange{}, badHook("unknown field %q", k)
		}
	}
	c := baseChange{
		Author: v.Get("author"), Who: v.Get("who"), Committer: v.Get("committer"),
		Comments: v.Get("comments"), Branch: v.Get("branch"), Revision: v.Get("revision"),
		Repository: v.Get("repository"), Project: v.Get("project"), Codebase: v.Get("codebase"),
		Category: v.Get("category"), RevLink: v.Get("revlink"),
		When: whenText(cmp.Or(v.Get("when_timestamp"), v.Get("when"))),
	}
	if v.Get("when_timestamp") == "" && v.Get("when") != "" {
		c.whenField = "when"
	}
	if f := v.Get("files"); f != "" {
		if err := json.Unmarshal([]byte(f), &c.Files); err != nil {
			return c, badHook("files must be a JSON list of strings: %v", err)
		}
	}
	if p := v.Get("properties"); p != "" {
		d := json.NewDecoder(strings.NewReader(p))
		d.UseNumber()
		if err := d.Decode(&c.Properties); err != nil {
			return c, badHook("properties must be a JSON object: %v", err)
		}
	}
	return c, nil
}

func (c baseChange) change() (store.Change, error) {
	ch := store.Change{
		Author: cmp.Or(c.Author, c.Who), Committer: c.Committer, Comments: c.Comments,
		Branch: c.Branch, Revision: c.Revision, Repository: c.Repository, Project: c.Project,
		Codebase: c.Codebase, Category: c.Category, RevLink: c.RevLink, Files: c.Files,
	}
	if ch.Author == "" {
		return ch, badHook("missing author")
	}
	if c.When != "" {
		when, err := parseUnixWhen(cmp.Or(c.whenField, "when_timestamp"), string(c.When))
		if err != nil {
			return ch, err
		}
		ch.When = when
	}
	if len(c.Properties) > 0 {
		ch.Properties = store.Properties{}
		for k, v := range c.Properties {
			ch.Properties[k] = prop(v)
		}
	}
	return ch, nil
}

// maxWhen is the latest when_timestamp, the last second of the year 9999:
// the store keeps no later time (JSON's times end there).
var maxWhen = time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC).Unix()

// decimalFloat is the decimal numbers Python's float() takes (an
// underscore may stand between two digits, "1_000"): strconv.ParseFloat
// takes hexadecimal ones too ("0x1p4"), which buildbot's float() refuses.
var decimalFloat = regexp.MustCompile(`^[+-]?([0-9](_?[0-9])*\.?([0-9](_?[0-9])*)?|\.[0-9](_?[0-9])*)([eE][+-]?[0-9](_?[0-9])*)?$`)

// parseUnixWhen reads the base dialect's when_timestamp (field is the name
// the request used), Unix seconds (a fraction is dropped); 0 means now, which is the zero time. As buildbot's
// float() it refuses (400) what is not a decimal number; it refuses too what
// buildbot's float() takes and its store then cannot: NaN, infinities, a
// time before 1970, and one after the year 9999 (a number too large for a
// float64 included). Each error names the field and the value.
func parseUnixWhen(field, s string) (time.Time, error) {
	f, err := strconv.ParseFloat(s, 64)
	overflow := errors.Is(err, strconv.ErrRange) // ±Inf, or ±0 for a tiny number
	switch {
	case !decimalFloat.MatchString(s), err != nil && !overflow, math.IsNaN(f), math.IsInf(f, 0) && !overflow, f < 0:
		return time.Time{}, badHook("%s must be unix seconds, not %q", field, s)
	case f > float64(maxWhen):
		return time.Time{}, badHook("%s %q is after the year 9999", field, s)
	case f == 0:
		return time.Time{}, nil
	}
	return time.Unix(int64(f), 0).UTC(), nil
}

// checkGitArgs refuses (400) a change whose branch, revision or repository
// git could read as an option, or that holds a control character: a build
// of it would give it to git on a worker (see protocol.CheckGitArg).
func checkGitArgs(changes []store.Change) error {
	for i, c := range changes {
		for _, f := range []struct{ name, v string }{{"branch", c.Branch}, {"revision", c.Revision}, {"repository", c.Repository}} {
			if err := protocol.CheckGitArg(f.v); err != nil {
				at := ""
				if len(changes) > 1 {
					at = fmt.Sprintf("change %d: ", i+1)
				}
				return badHook("%s%s %v", at, f.name, err)
			}
		}
	}
	return nil
}
