package reporter

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
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
					fmt.Fprintf(c, "535 5.7.8 authentication failed for %s\r\n", line)
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
