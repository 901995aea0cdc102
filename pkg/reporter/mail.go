package reporter

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
)

// mailKinds makes the mail reporter (buildbot's MailNotifier).
var mailKinds = map[string]newFunc{"mail": newMail}

// mailTimeout bounds one delivery when the context has no deadline:
// connecting, the SMTP dialogue and the message.
const mailTimeout = 2 * time.Minute

// mailSender mails reports, as buildbot's MailNotifier: the blamelist's
// authors (send_to_interested_users) and extra_recipients about builds,
// a worker's admins (its notify_on_missing) when it stays away.
type mailSender struct {
	cfg     config.Reporter
	log     *slog.Logger
	title   string
	tls     *tls.Config // the base of the STARTTLS and SMTPS configs
	subject *template.Template
	body    *template.Template
	props   []string // the properties the templates name (templateProps)

	mu   sync.Mutex
	done map[string]*mailProgress // guarded by mu: partly delivered messages, by Message-ID
}

// mailProgress is what earlier tries of one message did: the recipients
// that accepted it are not sent it again, those that refused it for good
// are not tried again.
type mailProgress struct {
	first   time.Time
	sent    []string // accepted the message
	refused []string // refused with a 5xx: "addr: reply"
}

func newMail(r config.Reporter, d Deps) (Sender, error) {
	s := &mailSender{cfg: r, log: d.Log, title: d.Title, done: map[string]*mailProgress{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if s.subject, err = mailTemplate("subject", r.Subject, defaultMailSubject); err != nil {
		return nil, fmt.Errorf("reporter %s: subject: %w", r.Name, err)
	}
	if s.body, err = mailTemplate("body", r.Body, defaultMailBody); err != nil {
		return nil, fmt.Errorf("reporter %s: body: %w", r.Name, err)
	}
	s.props = append(templateProps(s.subject), templateProps(s.body)...)
	// The HTTP kinds' TLS settings (verify_ssl, the roots) hold for the
	// relay too.
	s.tls = &tls.Config{InsecureSkipVerify: !r.VerifySSL} //nolint:gosec // verify_ssl = false asks for it
	if d.HTTP != nil {
		if t, ok := d.HTTP.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
			s.tls = t.TLSClientConfig.Clone()
		}
	}
	s.tls.ServerName = r.RelayHost
	s.tls.NextProtos = nil // net/http's h2 and http/1.1 mean nothing to a relay
	return s, nil
}

// mailTemplate parses a mail template: text, or def when text is empty.
func mailTemplate(name, text, def string) (*template.Template, error) {
	if text == "" {
		text = def
	}
	return template.New(name).Funcs(mailFuncs).Option("missingkey=error").Parse(text)
}

// Send mails r once. A 5xx reply is permanent; a refused connection, a
// timeout, a 4xx reply or a relay without STARTTLS under use_tls are
// retried. Recipients that accepted the message on an earlier try are not
// sent it again (the Message-ID is the same on every try).
func (s *mailSender) Send(ctx context.Context, r *Report) error {
	if r.Event == WorkerMissing && !s.cfg.Missing {
		return nil // notify_on_missing_workers = false
	}
	msg, err := s.compose(r)
	if err != nil {
		return Permanent(err)
	}
	if len(msg.rcpts) == 0 {
		s.log.Info("no recipients: mail not sent", "message_id", msg.id)
		return nil
	}
	s.mu.Lock()
	for id, p := range s.done {
		if time.Since(p.first) > s.cfg.RetryFor+time.Hour {
			delete(s.done, id) // its retries have stopped
		}
	}
	p := s.done[msg.id]
	if p == nil {
		p = &mailProgress{first: time.Now()}
	}
	todo := slices.DeleteFunc(slices.Clone(msg.rcpts), func(a string) bool {
		return slices.Contains(p.sent, a) || slices.ContainsFunc(p.refused, func(x string) bool { return strings.HasPrefix(x, a+": ") })
	})
	s.mu.Unlock()

	accepted, refused, temp, err := s.deliver(ctx, r, msg, todo)

	s.mu.Lock()
	defer s.mu.Unlock()
	p.sent = append(p.sent, accepted...)
	p.refused = append(p.refused, refused...)
	if err == nil && len(temp) > 0 {
		err = fmt.Errorf("mail %s: recipients refused for now: %s", msg.id, strings.Join(temp, "; "))
	}
	if err == nil && len(p.refused) > 0 {
		err = Permanent(fmt.Errorf("mail %s: recipients refused: %s", msg.id, strings.Join(p.refused, "; ")))
	}
	if err == nil || IsPermanent(err) {
		delete(s.done, msg.id)
	} else if len(p.sent)+len(p.refused) > 0 {
		s.done[msg.id] = p
	}
	if len(accepted) > 0 {
		s.log.Info("mail sent", "message_id", msg.id, "to", accepted)
	}
	return err
}

// deliver sends msg to rcpts through the relay in one SMTP session. It
// returns the recipients that accepted it, those refused with a 5xx and
// with a 4xx ("addr: reply"), and an error when the message was not
// taken at all.
func (s *mailSender) deliver(ctx context.Context, r *Report, msg *mailMessage, rcpts []string) (accepted, refused, temp []string, err error) {
	if len(rcpts) == 0 {
		return nil, nil, nil, nil
	}
	relay := net.JoinHostPort(s.cfg.RelayHost, strconv.Itoa(s.cfg.SMTPPort))
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, mailTimeout)
		defer cancel()
	}
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", relay)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mail %s: %w", msg.id, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, nil, nil, fmt.Errorf("mail %s: %w", msg.id, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if s.cfg.UseSMTPS {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, nil, nil, fmt.Errorf("mail %s: smtps to %s: %w", msg.id, relay, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.cfg.RelayHost)
	if err != nil {
		return nil, nil, nil, smtpError(msg.id, "greeting", err)
	}
	defer c.Close()
	if host, err := os.Hostname(); err == nil && host != "" {
		if err := c.Hello(host); err != nil {
			return nil, nil, nil, smtpError(msg.id, "EHLO", err)
		}
	}
	if s.cfg.UseTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return nil, nil, nil, fmt.Errorf("mail %s: relay %s offers no STARTTLS and use_tls is set: not sending", msg.id, relay)
		}
		if err := c.StartTLS(s.tls); err != nil {
			return nil, nil, nil, smtpError(msg.id, "STARTTLS", err)
		}
	}
	if s.cfg.SMTPUser != "" {
		password, err := render(r, s.cfg.SMTPPassword)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("mail %s: smtp_password: %w", msg.id, err)
		}
		// PlainAuth sends the password only over TLS, or to a relay on
		// this host; else it is the config that is wrong (use_tls or
		// use_smtps is missing), and trying again will not cure it.
		if _, isTLS := c.TLSConnectionState(); !isTLS && !config.LocalRelay(s.cfg.RelayHost) {
			return nil, nil, nil, Permanent(fmt.Errorf("mail %s: smtp_user is set but the connection to %s is not encrypted: the password is not sent in clear (set use_tls or use_smtps)", msg.id, relay))
		}
		if err := c.Auth(smtp.PlainAuth("", s.cfg.SMTPUser, password, s.cfg.RelayHost)); err != nil {
			return nil, nil, nil, smtpError(msg.id, "AUTH as "+s.cfg.SMTPUser, err)
		}
	}
	if err := c.Mail(msg.from); err != nil {
		return nil, nil, nil, smtpError(msg.id, "MAIL FROM", err)
	}
	for _, a := range rcpts {
		err := c.Rcpt(a)
		var te *textproto.Error
		switch {
		case err == nil:
			accepted = append(accepted, a)
		case errors.As(err, &te) && te.Code >= 500:
			refused = append(refused, a+": "+te.Error())
		case errors.As(err, &te):
			temp = append(temp, a+": "+te.Error())
		default:
			return nil, nil, nil, smtpError(msg.id, "RCPT TO", err)
		}
	}
	if len(accepted) == 0 {
		c.Quit()
		return nil, refused, temp, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, nil, nil, smtpError(msg.id, "DATA", err)
	}
	if _, err := w.Write(msg.data); err != nil {
		return nil, nil, nil, smtpError(msg.id, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return nil, nil, nil, smtpError(msg.id, "DATA", err)
	}
	c.Quit() // the message is taken: a failing QUIT changes nothing
	return accepted, refused, temp, nil
}

// smtpError wraps err from the SMTP step op: a 5xx reply is permanent,
// anything else (4xx, the connection) is retried.
func smtpError(id, op string, err error) error {
	err = fmt.Errorf("mail %s: %s: %w", id, op, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return Permanent(err)
	}
	return err
}

// mailMessage is one composed mail.
type mailMessage struct {
	id    string   // its Message-ID, without the brackets
	from  string   // the envelope sender
	rcpts []string // the envelope recipients, To and Cc
	data  []byte   // headers and body, CRLF line ends
}

// compose makes the mail of r: its recipients, headers and body.
func (s *mailSender) compose(r *Report) (*mailMessage, error) {
	from, err := mail.ParseAddress(s.cfg.FromAddr)
	if err != nil {
		return nil, fmt.Errorf("from_addr %q: %w", s.cfg.FromAddr, err)
	}
	var to, cc []*mail.Address
	var subject, body string
	headers := [][2]string{}
	var key string
	switch r.Event {
	case WorkerMissing:
		m := r.Missing
		if m == nil {
			return nil, errors.New("worker_missing report without its worker")
		}
		key = fmt.Sprintf("worker.%s.%d", m.Name, m.LastSeen.Unix())
		// As buildbot: only the worker's admins, not extra_recipients.
		for _, a := range m.Admins {
			if addr, err := mail.ParseAddress(a); err == nil {
				to = append(to, addr)
			} else {
				s.log.Warn("invalid mail address: not mailed", "worker", m.Name, "address", a, "err", err)
			}
		}
		subject, body = missingMail(s.title, m)
		headers = append(headers, [2]string{"X-Buildbot-Worker", m.Name})
	case Started, Finished:
		key = fmt.Sprintf("build.%d.%s.%s", r.Build.ID, r.Event, s.cfg.Name)
		var interested []*mail.Address
		if s.cfg.SendToInterestedUsers {
			interested = s.interested(r)
		}
		var extra []*mail.Address
		for _, a := range s.cfg.ExtraRecipients {
			if addr, err := mail.ParseAddress(a); err == nil {
				extra = append(extra, addr)
			}
		}
		// As buildbot: with interested users, the extras are in Cc so
		// that they see they are not the ones blamed.
		if len(interested) > 0 {
			to, cc = interested, extra
		} else {
			to = extra
		}
		data := s.mailData(r)
		var sb, bb strings.Builder
		if err := s.subject.Execute(&sb, data); err != nil {
			return nil, fmt.Errorf("subject template: %w", err)
		}
		if err := s.body.Execute(&bb, data); err != nil {
			return nil, fmt.Errorf("body template: %w", err)
		}
		subject, body = sb.String(), bb.String()
		headers = append(headers,
			[2]string{"X-Buildbot-Builder", r.Builder.Name},
			[2]string{"X-Buildbot-Build", strconv.FormatInt(r.Build.Number, 10)},
			[2]string{"X-Buildbot-Worker", r.Worker},
		)
		if r.Event == Finished {
			headers = append(headers, [2]string{"X-Buildbot-Result", resultName(r.Build.Results)})
		}
	default:
		return nil, fmt.Errorf("report event %q: mail has no message for it", r.Event)
	}
	to, cc = uniqueAddrs(to, nil), uniqueAddrs(cc, to)
	m := &mailMessage{id: s.messageID(key, from), from: from.Address}
	for _, a := range append(slices.Clone(to), cc...) {
		m.rcpts = append(m.rcpts, a.Address)
	}
	if len(m.rcpts) == 0 {
		return m, nil
	}
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, headerValue(v)) }
	h("Date", time.Now().Format(time.RFC1123Z))
	h("Message-ID", "<"+m.id+">")
	h("From", from.String())
	h("To", addrList(to))
	if len(cc) > 0 {
		h("Cc", addrList(cc))
	}
	h("Subject", mime.QEncoding.Encode("utf-8", headerValue(subject)))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	for _, kv := range headers {
		if kv[1] != "" {
			h(kv[0], mime.QEncoding.Encode("utf-8", headerValue(kv[1])))
		}
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body = strings.ReplaceAll(body, "\r\n", "\n")
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
	qp.Close()
	m.data = b.Bytes()
	return m, nil
}

// messageID makes the Message-ID of the report named key: the same on
// every try, so that a recipient's client shows a mail sent twice once.
func (s *mailSender) messageID(key string, from *mail.Address) string {
	domain := "gbb.invalid"
	if _, d, ok := strings.Cut(from.Address, "@"); ok && d != "" {
		domain = d
	}
	return "gbb." + idUnsafe.ReplaceAllString(key, "_") + "@" + domain
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9.!#$%&'*+/=?^_{|}~-]`)

// interested returns the addresses of the blamelist's authors (the
// changes' authors when the report has no blamelist), as buildbot's
// findInterrestedUsersEmails: a name without @ gets @lookup, or is
// dropped with a log line when there is no lookup.
func (s *mailSender) interested(r *Report) []*mail.Address {
	users := r.Blamelist
	if len(users) == 0 {
		for _, c := range r.Changes {
			if c.Author != "" && !slices.Contains(users, c.Author) {
				users = append(users, c.Author)
			}
		}
	}
	var out []*mail.Address
	for _, u := range users {
		u = strings.TrimSpace(u)
		if s.cfg.Lookup != "" && !strings.Contains(u, "@") {
			u += "@" + s.cfg.Lookup
		}
		// Git can give 'User <user@foo.com>@foo.com': chop the last @.
		if strings.Count(u, "@") > 1 {
			u = u[:strings.LastIndex(u, "@")]
		}
		a, err := mail.ParseAddress(u)
		if err != nil || !strings.Contains(a.Address, "@") {
			s.log.Warn("invalid mail address in the blamelist: not mailed (set lookup for names without @)", "author", u)
			continue
		}
		out = append(out, a)
	}
	return out
}

// uniqueAddrs returns as without repeats and without the addresses in
// skip, compared case-insensitively.
func uniqueAddrs(as, skip []*mail.Address) []*mail.Address {
	var out []*mail.Address
	seen := func(list []*mail.Address, a *mail.Address) bool {
		return slices.ContainsFunc(list, func(b *mail.Address) bool { return strings.EqualFold(a.Address, b.Address) })
	}
	for _, a := range as {
		if !seen(out, a) && !seen(skip, a) {
			out = append(out, a)
		}
	}
	return out
}

func addrList(as []*mail.Address) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// headerValue keeps a header on its line.
func headerValue(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func resultName(r int) string {
	if r >= 0 && r < len(resultNames) {
		return resultNames[r]
	}
	return "not finished"
}
