package reporter

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestURLPropertiesAreEscaped: a property in http_status_push's url (a
// branch anyone can push) stays in its path segment and its query value:
// no climbing, no other path, no added parameter.
func TestURLPropertiesAreEscaped(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []*url.URL
	base := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL)
		mu.Unlock()
	})
	f := newFixture(t)
	rc := push("push", base+"/hook/%(prop:branch)s/end?b=%(prop:branch)s&fixed=1")
	rc.ReportStart = false
	f.start([]config.Reporter{rc}, nil)
	const branch = "../../admin?x=1&fixed=2#frag"
	b := f.build("runtests", branch)
	f.finish(b, store.Success)
	f.deliveries(b.ID, delivered)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("requests: %v", got)
	}
	u := got[0]
	if want := "/hook/" + escapeURLValue(branch) + "/end"; u.Path != "/hook/"+branch+"/end" || u.EscapedPath() != want {
		t.Errorf("path %q (escaped %q), want the branch in one segment: %q", u.Path, u.EscapedPath(), want)
	}
	q := u.Query()
	if q.Get("b") != branch || len(q["fixed"]) != 1 || q.Get("fixed") != "1" || len(q) != 2 {
		t.Errorf("query %v, want b=%q and fixed=1 only", q, branch)
	}
}

// TestURLHostFromConfigOnly: a url whose host a property could give is a
// config error; a secret may give the whole URL.
func TestURLHostFromConfigOnly(t *testing.T) {
	t.Parallel()
	for u, refused := range map[string]bool{
		"http://%(prop:host)s/hook":                 true,
		"%(prop:url)s":                              true,
		"https://ci.example.org%(prop:port)s/hook":  true,
		"https://ci.example.org/%(prop:b)s":         false,
		"%(secret:hook)s":                           false,
		"%(secret:hook)s/%(prop:b)s":                false,
		"https://%(secret:host)s/x/%(src::branch)s": false,
		"http:/%(prop:x)s/p":                        true, // empty x makes http://p
		"http:///%(prop:x)s/p":                      true,
		"http:///p":                                 true,
		"https:/ci.example.org/p":                   true,
		"ci.example.org/%(prop:b)s":                 true,
		"https://ci.example.org/p":                  false,
	} {
		for _, kind := range []string{"http_status_push", "chat_webhook"} {
			_, err := newSender(config.Reporter{Type: kind, Name: "r", URL: u}, Deps{HTTP: &http.Client{}})
			if (err != nil) != refused {
				t.Errorf("%s url %q: %v, want refused: %v", kind, u, err, refused)
			}
		}
	}
}

// TestHeaderPropertyLineBreakIsRefused: a property with a line break in a
// rendered header is a permanent refusal, not a try retried for a day.
func TestHeaderPropertyLineBreakIsRefused(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	n := 0
	base := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
	})
	s, err := newSender(config.Reporter{Type: "http_status_push", Name: "p", URL: base, Headers: map[string]string{"X-Branch": "%(prop:branch)s"}}, Deps{HTTP: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	r := testReport(Finished, store.Success, map[string]any{"branch": "main\r\nX-Evil: 1"})
	err = s.Send(context.Background(), r)
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "X-Branch") {
		t.Errorf("Send = %v, want a permanent refusal naming the header", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestURLDotSegmentsRefused: a property or branch of "..", "." or ""
// (anyone's who can push) in a path segment of the url would make
// /hook/../status or /hook//status, which a normalizing proxy sends
// elsewhere, token included: refused at once (one try, the reason
// recorded), nothing sent. In the query it is a value like any other.
func TestURLDotSegmentsRefused(t *testing.T) {
	t.Parallel()
	for _, branch := range []string{"..", ".", ""} {
		t.Run(fmt.Sprintf("%q", branch), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var got []*url.URL
			base := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got = append(got, r.URL)
				mu.Unlock()
			})
			f := newFixture(t)
			var rs []config.Reporter
			for name, u := range map[string]string{
				"path-prop":  base + "/hook/%(prop:branch)s/status?token=t0ken",
				"path-src":   base + "/hook/%(src::branch)s/status",
				"chat-path":  base + "/chat/%(prop:branch)s/x",
				"query-prop": base + "/q?b=%(prop:branch)s&token=t0ken",
				"query-src":  base + "/q?b=%(src::branch)s",
				"chat-query": base + "/chatq?b=%(prop:branch)s",
			} {
				rc := push(name, u)
				if strings.HasPrefix(name, "chat") {
					rc.Type = "chat_webhook"
				}
				rc.ReportStart = false
				rs = append(rs, rc)
			}
			f.start(rs, nil)
			b := f.build("runtests", branch)
			f.finish(b, store.Success)
			ds := f.deliveries(b.ID, func(ds []store.Delivery) bool {
				n := 0
				for _, d := range ds {
					if d.State == store.DeliveryFailed || d.State == store.DeliveryDelivered {
						n++
					}
				}
				return n == len(rs)
			})
			for _, d := range ds {
				inPath := !strings.Contains(d.Reporter, "query")
				switch {
				case inPath && (d.State != store.DeliveryFailed || d.Attempts != 1 || !strings.Contains(d.LastError, "path: refused")):
					t.Errorf("%s: %s after %d tries (%q), want failed at once, refused", d.Reporter, d.State, d.Attempts, d.LastError)
				case !inPath && d.State != store.DeliveryDelivered:
					t.Errorf("%s: %s (%q), want delivered", d.Reporter, d.State, d.LastError)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 3 {
				t.Errorf("requests %v, want the 3 with the value in the query", got)
			}
			for _, u := range got {
				if !strings.HasPrefix(u.Path, "/q") && !strings.HasPrefix(u.Path, "/chatq") || u.Query().Get("b") != branch {
					t.Errorf("request %v: want /q or /chatq with b=%q", u, branch)
				}
			}
		})
	}
}

// TestURLWithoutHostIsPermanent: a url that renders without a host (a
// secret's) is refused at once, not retried for a day.
func TestURLWithoutHostIsPermanent(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http:///p", "http:/p/q"} {
		for _, s := range []Sender{
			&httpStatusPush{rc: config.Reporter{Name: "p", URL: u}, http: &http.Client{}},
			&chatWebhook{rc: config.Reporter{Name: "c", URL: u}, http: &http.Client{}},
		} {
			err := s.Send(context.Background(), testReport(Finished, store.Success, nil))
			if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "no host") {
				t.Errorf("%T url %q: Send = %v, want a permanent refusal: no host", s, u, err)
			}
		}
	}
}

// TestPushUserAgent: http_status_push and chat_webhook name themselves
// as the forges' reporters do, not as Go's client.
func TestPushUserAgent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var agents []string
	base := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.UserAgent())
		mu.Unlock()
	})
	for _, kind := range []string{"http_status_push", "chat_webhook"} {
		s, err := newSender(config.Reporter{Type: kind, Name: "r", URL: base + "/hook"}, Deps{HTTP: &http.Client{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(context.Background(), testReport(Finished, store.Success, nil)); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(agents) != 2 || agents[0] != "gbb" || agents[1] != "gbb" {
		t.Errorf("User-Agents %q, want gbb twice", agents)
	}
}
