package reporter

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// buildOf starts a build of builder about the source stamp ss.
func (f *fixture) buildOf(builder string, ss store.SourceStamp) store.Build {
	f.t.Helper()
	b := f.bld[builder]
	_, brids, err := f.db.AddBuildset(store.NewBuildset{Reason: "test", BuilderIDs: []int64{b.ID}, SourceStamps: []store.SourceStamp{ss}})
	if err != nil {
		f.t.Fatal(err)
	}
	data, _ := json.Marshal(builder)
	bld, err := f.db.AddBuild(store.NewBuild{BuilderID: b.ID, BuildRequestID: brids[b.ID], WorkerID: f.wk.ID, MasterID: f.m.ID,
		Properties: store.Properties{"buildername": {Value: data, Source: "test"}}})
	if err != nil {
		f.t.Fatal(err)
	}
	return bld
}

// echoSMTP is an SMTP peer on loopback that refuses every AUTH with a
// 535 reply quoting the AUTH line it got, as some relays do.
func echoSMTP(t *testing.T) (host string, port int) {
	return echoSMTPOn(t, "127.0.0.1", nil)
}

// echoSMTPOn is echoSMTP listening on addr; it counts the AUTH commands it
// gets in auths, when not nil.
func echoSMTPOn(t *testing.T, addr string, auths *atomic.Int32) (host string, port int) {
	return echoSMTPWith(t, addr, auths, func(line string) string { return line })
}

// echoSMTPWith is echoSMTPOn quoting echo(the AUTH line).
func echoSMTPWith(t *testing.T, addr string, auths *atomic.Int32, echo func(string) string) (host string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(c, "220 echo ESMTP\r\n")
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					break
				}
				line = strings.TrimRight(line, "\r\n")
				switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
				case "EHLO", "HELO":
					fmt.Fprintf(c, "250-echo\r\n250 AUTH PLAIN\r\n")
				case "AUTH":
					if auths != nil {
						auths.Add(1)
					}
					fmt.Fprintf(c, "535 5.7.8 authentication failed for %s\r\n", echo(line))
				case "QUIT":
					fmt.Fprintf(c, "221 bye\r\n")
				default:
					fmt.Fprintf(c, "250 ok\r\n")
				}
			}
			c.Close()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// leaks returns the forms of secret (as it is, base64 of user:secret and
// of AUTH PLAIN's \0user\0secret) of which 8 characters in a row are in
// text.
func leaks(text, user, secret string) []string {
	var out []string
	for _, form := range []string{
		secret,
		base64.StdEncoding.EncodeToString([]byte(user + ":" + secret)),
		base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + secret)),
	} {
		for i := 0; i+8 <= len(form); i++ {
			if strings.Contains(text, form[i:i+8]) {
				out = append(out, form)
				break
			}
		}
	}
	return out
}

// Endpoints that echo the credentials they got in their error answers
// (the Authorization header, Bitbucket's OAuth basic header, a relay's
// 535 quoting AUTH PLAIN), whole or cut where a short read would cut
// them: no form of a secret, nor a prefix of one, reaches a delivery's
// last error, the store's file or the log.
func TestSecretEchoesNeverRecorded(t *testing.T) {
	t.Parallel()
	const (
		user     = "ci-robot"
		password = "Pw-Zq9xKk27LmTT"
		client   = "oauth-consumer"
		csecret  = "Cs-Hh81VvQpw3RR"
		smtpPW   = "Sm-Ee64NnUu0oYY"
	)
	// pad makes the echoed credentials straddle where the senders used
	// to cut an answer (200 and 300 bytes) and where they cut a read
	// (4096 bytes).
	pad := func(n int, s string) string { return strings.Repeat("x", n) + s + strings.Repeat("y", 5000) }
	push := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := map[string]int{"/a": 0, "/d200": 170, "/d4096": 4070}[r.URL.Path]
		http.Error(w, pad(n, "you sent "+r.Header.Get("Authorization")), http.StatusBadRequest)
	})
	forge := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		// The OAuth token endpoint: a 401 quoting the client's header,
		// as plain text that straddles 300 bytes.
		http.Error(w, pad(270, "client "+r.Header.Get("Authorization")+" unknown"), http.StatusUnauthorized)
	})
	smtpHost, smtpPort := echoSMTP(t)

	var logs syncBuffer
	f := newFixture(t)
	rs := []config.Reporter{}
	for _, p := range []string{"/a", "/d200", "/d4096"} {
		rc := config.Reporter{Type: "http_status_push", Name: "push" + strings.ReplaceAll(p, "/", "-"), URL: push + p,
			User: user, Password: "%(secret:pw)s", RetryFor: time.Hour, VerifySSL: true, ReportStart: true}
		rs = append(rs, rc)
	}
	rs = append(rs, config.Reporter{Type: "bitbucket_cloud_status", Name: "bb", BaseURL: forge, ClientID: client,
		ClientSecret: "%(secret:cs)s", Context: defaultContext, RetryFor: time.Hour, VerifySSL: true, ReportStart: true})
	rs = append(rs, config.Reporter{Type: "mail", Name: "mail", FromAddr: "ci@example.org", ExtraRecipients: []string{"dev@example.org"},
		RelayHost: smtpHost, SMTPPort: smtpPort, SMTPUser: user, SMTPPassword: "%(secret:smtp)s",
		Mode: []string{"all"}, RetryFor: time.Hour, VerifySSL: true})
	f.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.start(rs, map[string]string{"pw": password, "cs": csecret, "smtp": smtpPW})
	b := f.buildOf("runtests", store.SourceStamp{Repository: "https://bitbucket.org/team/app.git", Revision: testSHA, Branch: "main"})
	f.finish(b, store.Failure)
	ds := f.deliveries(b.ID, func(ds []store.Delivery) bool {
		failed := 0
		for _, d := range ds {
			if d.State == store.DeliveryFailed && d.Event == Finished {
				failed++
			}
		}
		// push×3, bb and mail.
		return failed == 5
	})
	var texts []string
	for _, d := range ds {
		if d.Event == Finished && d.LastError == "" {
			t.Errorf("%s %s: no last error", d.Reporter, d.Event)
		}
		texts = append(texts, d.LastError)
	}
	f.close()
	data, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"last errors": strings.Join(texts, "\n"), "store": string(data), "log": logs.String()} {
		for _, c := range []struct{ user, secret string }{{user, password}, {client, csecret}, {user, smtpPW}} {
			if l := leaks(text, c.user, c.secret); len(l) > 0 {
				t.Errorf("the %s hold part of %q: %s", what, l, text)
			}
		}
	}
	if !strings.Contains(logs.String(), "authentication failed") || !strings.Contains(logs.String(), "you sent") || !strings.Contains(logs.String(), "xxxclient") {
		t.Errorf("the log does not tell what went wrong: %s", logs.String())
	}
}

// oddLeaks is leaks for forms in base64 inside a longer base64 text: the
// characters of the base64 of each form after 0, 1 or 2 other bytes that
// hold its bits only, 8 in a row, in either alphabet.
func oddLeaks(text, user, secret string) []string {
	var out []string
	for _, form := range []string{secret, user + ":" + secret, "\x00" + user + "\x00" + secret} {
	next:
		for k := range 3 {
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				e := enc.EncodeToString(append(make([]byte, k), form...))
				e = e[(8*k+5)/6 : len(e)-1]
				for i := 0; i+8 <= len(e); i++ {
					if strings.Contains(text, e[i:i+8]) {
						out = append(out, fmt.Sprintf("%q after %d bytes", form, k))
						break next
					}
				}
			}
		}
	}
	return out
}

// TestSecretEchoesAtOddOffsets: endpoints that echo the credentials they
// got inside a longer base64 text (base64 of "x" or "xy" and them), so
// that their base64 starts at an odd offset: http_status_push's basic
// auth, Bitbucket's OAuth client header, SMTP's AUTH PLAIN. None reaches
// a delivery's last error, the store's file or the log.
func TestSecretEchoesAtOddOffsets(t *testing.T) {
	t.Parallel()
	const (
		user     = "ci-robot"
		password = "Pw-Zq9xKk27LmTT"
		client   = "oauth-consumer"
		csecret  = "Cs-Hh81VvQpw3RR"
		smtpPW   = "Sm-Ee64NnUu0oYY"
	)
	// rewrap decodes the base64 at the end of s and encodes it again
	// after pad, in enc.
	rewrap := func(s, pad string, enc *base64.Encoding) string {
		f := strings.Fields(s)
		raw, err := base64.StdEncoding.DecodeString(f[len(f)-1])
		if err != nil {
			return "undecodable " + s
		}
		return "you sent " + enc.EncodeToString(append([]byte(pad), raw...))
	}
	pads := map[string]string{"/x": "x", "/xy": "xy", "/xyz": "xyz"}
	push := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, rewrap(r.Header.Get("Authorization"), pads[r.URL.Path], base64.StdEncoding), http.StatusBadRequest)
	})
	forge1 := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, rewrap(r.Header.Get("Authorization"), "x", base64.URLEncoding), http.StatusUnauthorized)
	})
	forge2 := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, rewrap(r.Header.Get("Authorization"), "xy", base64.StdEncoding), http.StatusUnauthorized)
	})
	smtpHost, smtpPort := echoSMTPWith(t, "127.0.0.1", nil, func(line string) string { return rewrap(line, "x", base64.StdEncoding) })

	var logs syncBuffer
	f := newFixture(t)
	var rs []config.Reporter
	for p := range pads {
		rs = append(rs, config.Reporter{Type: "http_status_push", Name: "push" + strings.ReplaceAll(p, "/", "-"), URL: push + p,
			User: user, Password: "%(secret:pw)s", RetryFor: time.Hour, VerifySSL: true})
	}
	for i, base := range []string{forge1, forge2} {
		rs = append(rs, config.Reporter{Type: "bitbucket_cloud_status", Name: fmt.Sprintf("bb%d", i), BaseURL: base, ClientID: client,
			ClientSecret: "%(secret:cs)s", Context: defaultContext, RetryFor: time.Hour, VerifySSL: true})
	}
	rs = append(rs, config.Reporter{Type: "mail", Name: "mail", FromAddr: "ci@example.org", ExtraRecipients: []string{"dev@example.org"},
		RelayHost: smtpHost, SMTPPort: smtpPort, SMTPUser: user, SMTPPassword: "%(secret:smtp)s",
		Mode: []string{"all"}, RetryFor: time.Hour, VerifySSL: true})
	f.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.start(rs, map[string]string{"pw": password, "cs": csecret, "smtp": smtpPW})
	b := f.buildOf("runtests", store.SourceStamp{Repository: "https://bitbucket.org/team/app.git", Revision: testSHA, Branch: "main"})
	f.finish(b, store.Failure)
	ds := f.deliveries(b.ID, func(ds []store.Delivery) bool {
		failed := 0
		for _, d := range ds {
			if d.State == store.DeliveryFailed && d.Event == Finished {
				failed++
			}
		}
		return failed == len(rs)
	})
	var texts []string
	for _, d := range ds {
		if d.Event == Finished && !strings.Contains(d.LastError, "you sent") {
			t.Errorf("%s %s: last error %q does not tell what the endpoint said", d.Reporter, d.Event, d.LastError)
		}
		texts = append(texts, d.LastError)
	}
	f.close()
	data, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"last errors": strings.Join(texts, "\n"), "store": string(data), "log": logs.String()} {
		for _, c := range []struct{ user, secret string }{{user, password}, {client, csecret}, {user, smtpPW}} {
			if l := append(leaks(text, c.user, c.secret), oddLeaks(text, c.user, c.secret)...); len(l) > 0 {
				t.Errorf("the %s hold %s: %s", what, l, text)
			}
		}
	}
}

// TestChatWebhookURLPathNeverRecorded: a chat webhook's URL is its
// credential (Slack's path); an endpoint that echoes the request's path,
// one segment of it or its query does not put it in the last error.
func TestChatWebhookURLPathNeverRecorded(t *testing.T) {
	t.Parallel()
	const seg, key = "B0123XYZ9", "Kq7Vv2Ww9Xx4Yy8Zz"
	base := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/")
		http.Error(w, fmt.Sprintf("no such hook %s (segment %s, key %s, query %s)", r.URL.Path, parts[3], r.URL.Query().Get("k"), r.URL.RawQuery), http.StatusNotFound)
	})
	hook := base + "/services/T0001/" + seg + "/" + key + "?k=Zz-QueryKey-77"
	var logs syncBuffer
	f := newFixture(t)
	f.log = slog.New(slog.NewTextHandler(&logs, nil))
	var rs []config.Reporter
	for name, u := range map[string]string{"secret": "%(secret:hook)s", "literal": hook} {
		rs = append(rs, config.Reporter{Type: "chat_webhook", Name: name, URL: u, RetryFor: time.Hour, VerifySSL: true})
	}
	f.start(rs, map[string]string{"hook": hook})
	b := f.build("runtests", "main")
	f.finish(b, store.Failure)
	ds := f.deliveries(b.ID, func(ds []store.Delivery) bool {
		n := 0
		for _, d := range ds {
			if d.State == store.DeliveryFailed {
				n++
			}
		}
		return n == len(rs)
	})
	f.close()
	data, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if !strings.Contains(d.LastError, "no such hook") {
			t.Errorf("%s: last error %q does not tell what the endpoint said", d.Reporter, d.LastError)
		}
	}
	for what, text := range map[string]string{"store": string(data), "log": logs.String()} {
		for _, s := range []string{seg, key, "QueryKey", "/T0001/"} {
			if strings.Contains(text, s) {
				t.Errorf("the %s hold %q of the hook's URL: %s", what, s, text)
			}
		}
	}
}

// TestQuotedSecretEchoNeverRecorded: a password holding `"` and `\`,
// echoed by the endpoint, is quoted in the error (as %q and JSON do):
// it is hidden in its quoted forms too.
func TestQuotedSecretEchoNeverRecorded(t *testing.T) {
	t.Parallel()
	const user, pw = "ci-robot", `Qu"ote\Pw123<&>x`
	push := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		j, _ := json.Marshal(p)
		http.Error(w, fmt.Sprintf("bad password for %s: %s json %s html %s", u, p, j, htmlEscape(p)), http.StatusForbidden)
	})
	var logs syncBuffer
	f := newFixture(t)
	f.log = slog.New(slog.NewTextHandler(&logs, nil))
	f.start([]config.Reporter{{Type: "http_status_push", Name: "push", URL: push, User: user, Password: "%(secret:pw)s", RetryFor: time.Hour, VerifySSL: true}},
		map[string]string{"pw": pw})
	b := f.build("runtests", "main")
	f.finish(b, store.Failure)
	ds := f.deliveries(b.ID, func(ds []store.Delivery) bool { return len(ds) == 1 && ds[0].State == store.DeliveryFailed })
	f.close()
	data, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ds[0].LastError, "bad password for") {
		t.Errorf("last error %q does not tell what the endpoint said", ds[0].LastError)
	}
	for what, text := range map[string]string{"last error": ds[0].LastError, "store": string(data), "log": logs.String()} {
		for _, s := range []string{"ote", "Pw123", "Qu"} {
			if strings.Contains(text, s) {
				t.Errorf("the %s hold %q of the password: %s", what, s, text)
			}
		}
	}
}

func htmlEscape(s string) string { return html.EscapeString(s) }
