package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ReporterTypes are the types [[reporters]] accepts, as buildbot's
// reporters in snake_case.
var ReporterTypes = []string{
	"github_status",           // GitHubStatusPush
	"github_comment",          // GitHubCommentPush
	"gitlab_status",           // GitLabStatusPush
	"gitea_status",            // buildbot_gitea's GiteaStatusPush
	"bitbucket_server_status", // BitbucketServerStatusPush
	"bitbucket_cloud_status",  // BitbucketStatusPush
	"mail",                    // MailNotifier
	"http_status_push",        // HttpStatusPush
	"chat_webhook",            // a Slack-compatible incoming webhook
}

// ReporterModes are the values of a reporter's mode, as buildbot's
// generators' mode (reporters/utils.py): a build is reported when one of
// the modes wants it.
var ReporterModes = []string{"all", "failing", "passing", "problem", "change", "warnings", "exception", "cancelled"}

// DefaultReporterModes is buildbot's BuildStatusGenerator default mode.
var DefaultReporterModes = []string{"failing", "passing", "warnings"}

// DefaultRetryFor is how long a failed delivery is retried by default.
const DefaultRetryFor = 24 * time.Hour

// Reporter is one [[reporters]] table. Strings marked rendered may hold
// %(prop:…)s, %(secret:…)s and the other interpolations; they are
// rendered when the report is delivered, so secrets never reach the store.
type Reporter struct {
	Type string // type; required: one of ReporterTypes
	// Name is name: unique among reporters; default the type, then
	// TYPE-2, TYPE-3 … for more of one type. Deliveries are recorded under
	// it, so renaming a reporter forgets its pending deliveries.
	Name string
	Line int // line of the [[reporters]] table

	// Filters: a build is reported when each non-empty list matches it.
	Builders []string // builders: builder names (fnmatch globs)
	Tags     []string // tags: any of the builder's tags
	Branches []string // branches: the build's branch (fnmatch globs)
	// Mode is mode (a string or an array of ReporterModes) for the kinds
	// that report only some results (mail, chat_webhook, github_comment);
	// default DefaultReporterModes. The status kinds report every build.
	Mode []string
	// RetryFor is retry_for: how long a failing delivery is retried with
	// backoff before it is given up (recorded, with its last error).
	RetryFor time.Duration
	// ReportStart is report_start (default true for the status kinds and
	// http_status_push, as buildbot's, false for the others): report when
	// a build starts, not only when it ends.
	ReportStart bool

	// Forges (github_*, gitlab_status, gitea_status, bitbucket_*).
	Token   string // token: rendered; GitHub, GitLab, Gitea, Bitbucket Server (bearer)
	BaseURL string // base_url: the forge's API root; defaults per type
	// Context is context: rendered; the status's context (GitHub,
	// GitLab's name, Gitea, Bitbucket's key/name). Default
	// "buildbot/%(prop:buildername)s", as buildbot's.
	Context string
	// User and Password are user and password: basic auth (Bitbucket
	// Server and Cloud, http_status_push); Password is rendered.
	User, Password string
	// ClientID and ClientSecret are client_id and client_secret: Bitbucket
	// Cloud's OAuth consumer (buildbot's oauth_key, oauth_secret);
	// ClientSecret is rendered.
	ClientID, ClientSecret string
	// VerifySSL is verify_ssl (default true).
	VerifySSL bool

	// Mail.
	FromAddr              string   // from_addr; required for mail
	ExtraRecipients       []string // extra_recipients: addresses
	SendToInterestedUsers bool     // send_to_interested_users (default true): the blamelist's authors
	Lookup                string   // lookup: a domain appended to author names without @
	RelayHost             string   // relay_host (default "localhost")
	SMTPPort              int      // smtp_port (default 25; 465 with use_smtps)
	SMTPUser              string   // smtp_user
	SMTPPassword          string   // smtp_password: rendered (a secret)
	UseTLS                bool     // use_tls: STARTTLS
	UseSMTPS              bool     // use_smtps: TLS from the first byte
	// Subject and Body are subject and body: Go text/templates; empty
	// means the reporter's defaults, which read like buildbot's.
	Subject, Body string
	// Missing is notify_on_missing_workers (default true for mail): also
	// mail the admins of a worker that stays away past its
	// missing_timeout (Worker.NotifyOnMissing), as buildbot's
	// WorkerMissingGenerator.
	Missing bool

	// http_status_push and chat_webhook.
	URL         string            // url: rendered (a webhook URL is often a secret)
	Headers     map[string]string // headers: rendered values
	BearerToken string            // bearer_token: rendered; "Authorization: Bearer …"
	Channel     string            // channel: chat_webhook's optional channel
	Username    string            // username: chat_webhook's optional sender name
}

// IsStatus reports whether r is a forge commit-status kind, which reports
// every build at its start and end.
func (r Reporter) IsStatus() bool {
	return strings.HasSuffix(r.Type, "_status")
}

// reporters reads [[reporters]].
func (d *decoder) reporters(t *table) []Reporter {
	var out []Reporter
	names := map[string]int{}
	count := map[string]int{}
	for _, rt := range t.tables("reporters") {
		r, ok := d.reporter(rt)
		if !ok {
			continue
		}
		if r.Name == "" {
			count[r.Type]++
			r.Name = r.Type
			if n := count[r.Type]; n > 1 {
				r.Name = fmt.Sprintf("%s-%d", r.Type, n)
			}
		}
		if line, dup := names[r.Name]; dup {
			rt.errorf("name", "reporter %q already defined at line %d", r.Name, line)
			continue
		}
		names[r.Name] = r.Line
		out = append(out, r)
	}
	return out
}

func (d *decoder) reporter(t *table) (Reporter, bool) {
	r := Reporter{Line: t.line(), RetryFor: DefaultRetryFor, VerifySSL: true}
	typ, ok := t.oneOf("type", "reporter type", ReporterTypes...)
	if !ok {
		t.ignore(keysOf(t)...)
		return r, false
	}
	r.Type = typ
	r.Name, _ = t.str("name")
	r.Builders, _ = t.strings("builders")
	r.Tags, _ = t.strings("tags")
	r.Branches, _ = t.strings("branches")
	if v, ok := t.duration("retry_for"); ok {
		r.RetryFor = v.Duration
	}
	// As buildbot's status pushes, HttpStatusPush included (its
	// generator's report_new=True).
	r.ReportStart = r.IsStatus() || r.Type == "http_status_push"
	if b, ok := t.boolean("report_start"); ok {
		r.ReportStart = b
	}
	if b, ok := t.boolean("verify_ssl"); ok {
		r.VerifySSL = b
	}
	rendered := func(name string) string {
		s, ok := t.str(name)
		if ok {
			d.checkTemplates(t.path.key(name), s)
		}
		return s
	}
	httpURL := func(name string, required bool) string {
		if required && !t.has(name) {
			t.errorf(name, "required")
			return ""
		}
		s := rendered(name)
		if s == "" {
			return s
		}
		if strings.Contains(s, "%(") {
			return s // checked when rendered
		}
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.errorf(name, "%q is not an http or https URL", s)
		}
		return s
	}
	modes := func() {
		r.Mode = DefaultReporterModes
		v, ok := t.get("mode")
		if !ok {
			return
		}
		var ms []string
		switch v := v.(type) {
		case string:
			ms = []string{v}
		case []any:
			ms, _ = t.strings("mode")
		default:
			t.errorf("mode", "expected a string or an array of strings, got %s", typeName(v))
			return
		}
		for _, m := range ms {
			if !slices.Contains(ReporterModes, m) {
				t.errorf("mode", "unknown mode %q (want some of %s)", m, strings.Join(ReporterModes, ", "))
				return
			}
		}
		r.Mode = ms
	}

	switch r.Type {
	case "github_status", "github_comment", "gitlab_status", "gitea_status", "bitbucket_server_status", "bitbucket_cloud_status":
		r.BaseURL = httpURL("base_url", r.Type == "gitea_status" || r.Type == "bitbucket_server_status")
		r.Context = "buildbot/%(prop:buildername)s"
		if t.has("context") {
			r.Context = rendered("context")
		}
		if r.Type == "github_comment" {
			modes()
		}
		switch r.Type {
		case "bitbucket_server_status":
			r.User, _ = t.str("user")
			r.Password = rendered("password")
			r.Token = rendered("token")
			if r.Token == "" && (r.User == "" || r.Password == "") {
				t.errorf("token", "required (or user and password)")
			}
		case "bitbucket_cloud_status":
			r.User, _ = t.str("user")
			r.Password = rendered("password")
			r.ClientID, _ = t.str("client_id")
			r.ClientSecret = rendered("client_secret")
			if (r.ClientID == "" || r.ClientSecret == "") && (r.User == "" || r.Password == "") {
				t.errorf("client_id", "required with client_secret (or user and password)")
			}
		default:
			if !t.has("token") {
				t.errorf("token", "required")
			}
			r.Token = rendered("token")
		}
	case "mail":
		modes()
		r.FromAddr, _ = t.required("from_addr")
		if r.FromAddr != "" {
			if _, err := mail.ParseAddress(r.FromAddr); err != nil {
				t.errorf("from_addr", "%q is not a mail address: %v", r.FromAddr, err)
			}
		}
		r.ExtraRecipients, _ = t.strings("extra_recipients")
		for i, a := range r.ExtraRecipients {
			if _, err := mail.ParseAddress(a); err != nil {
				k := t.path.key("extra_recipients").index(i)
				d.errorAt(k, k, "%q is not a mail address: %v", a, err)
			}
		}
		r.SendToInterestedUsers = true
		if b, ok := t.boolean("send_to_interested_users"); ok {
			r.SendToInterestedUsers = b
		}
		if !r.SendToInterestedUsers && len(r.ExtraRecipients) == 0 {
			t.errorf("extra_recipients", "required when send_to_interested_users is false: nobody would get the mail")
		}
		r.Lookup, _ = t.str("lookup")
		r.RelayHost = "localhost"
		if s, ok := t.str("relay_host"); ok {
			r.RelayHost = s
		}
		r.UseTLS, _ = t.boolean("use_tls")
		r.UseSMTPS, _ = t.boolean("use_smtps")
		if r.UseTLS && r.UseSMTPS {
			t.errorf("use_smtps", "set either use_tls (STARTTLS) or use_smtps, not both")
		}
		r.SMTPPort = 25
		if r.UseSMTPS {
			r.SMTPPort = 465
		}
		t.port("smtp_port", &r.SMTPPort)
		r.SMTPUser, _ = t.str("smtp_user")
		r.SMTPPassword = rendered("smtp_password")
		if (r.SMTPUser == "") != (r.SMTPPassword == "") {
			t.errorf("smtp_password", "smtp_user and smtp_password go together")
		}
		r.Subject, _ = t.str("subject")
		r.Body, _ = t.str("body")
		r.Missing = true
		if b, ok := t.boolean("notify_on_missing_workers"); ok {
			r.Missing = b
		}
	case "http_status_push":
		r.URL = httpURL("url", true)
		r.User, _ = t.str("user")
		r.Password = rendered("password")
		r.BearerToken = rendered("bearer_token")
		if r.BearerToken != "" && r.User != "" {
			t.errorf("bearer_token", "set either user and password or bearer_token, not both")
		}
		r.Headers = stringMap(d, t, "headers")
	case "chat_webhook":
		modes()
		r.URL = httpURL("url", true)
		r.Channel, _ = t.str("channel")
		r.Username, _ = t.str("username")
	}
	t.done()
	return r, true
}

// stringMap reads the table name of string values, each rendered.
func stringMap(d *decoder, t *table, name string) map[string]string {
	st, ok := t.sub(name)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, k := range keysOf(st) {
		if s, ok := st.str(k); ok {
			d.checkTemplates(st.path.key(k), s)
			out[k] = s
		}
	}
	st.done()
	return out
}

func keysOf(t *table) []string {
	out := make([]string, 0, len(t.m))
	for k := range t.m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// DefaultMissingTimeout is buildbot's default missing_timeout.
const DefaultMissingTimeout = time.Hour

// workerMissing reads a worker's notify_on_missing and missing_timeout.
func (d *decoder) workerMissing(t *table, w *Worker) {
	if v, ok := t.get("notify_on_missing"); ok {
		switch v := v.(type) {
		case string:
			w.NotifyOnMissing = []string{v}
		default:
			w.NotifyOnMissing, _ = t.strings("notify_on_missing")
		}
		for _, a := range w.NotifyOnMissing {
			if _, err := mail.ParseAddress(a); err != nil {
				t.errorf("notify_on_missing", "%q is not a mail address: %v", a, err)
			}
		}
	}
	if v, ok := t.duration("missing_timeout"); ok {
		if v.Duration == 0 {
			t.errorf("missing_timeout", "must be more than zero")
		} else {
			w.MissingTimeout = v.Duration
		}
	}
}

// MissingAfter is how long w may stay away before its admins hear of it:
// its missing_timeout, or DefaultMissingTimeout.
func (w Worker) MissingAfter() time.Duration {
	if w.MissingTimeout > 0 {
		return w.MissingTimeout
	}
	return DefaultMissingTimeout
}
