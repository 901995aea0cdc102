package reporter

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/google/go-cmp/cmp"
)

// mailReporter parses one [[reporters]] table of type mail, as a master's
// config would hold it, with the relay m and the extra lines given.
func mailReporter(t *testing.T, m *mailpit, extra string) config.Reporter {
	t.Helper()
	toml := fmt.Sprintf("[[reporters]]\ntype = \"mail\"\nname = %q\nfrom_addr = \"Example CI <ci@example.org>\"\nrelay_host = %q\nsmtp_port = %d\n%s",
		strings.ReplaceAll(t.Name(), "/", "-"), m.host, m.port, extra)
	cfg, err := config.Parse("master.toml", []byte(toml))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", toml, err)
	}
	return cfg.Reporters[0]
}

// secretRender renders %(secret:smtp)s as the master would.
func secretRender(password string) func(string) (string, error) {
	return func(s string) (string, error) {
		return strings.ReplaceAll(s, "%(secret:smtp)s", password), nil
	}
}

// nextBuildID keeps the tests' builds, and so their Message-IDs, apart.
var nextBuildID atomic.Int64

// buildReport is a report on build #7 of runtests as the dispatcher
// would fill it from the store.
func buildReport(event string, results int) *Report {
	id := 1000 + nextBuildID.Add(1)
	b := store.Build{ID: id, Number: 7, BuilderID: 3, StartedAt: time.Unix(1700000000, 0), Results: -1}
	if event == Finished {
		b.Complete, b.CompleteAt, b.Results = true, time.Unix(1700000100, 0), results
		b.StateString = map[int]string{store.Success: "build successful", store.Failure: "failed test", store.Warnings: "warnings test", store.Exception: "exception interrupted", store.Cancelled: "cancelled"}[results]
	}
	r := &Report{
		Event:   event,
		Build:   b,
		Builder: store.Builder{ID: 3, Name: "runtests"},
		Worker:  "w1",
		URL:     fmt.Sprintf("http://127.0.0.1:8010/#/builders/3/builds/7?b=%d", id),
		Buildset: store.Buildset{Reason: "The SingleBranchScheduler scheduler named 'all' triggered this build",
			SourceStamps: []store.SourceStamp{{Branch: "main", Revision: "abc123", Project: "widget", Repository: "https://git.example.org/widget.git"}}},
		Changes: []store.Change{{ID: 1, Author: "Alice Smith <alice@example.com>", Comments: "fix"}, {ID: 2, Author: "bob", Comments: "more"}},
		Steps: []store.Step{
			{Number: 0, Name: "git", Complete: true, Results: store.Success},
			{Number: 1, Name: "test", Complete: true, Results: results, URLs: []store.StepURL{{Name: "coverage", URL: "http://127.0.0.1:8010/cov"}}},
		},
		Props:     map[string]any{"got_revision": "abc123def", "branch": "main", "buildername": "runtests"},
		Blamelist: []string{"Alice Smith <alice@example.com>", "bob"},
		Render:    secretRender(mailPassword),
	}
	if event == Started {
		r.Steps = nil
	}
	return r
}

func addrs(as []mpAddress) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Address)
	}
	return out
}

// messageIDOf is the Message-ID s gives the mail of r.
func messageIDOf(t *testing.T, s Sender, r *Report) string {
	t.Helper()
	m, err := s.(*mailSender).compose(r)
	if err != nil {
		t.Fatal(err)
	}
	return m.id
}

// TestMailBuilds sends, through a relay that requires STARTTLS and AUTH,
// the reports the dispatcher passes a mail reporter, and reads them back.
func TestMailBuilds(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	tests := []struct {
		name     string
		event    string
		results  int
		mode     string
		previous *int
		subject  string
		first    string // the body's first line
	}{
		{"failure", Finished, store.Failure, `"failing"`, nil,
			"☠ Buildbot (Example CI): runtests - failed test (main)",
			"A failed build has been detected on builder runtests while building widget."},
		{"new failure", Finished, store.Failure, `"problem"`, ptr(store.Success),
			"☠ Buildbot (Example CI): runtests - failed test (main)",
			"A new failure has been detected on builder runtests while building widget."},
		{"success", Finished, store.Success, `"passing"`, nil,
			"☺ Buildbot (Example CI): runtests - build successful (main)",
			"A passing build has been detected on builder runtests while building widget."},
		{"restored", Finished, store.Success, `"change"`, ptr(store.Failure),
			"☺ Buildbot (Example CI): runtests - build successful (main)",
			"A restored build has been detected on builder runtests while building widget."},
		{"warnings", Finished, store.Warnings, `"warnings"`, nil,
			"☝ Buildbot (Example CI): runtests - warnings test (main)",
			"A problem in the build has been detected on builder runtests while building widget."},
		{"exception", Finished, store.Exception, `"exception"`, nil,
			"☝ Buildbot (Example CI): runtests - exception interrupted (main)",
			"A build exception has been detected on builder runtests while building widget."},
		{"cancelled", Finished, store.Cancelled, `"cancelled"`, nil,
			"☝ Buildbot (Example CI): runtests - cancelled (main)",
			"A cancelled build has been detected on builder runtests while building widget."},
		{"started", Started, 0, `"all"`, nil,
			"☝ Buildbot (Example CI): runtests - started (main)",
			"Build #7 has started on builder runtests while building widget."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := mailReporter(t, srv.StartTLS, fmt.Sprintf(
				"use_tls = true\nsmtp_user = %q\nsmtp_password = \"%%(secret:smtp)s\"\nlookup = \"example.com\"\nextra_recipients = [\"team@example.org\"]\nmode = %s\nreport_start = true\n",
				mailUser, tt.mode))
			s, err := newSender(cfg, srv.deps())
			if err != nil {
				t.Fatal(err)
			}
			r := buildReport(tt.event, tt.results)
			if tt.previous != nil {
				r.Previous = &store.Build{Number: 6, Complete: true, Results: *tt.previous}
			}
			id := messageIDOf(t, s, r)
			if err := s.Send(context.Background(), r); err != nil {
				t.Fatalf("Send: %v", err)
			}
			m := srv.StartTLS.waitMessages(t, id, 1)[0]
			if m.Subject != tt.subject {
				t.Errorf("subject %q, want %q", m.Subject, tt.subject)
			}
			// The blamelist's authors, bob by the lookup, in To; the
			// extras in Cc, as buildbot.
			if diff := cmp.Diff([]string{"alice@example.com", "bob@example.com"}, addrs(m.To)); diff != "" {
				t.Errorf("To (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"team@example.org"}, addrs(m.Cc)); diff != "" {
				t.Errorf("Cc (-want +got):\n%s", diff)
			}
			if len(m.Bcc) != 0 {
				t.Errorf("Bcc %v: the envelope's recipients are not the headers'", m.Bcc)
			}
			if m.From.Address != "ci@example.org" || m.From.Name != "Example CI" {
				t.Errorf("From %+v", m.From)
			}
			text := strings.ReplaceAll(m.Text, "\r\n", "\n")
			if first, _, _ := strings.Cut(text, "\n"); first != tt.first {
				t.Errorf("first line %q, want %q", first, tt.first)
			}
			for _, want := range []string{
				"Full details are available at:\n    " + r.URL + "\n",
				"Revision: abc123def\n", "Worker: w1\n",
				"Build Reason: The SingleBranchScheduler scheduler named 'all' triggered this build\n",
				"Blamelist: Alice Smith <alice@example.com>, bob\n",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("body lacks %q:\n%s", want, text)
				}
			}
			if tt.event == Finished {
				for _, want := range []string{"- 0: git ( success )", "- 1: test ( " + resultName(tt.results) + " )\n    coverage: http://127.0.0.1:8010/cov"} {
					if !strings.Contains(text, want) {
						t.Errorf("body lacks %q:\n%s", want, text)
					}
				}
			}
			h := func(k string) string { return strings.Join(m.Headers[k], "|") }
			if h("Message-Id")+h("Message-ID") != "<"+id+">" {
				t.Errorf("Message-ID headers %v, want <%s>", m.Headers, id)
			}
			if d, err := time.Parse(time.RFC1123Z, h("Date")); err != nil || time.Since(d) > time.Hour {
				t.Errorf("Date %q: %v", h("Date"), err)
			}
			want := map[string]string{"X-Buildbot-Builder": "runtests", "X-Buildbot-Build": "7", "X-Buildbot-Worker": "w1"}
			if tt.event == Finished {
				want["X-Buildbot-Result"] = resultName(tt.results)
			}
			for k, v := range want {
				if h(k) != v {
					t.Errorf("%s: %q, want %q", k, h(k), v)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestMailTemplates: the subject and body are the config's Go templates,
// over MailData.
func TestMailTemplates(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	cfg := mailReporter(t, srv.StartTLS, fmt.Sprintf(`use_tls = true
smtp_user = %q
smtp_password = "%%(secret:smtp)s"
send_to_interested_users = false
extra_recipients = ["team@example.org"]
subject = "[{{.Result | upper}}] {{.Builder}} #{{.Number}} on {{.Branch}}\nsecond line"
body = """{{.Summary}} {{.URL}}
{{.SourceStamps}}{{range .Changes}}{{.ID}}: {{.Comments}}
{{end}}{{index .Props "buildername"}} previous={{.PreviousResult}}"""
`, mailUser))
	s, err := newSender(cfg, srv.deps())
	if err != nil {
		t.Fatal(err)
	}
	r := buildReport(Finished, store.Failure)
	r.Previous = &store.Build{Complete: true, Results: store.Success}
	id := messageIDOf(t, s, r)
	if err := s.Send(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	m := srv.StartTLS.waitMessages(t, id, 1)[0]
	if want := "[FAILURE] runtests #7 on main second line"; m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	if diff := cmp.Diff([]string{"team@example.org"}, addrs(m.To)); diff != "" {
		t.Errorf("To (-want +got):\n%s", diff)
	}
	want := "BUILD FAILED: failed test " + r.URL + "\nBuild Source Stamp: [branch main] abc123\n1: fix\n2: more\nruntests previous=success\n"
	if got := strings.ReplaceAll(m.Text, "\r\n", "\n"); got != want {
		t.Errorf("body:\n%q\nwant\n%q", got, want)
	}

	// A template that does not parse is refused when the reporter is
	// made, one that fails on a report gives up that mail.
	bad := cfg
	bad.Body = "{{.Nope"
	if _, err := newSender(bad, srv.deps()); err == nil || !strings.Contains(err.Error(), "body") {
		t.Errorf("unparsable body: %v", err)
	}
	bad.Body = "{{.Nope}}"
	s, err = newSender(bad, srv.deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), buildReport(Finished, store.Failure)); !IsPermanent(err) || !strings.Contains(err.Error(), "Nope") {
		t.Errorf("failing body template: %v, want a permanent error naming the field", err)
	}
}

// TestMailSMTPS: use_smtps speaks TLS from the first byte, then AUTH.
func TestMailSMTPS(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	cfg := mailReporter(t, srv.SMTPS, fmt.Sprintf("use_smtps = true\nsmtp_user = %q\nsmtp_password = \"%%(secret:smtp)s\"\nlookup = \"example.com\"\n", mailUser))
	s, err := newSender(cfg, srv.deps())
	if err != nil {
		t.Fatal(err)
	}
	r := buildReport(Finished, store.Failure)
	id := messageIDOf(t, s, r)
	if err := s.Send(context.Background(), r); err != nil {
		t.Fatalf("Send: %v", err)
	}
	m := srv.SMTPS.waitMessages(t, id, 1)[0]
	if diff := cmp.Diff([]string{"alice@example.com", "bob@example.com"}, addrs(m.To)); diff != "" {
		t.Errorf("To (-want +got):\n%s", diff)
	}

	// Without the relay's CA the certificate is refused.
	s, err = newSender(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), buildReport(Finished, store.Failure)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	// verify_ssl = false takes it.
	cfg.VerifySSL = false
	if s, err = newSender(cfg, Deps{}); err != nil {
		t.Fatal(err)
	}
	r = buildReport(Finished, store.Failure)
	id = messageIDOf(t, s, r)
	if err := s.Send(context.Background(), r); err != nil {
		t.Fatalf("Send with verify_ssl = false: %v", err)
	}
	srv.SMTPS.waitMessages(t, id, 1)
}

// TestMailNoClearAuth: with use_tls, a relay that offers no STARTTLS gets
// no AUTH and no mail; without it, the password goes only to a relay on
// this host in clear.
func TestMailNoClearAuth(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	auth := fmt.Sprintf("smtp_user = %q\nsmtp_password = \"%%(secret:smtp)s\"\nextra_recipients = [\"team@example.org\"]\n", mailUser)
	for _, tc := range []struct{ name, extra, want string }{
		{"use_tls", "use_tls = true\n", "offers no STARTTLS and use_tls is set"},
		{"clear to another host", "", "is not encrypted: the password is not sent in clear (set use_tls or use_smtps)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := mailReporter(t, srv.Plain, tc.extra+auth)
			s, err := newSender(cfg, srv.deps())
			if err != nil {
				t.Fatal(err)
			}
			r := buildReport(Finished, store.Failure)
			id := messageIDOf(t, s, r)
			err = s.Send(context.Background(), r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Send: %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), mailPassword) {
				t.Errorf("the error holds the password: %v", err)
			}
			if got := srv.Plain.messages(t, id); len(got) != 0 {
				t.Errorf("%d messages arrived", len(got))
			}
		})
	}
}

// TestMailWrongPassword: a refused AUTH is permanent, and its error does
// not hold the password.
func TestMailWrongPassword(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	cfg := mailReporter(t, srv.StartTLS, fmt.Sprintf("use_tls = true\nsmtp_user = %q\nsmtp_password = \"%%(secret:smtp)s\"\nlookup = \"example.com\"\n", mailUser))
	s, err := newSender(cfg, srv.deps())
	if err != nil {
		t.Fatal(err)
	}
	const wrong = "not-the-Pa55word"
	r := buildReport(Finished, store.Failure)
	r.Render = secretRender(wrong)
	id := messageIDOf(t, s, r)
	err = s.Send(context.Background(), r)
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "535") {
		t.Fatalf("Send with a wrong password: %v, want a permanent 535", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), mailPassword) {
		t.Errorf("the error holds the password: %v", err)
	}
	if got := srv.StartTLS.messages(t, id); len(got) != 0 {
		t.Errorf("%d messages arrived", len(got))
	}
}

// TestMailRecipientsRefused: a recipient refused for now (452) is tried
// again without mailing again those that took the message; one refused
// for good (550) makes the delivery fail permanently after the others
// got it.
func TestMailRecipientsRefused(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	t.Run("452", func(t *testing.T) {
		t.Parallel()
		// The relay takes 2 recipients per message.
		cfg := mailReporter(t, srv.Plain, `extra_recipients = ["c@example.org"]`+"\n")
		s, err := newSender(cfg, srv.deps())
		if err != nil {
			t.Fatal(err)
		}
		r := buildReport(Finished, store.Failure)
		r.Blamelist = []string{"a@example.com", "b@example.com"}
		id := messageIDOf(t, s, r)
		err = s.Send(context.Background(), r)
		if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "c@example.org: 452") {
			t.Fatalf("first try: %v, want a retryable error naming c@example.org", err)
		}
		srv.Plain.waitMessages(t, id, 1)
		// Mailing a and b again would have the relay refuse c again.
		if err := s.Send(context.Background(), r); err != nil {
			t.Fatalf("second try: %v", err)
		}
		ms := srv.Plain.waitMessages(t, id, 2)
		for _, m := range ms {
			if diff := cmp.Diff([]string{"a@example.com", "b@example.com"}, addrs(m.To)); diff != "" {
				t.Errorf("To (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"c@example.org"}, addrs(m.Cc)); diff != "" {
				t.Errorf("Cc (-want +got):\n%s", diff)
			}
		}
	})
	t.Run("550", func(t *testing.T) {
		t.Parallel()
		cfg := mailReporter(t, srv.Plain, `extra_recipients = ["c@example.org"]`+"\n")
		s, err := newSender(cfg, srv.deps())
		if err != nil {
			t.Fatal(err)
		}
		r := buildReport(Finished, store.Failure)
		r.Blamelist = []string{"x@elsewhere.test"}
		id := messageIDOf(t, s, r)
		err = s.Send(context.Background(), r)
		if !IsPermanent(err) || !strings.Contains(err.Error(), "x@elsewhere.test: 550") {
			t.Fatalf("Send: %v, want a permanent error naming x@elsewhere.test", err)
		}
		m := srv.Plain.waitMessages(t, id, 1)[0]
		if diff := cmp.Diff([]string{"c@example.org"}, addrs(m.Cc)); diff != "" {
			t.Errorf("Cc (-want +got):\n%s", diff)
		}
		// Nobody takes it: permanent, nothing arrives.
		r = buildReport(Finished, store.Failure)
		r.Blamelist = []string{"x@elsewhere.test"}
		cfg.ExtraRecipients = nil
		s, _ = newSender(cfg, srv.deps())
		id = messageIDOf(t, s, r)
		if err := s.Send(context.Background(), r); !IsPermanent(err) {
			t.Fatalf("Send to a refused recipient only: %v, want permanent", err)
		}
		if got := srv.Plain.messages(t, id); len(got) != 0 {
			t.Errorf("%d messages arrived", len(got))
		}
	})
}

// TestMailRelayDown: a relay that refuses the connection is retried.
func TestMailRelayDown(t *testing.T) {
	t.Parallel()
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mailReporter(t, &mailpit{host: "127.0.0.1", port: port}, "extra_recipients = [\"team@example.org\"]\n")
	s, err := newSender(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), buildReport(Finished, store.Failure))
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Send to a closed port: %v, want a retryable connection refused", err)
	}
}

// TestMailMissingWorker: buildbot's missing-worker mail goes to the
// worker's admins only.
func TestMailMissingWorker(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	cfg := mailReporter(t, srv.StartTLS, fmt.Sprintf("use_tls = true\nsmtp_user = %q\nsmtp_password = \"%%(secret:smtp)s\"\nextra_recipients = [\"team@example.org\"]\n", mailUser))
	s, err := newSender(cfg, srv.deps())
	if err != nil {
		t.Fatal(err)
	}
	last := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(nextBuildID.Add(1)) * time.Second)
	r := &Report{Event: WorkerMissing, Render: secretRender(mailPassword), Missing: &MissingWorker{
		Name: "w-arm", Admins: []string{"Ops <ops@example.com>", "root@example.org"}, LastSeen: last,
		Timeout: time.Hour, Info: map[string]string{"admin": "Jo <jo@example.com>"}, URL: "http://127.0.0.1:8010/#/workers/4",
	}}
	id := messageIDOf(t, s, r)
	if err := s.Send(context.Background(), r); err != nil {
		t.Fatalf("Send: %v", err)
	}
	m := srv.StartTLS.waitMessages(t, id, 1)[0]
	if want := "Buildbot Example CI worker w-arm missing"; m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	if diff := cmp.Diff([]string{"ops@example.com", "root@example.org"}, addrs(m.To)); diff != "" {
		t.Errorf("To (-want +got):\n%s", diff)
	}
	if len(m.Cc) != 0 {
		t.Errorf("Cc %v: extra_recipients are not mailed about workers, as buildbot", m.Cc)
	}
	text := strings.ReplaceAll(m.Text, "\r\n", "\n")
	for _, want := range []string{
		"The Buildbot worker named w-arm went away.\n",
		"It last disconnected at " + last.Format(time.RFC1123) + ".\n",
		"The admin on record (as reported by WORKER:info/admin) was Jo <jo@example.com>.\n",
		"http://127.0.0.1:8010/#/workers/4",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("body lacks %q:\n%s", want, text)
		}
	}
	if got := strings.Join(m.Headers["X-Buildbot-Worker"], ""); got != "w-arm" {
		t.Errorf("X-Buildbot-Worker %q", got)
	}

	// notify_on_missing_workers = false: no mail.
	cfg.Missing = false
	s, _ = newSender(cfg, srv.deps())
	r.Missing.LastSeen = r.Missing.LastSeen.Add(time.Minute)
	id = messageIDOf(t, s, r)
	if err := s.Send(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if got := srv.StartTLS.messages(t, id); len(got) != 0 {
		t.Errorf("%d messages with notify_on_missing_workers = false", len(got))
	}
}

// TestMailInterested: the blamelist's authors as buildbot's
// findInterrestedUsersEmails finds them.
func TestMailInterested(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	tests := []struct {
		name    string
		lookup  string
		authors []string
		want    []string
		logged  string
	}{
		{"addresses", "", []string{"Alice Smith <alice@example.com>", "bob@example.com"}, []string{`"Alice Smith" <alice@example.com>`, "<bob@example.com>"}, ""},
		{"lookup", "example.net", []string{"carol", "Dan <dan@example.com>"}, []string{"<carol@example.net>", `"Dan" <dan@example.com>`}, ""},
		{"no lookup", "", []string{"carol", "dan@example.com"}, []string{"<dan@example.com>"}, "author=carol"},
		{"two @", "", []string{"User <user@foo.com>@foo.com"}, []string{`"User" <user@foo.com>`}, ""},
	}
	for _, tt := range tests {
		logs.Reset()
		s := &mailSender{cfg: config.Reporter{Lookup: tt.lookup}, log: slog.New(slog.NewTextHandler(&logs, nil))}
		var got []string
		for _, a := range s.interested(&Report{Blamelist: tt.authors}) {
			got = append(got, a.String())
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
		if tt.logged != "" && !strings.Contains(logs.String(), tt.logged) {
			t.Errorf("%s: log %q lacks %q", tt.name, logs.String(), tt.logged)
		}
	}
	// No blamelist: the changes' authors.
	s := &mailSender{cfg: config.Reporter{}, log: slog.New(slog.DiscardHandler)}
	var got []string
	for _, a := range s.interested(&Report{Changes: []store.Change{{Author: "e@example.com"}, {Author: "e@example.com"}, {Author: "f@example.com"}}}) {
		got = append(got, a.Address)
	}
	if !slices.Equal(got, []string{"e@example.com", "f@example.com"}) {
		t.Errorf("from changes: %v", got)
	}
}

// TestMailNoClearAuthLocal: net/smtp would send a password in clear to a
// relay on this host; with use_tls it is not sent at all. The relay is a
// recorder that speaks SMTP and offers AUTH without STARTTLS, as a
// man in the middle stripping STARTTLS would.
func TestMailNoClearAuthLocal(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var heard strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		tp := textproto.NewConn(c)
		tp.PrintfLine("220 recorder ESMTP")
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			heard.WriteString(line + "\n")
			switch cmd := strings.ToUpper(strings.Fields(line + " x")[0]); cmd {
			case "EHLO":
				tp.PrintfLine("250-recorder\r\n250 AUTH PLAIN LOGIN")
			case "AUTH":
				tp.PrintfLine("235 2.7.0 Authentication successful")
			case "QUIT":
				tp.PrintfLine("221 bye")
				return
			default:
				tp.PrintfLine("250 ok")
			}
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	cfg := mailReporter(t, &mailpit{host: "127.0.0.1", port: port}, fmt.Sprintf("use_tls = true\nsmtp_user = %q\nsmtp_password = \"%%(secret:smtp)s\"\nextra_recipients = [\"team@example.org\"]\n", mailUser))
	s, err := newSender(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), buildReport(Finished, store.Failure))
	if err == nil || !strings.Contains(err.Error(), "offers no STARTTLS") {
		t.Errorf("Send: %v, want a refusal for want of STARTTLS", err)
	}
	l.Close()
	<-done
	if strings.Contains(heard.String(), "AUTH") || strings.Contains(heard.String(), "MAIL") {
		t.Errorf("the client went on without TLS:\n%s", heard.String())
	}
}

// TestMailRelaySilent: a relay that takes the connection and says nothing
// holds a delivery no longer than its context; the error is retried.
func TestMailRelaySilent(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done, accepted, quit := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		close(accepted)
		<-quit // says nothing until the test ends
		c.Close()
	}()
	defer func() { close(quit); l.Close(); <-done }()
	cfg := mailReporter(t, &mailpit{host: "127.0.0.1", port: l.Addr().(*net.TCPAddr).Port}, "extra_recipients = [\"team@example.org\"]\n")
	s, err := newSender(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	// The dispatcher's per-try timeout, or its stopping.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Send(ctx, buildReport(Finished, store.Failure)) }()
	<-accepted
	select {
	case err := <-errc:
		if err == nil || IsPermanent(err) {
			t.Errorf("Send to a silent relay: %v, want a retryable error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Send to a silent relay did not return a minute after its context ended")
	}
}

// TestMailTemplateMissingProperty: a template naming a property the
// sample build of checkconfig lacks ({{.Props.myprop}}, {{$.Props.x}},
// {{index .Props "y"}}) is no config error; a build that lacks it gets
// its mail, the property empty, as in buildbot's templates; one that has
// it shows it.
func TestMailTemplateMissingProperty(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	cfg := mailReporter(t, srv.StartTLS, fmt.Sprintf(`use_tls = true
smtp_user = %q
smtp_password = "%%(secret:smtp)s"
send_to_interested_users = false
extra_recipients = ["team@example.org"]
subject = "{{.Builder}} [{{.Props.myprop}}]"
body = """a=[{{.Props.myprop}}] b=[{{range .Steps}}{{$.Props.other}}{{end}}] c=[{{index .Props "third"}}] d=[{{with .Props.myprop}}set{{else}}unset{{end}}]"""
`, mailUser))
	if err := Check(&config.Config{File: "master.toml", Reporters: []config.Reporter{cfg}}); err != nil {
		t.Fatalf("Check = %v, want no error", err)
	}
	s, err := newSender(cfg, srv.deps())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		props         map[string]any
		subject, body string
	}{
		{nil, "runtests []", "a=[] b=[] c=[] d=[unset]"},
		{map[string]any{"myprop": "v1", "other": "o", "third": 3}, "runtests [v1]", "a=[v1] b=[oo] c=[3] d=[set]"},
	} {
		r := buildReport(Finished, store.Failure)
		maps.Copy(r.Props, tc.props)
		id := messageIDOf(t, s, r)
		if err := s.Send(context.Background(), r); err != nil {
			t.Fatalf("props %v: %v", tc.props, err)
		}
		m := srv.StartTLS.waitMessages(t, id, 1)[0]
		if got := strings.TrimSpace(strings.ReplaceAll(m.Text, "\r\n", "\n")); m.Subject != tc.subject || got != tc.body {
			t.Errorf("props %v: subject %q body %q, want %q and %q", tc.props, m.Subject, got, tc.subject, tc.body)
		}
		if _, ok := r.Props["myprop"]; ok != (tc.props != nil) {
			t.Errorf("props %v: the report's properties were changed: %v", tc.props, r.Props)
		}
	}
}
