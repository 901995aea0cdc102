package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReporters(t *testing.T) {
	t.Parallel()
	src := `
[[workers]]
name = "w1"
password = "p"
notify_on_missing = ["admin@example.org"]
missing_timeout = "10m"

[[reporters]]
type = "github_status"
token = "%(secret:github_token)s"
builders = ["runtests"]

[[reporters]]
type = "github_status"
token = "t2"
base_url = "https://ghe.example.org/api/v3"
context = "ci/%(prop:buildername)s"

[[reporters]]
type = "mail"
from_addr = "gbb@example.org"
extra_recipients = ["team@example.org"]
lookup = "example.org"
relay_host = "smtp.example.org"
smtp_port = 587
smtp_user = "gbb"
smtp_password = "%(secret:smtp)s"
use_tls = true
mode = "problem"

[[reporters]]
type = "http_status_push"
name = "dash"
url = "https://dash.example.org/builds"
bearer_token = "%(secret:dash)s"
headers = { X-Team = "core" }
retry_for = "2h"

[[reporters]]
type = "chat_webhook"
url = "%(secret:slack_url)s"
mode = ["failing", "exception"]
branches = ["main"]
`
	cfg := mustParse(t, filepath.Join(t.TempDir(), "master.toml"), src)
	if got := cfg.Workers[0]; !cmp.Equal(got.NotifyOnMissing, []string{"admin@example.org"}) || got.MissingTimeout != 10*time.Minute {
		t.Errorf("worker missing: %v %v", got.NotifyOnMissing, got.MissingTimeout)
	}
	var names []string
	for _, r := range cfg.Reporters {
		names = append(names, r.Name)
	}
	if want := []string{"github_status", "github_status-2", "mail", "dash", "chat_webhook"}; !cmp.Equal(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	gh, gh2, m, h, c := cfg.Reporters[0], cfg.Reporters[1], cfg.Reporters[2], cfg.Reporters[3], cfg.Reporters[4]
	if gh.Context != "buildbot/%(prop:buildername)s" || !gh.ReportStart || gh.RetryFor != DefaultRetryFor || gh.Token != "%(secret:github_token)s" {
		t.Errorf("github_status: %+v", gh)
	}
	if gh2.BaseURL != "https://ghe.example.org/api/v3" || gh2.Context != "ci/%(prop:buildername)s" {
		t.Errorf("github_status-2: %+v", gh2)
	}
	if m.SMTPPort != 587 || !m.UseTLS || !m.SendToInterestedUsers || !m.Missing || m.ReportStart || !cmp.Equal(m.Mode, []string{"problem"}) {
		t.Errorf("mail: %+v", m)
	}
	if h.RetryFor != 2*time.Hour || h.Headers["X-Team"] != "core" || h.BearerToken != "%(secret:dash)s" || !h.ReportStart {
		t.Errorf("http_status_push: %+v", h)
	}
	if !cmp.Equal(c.Mode, []string{"failing", "exception"}) || !cmp.Equal(c.Branches, []string{"main"}) || c.ReportStart {
		t.Errorf("chat_webhook: %+v", c)
	}
}

func TestReporterErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		want      []string
	}{
		{"unknown type", "[[reporters]]\ntype = \"irc\"\n",
			[]string{`master.toml:2: reporters[0].type: unknown reporter type "irc"`}},
		{"no token", "[[reporters]]\ntype = \"github_status\"\n",
			[]string{"master.toml:1: reporters[0].token: required"}},
		{"unknown key", "[[reporters]]\ntype = \"github_status\"\ntoken = \"x\"\ncontex = \"y\"\n",
			[]string{"master.toml:4: reporters[0].contex: unknown key"}},
		{"bad mode", "[[reporters]]\ntype = \"mail\"\nfrom_addr = \"a@b.c\"\nmode = \"sometimes\"\n",
			[]string{`master.toml:4: reporters[0].mode: unknown mode "sometimes"`}},
		{"bad from", "[[reporters]]\ntype = \"mail\"\nfrom_addr = \"nobody\"\n",
			[]string{`master.toml:3: reporters[0].from_addr: "nobody" is not a mail address`}},
		{"bad url", "[[reporters]]\ntype = \"chat_webhook\"\nurl = \"ftp://x\"\n",
			[]string{`master.toml:3: reporters[0].url: "ftp://x" is not an http or https URL`}},
		{"bad interpolation", "[[reporters]]\ntype = \"gitea_status\"\nbase_url = \"https://g\"\ntoken = \"%(secret:x\"\n",
			[]string{"master.toml:4: reporters[0].token: bad interpolation"}},
		{"duplicate name", "[[reporters]]\ntype = \"chat_webhook\"\nurl = \"http://a\"\nname = \"x\"\n[[reporters]]\ntype = \"chat_webhook\"\nurl = \"http://b\"\nname = \"x\"\n",
			[]string{`master.toml:8: reporters[1].name: reporter "x" already defined at line 1`}},
		{"both tls", "[[reporters]]\ntype = \"mail\"\nfrom_addr = \"a@b.c\"\nuse_tls = true\nuse_smtps = true\n",
			[]string{"master.toml:5: reporters[0].use_smtps: set either use_tls (STARTTLS) or use_smtps, not both"}},
		{"bad admin", "[[workers]]\nname = \"w\"\npassword = \"p\"\nnotify_on_missing = \"root\"\n",
			[]string{`master.toml:4: workers[0].notify_on_missing: "root" is not a mail address`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("master.toml", []byte(tt.src))
			var got []string
			for _, e := range Errors(err) {
				got = append(got, e.Error())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("errors %q, want %q", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("error %q, want it to start with %q", got[i], tt.want[i])
				}
			}
		})
	}
}
