package reporter

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
)

// TestCheckFindsReportersThatCannotRun: a mail template that does not
// parse, or names a field no report has, is a config error naming the
// file, the reporter's line and the key; good reporters pass.
func TestCheckFindsReportersThatCannotRun(t *testing.T) {
	t.Parallel()
	src := `
[[reporters]]
type = "mail"
from_addr = "ci@example.org"
subject = "{{.Builder}} {{.Result}"

[[reporters]]
type = "mail"
from_addr = "ci@example.org"
body = "hello {{.NoSuchField}}"

[[reporters]]
type = "mail"
from_addr = "ci@example.org"
subject = "[{{.Result}}] {{.Builder}}"

[[reporters]]
type = "github_status"
token = "t0ken"
`
	cfg, err := config.Parse("master.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	err = Check(cfg)
	var got []string
	for _, e := range config.Errors(err) {
		got = append(got, e.Error())
	}
	want := []string{"master.toml:2: reporters[0].subject: template: subject:1:", "master.toml:7: reporters[1].body: template: body:1:"}
	if len(got) != len(want) {
		t.Fatalf("Check = %q, want %d errors starting %q", got, len(want), want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d = %q, want it to start %q", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[1], "NoSuchField") {
		t.Errorf("the unknown field is not named: %q", got[1])
	}
}

// TestMailAuthWithoutTLSIsPermanent: smtp_user without use_tls to a relay
// that is not this host is the config's fault: the delivery is given up at
// once, not retried for retry_for, and the password is never sent; and
// checkconfig warns about it.
func TestMailAuthWithoutTLSIsPermanent(t *testing.T) {
	t.Parallel()
	var auths atomic.Int32
	host, port := echoSMTPOn(t, "127.0.0.2", &auths)
	cfg, err := config.Parse("master.toml", []byte(`
[[reporters]]
type = "mail"
from_addr = "ci@example.org"
extra_recipients = ["dev@example.org"]
relay_host = "`+host+`"
smtp_port = `+itoa(int64(port))+`
smtp_user = "ci"
smtp_password = "pw-123456"
`))
	if err != nil {
		t.Fatal(err)
	}
	if ws := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(ws, "master.toml:2: reporters[0].smtp_user: set without use_tls or use_smtps") {
		t.Errorf("warnings = %q, want one about smtp_user without TLS", ws)
	}
	s, err := newSender(cfg.Reporters[0], Deps{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), buildReport(Finished, 2))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "use_tls") {
		t.Errorf("Send = %v, want a permanent error that says use_tls", err)
	}
	if n := auths.Load(); n != 0 {
		t.Errorf("%d AUTH commands reached the relay", n)
	}
}

// TestMailLogNamesReporterOnce: the mail sender's log lines carry the
// reporter once (the dispatcher's logger already names it).
func TestMailLogNamesReporterOnce(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil)).With("reporter", "mail")
	s, err := newSender(config.Reporter{Type: "mail", Name: "mail", FromAddr: "ci@example.org", Missing: true}, Deps{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), buildReport(Finished, 0)); err != nil {
		t.Fatal(err)
	}
	line := logs.String()
	if !strings.Contains(line, "no recipients") || strings.Count(line, "reporter=") != 1 {
		t.Errorf("log %q, want one line naming the reporter once", line)
	}
}
