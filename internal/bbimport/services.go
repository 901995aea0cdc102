package bbimport

import (
	"fmt"
	"strings"
)

// reporterTypes maps buildbot's reporter classes to gbb's reporter types.
var reporterTypes = map[string]string{
	"GitHubStatusPush":          "github_status",
	"GitHubCommentPush":         "github_comment",
	"GitLabStatusPush":          "gitlab_status",
	"BitbucketServerStatusPush": "bitbucket_server_status",
	"BitbucketStatusPush":       "bitbucket_cloud_status",
	"MailNotifier":              "mail",
	"HttpStatusPush":            "http_status_push",
}

func service(w *writer, s map[string]any) {
	cls := s["class"].(string)
	typ := reporterTypes[cls]
	w.printf("\n")
	if typ == "" {
		w.skip("", fmt.Sprintf("service %q (%s.%s)", s["name"], s["module"], cls), "gbb has no such reporter or service")
		return
	}
	p := newParams(s["params"])
	// A reporter's token, context, url, password... are rendered; its
	// other keys (names, addresses) hold no %.
	w.render = true
	defer func() { w.render = false }()
	w.printf("[[reporters]]\n")
	w.kv("", "type", typ)
	if name, ok := p.str("name"); ok {
		w.kv("", "name", name)
	}
	switch typ {
	case "mail":
		p.rename(w, "", "fromaddr", "from_addr", "relayhost", "relay_host", "lookup", "lookup",
			"sendToInterestedUsers", "send_to_interested_users", "useTls", "use_tls",
			"useSmtps", "use_smtps", "smtpUser", "smtp_user", "smtpPassword", "smtp_password",
			"smtpPort", "smtp_port")
		if v, ok := p.get("extraRecipients"); ok {
			if l := strs(v); len(l) > 0 {
				w.kv("", "extra_recipients", l)
			}
		}
		p.ignore("watchedWorkers", "messageFormatterMissingWorker", "dumpMailsToLog")
	case "http_status_push":
		p.rename(w, "", "serverUrl", "url", "headers", "headers")
		if v, ok := p.get("auth"); ok {
			if l, ok := v.([]any); ok && len(l) == 2 {
				w.conv("", "auth user", "user", l[0])
				w.conv("", "auth password", "password", l[1])
			} else {
				w.skip("", "auth", describeRaw(v))
			}
		}
		if v, ok := p.get("verify"); ok {
			w.conv("", "verify", "verify_ssl", v)
		}
		p.ignore("debug", "skip_encoding")
	default:
		p.rename(w, "", "token", "token", "context", "context", "baseURL", "base_url",
			"base_url", "base_url", "user", "user", "password", "password",
			"oauth_key", "client_id", "oauth_secret", "client_secret")
		if v, ok := p.get("verify"); ok {
			w.conv("", "verify", "verify_ssl", v)
		}
		p.ignore("verbose", "debug", "auth", "base_path")
	}
	generators(w, p)
	p.rest(w, "", cls+" option")
}

// generators writes the filters of a reporter's report generators: the
// first build status generator's mode, builders, tags and branches.
func generators(w *writer, p *params) {
	v, ok := p.get("generators")
	if !ok {
		return
	}
	gens, _ := v.([]any)
	builds := 0
	for _, g := range gens {
		m, _ := g.(map[string]any)
		cls, _ := m["class"].(string)
		switch cls {
		case "WorkerMissingGenerator":
			w.kv("", "notify_on_missing_workers", true)
			continue
		case "BuildStatusGenerator", "BuildStartEndStatusGenerator":
		default:
			w.skip("", "generator "+cls, "gbb reports build status only")
			continue
		}
		builds++
		if builds > 1 {
			w.skip("", "generator "+cls, "gbb takes one set of filters per reporter: write another [[reporters]]")
			continue
		}
		if mode, ok := m["mode"]; ok && mode != nil {
			if l := strs(mode); len(l) > 0 && cls == "BuildStatusGenerator" {
				w.kv("", "mode", l)
			}
		}
		for _, k := range []string{"builders", "tags", "branches"} {
			if l := strs(m[k]); len(l) > 0 {
				w.kv("", k, l)
			}
		}
		if s, ok := m["schedulers"]; ok && s != nil {
			w.skip("", "generator schedulers", "gbb's reporters filter by builders, tags and branches")
		}
		if fn, ok := m["report_new"]; ok && fn == true {
			w.skip("", "generator report_new", "not in gbb")
		}
		if fmtr, ok := m["formatter"].(map[string]any); ok && fmtr["class"] != "MessageFormatter" {
			w.skip("", "generator formatter", strings.TrimSpace(describe(fmtr))+": gbb's subject and body are Go templates")
		}
	}
}
