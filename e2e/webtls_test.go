package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/internal/testx509"
)

// webTLSConfig is a master serving its web port over HTTPS itself, with
// the certificate files web.pem and web-key.pem of its basedir, and the
// token of new-token.
const webTLSConfig = `
buildbot_url = "https://127.0.0.1:{{.WebPort}}/"

[protocols.grpc]
port = {{.WorkerPort}}
interface = "127.0.0.1"

[www]
port = {{.WebPort}}
interface = "127.0.0.1"
tls_cert_file = "web.pem"
tls_key_file = "web-key.pem"
` + workerW1 + authUsers + `
{{.Token}}
[[www.authz.rules]]
actions = ["*"]
roles = ["admins"]

[[schedulers]]
type = "force"
name = "force"
builder_names = ["quick", "other"]

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo hello"

[[builders]]
name = "other"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo other"
`

// TestWebTLS runs gbb-master with [www] tls_cert_file and tls_key_file,
// certificates made by the test: curl negotiates HTTP/2, openssl
// s_client sees TLS 1.2+ and the configured certificate, a login's cookie
// is Secure, a token made by `gbb-master new-token` limited to force on
// one builder forces it and is refused other actions with 403 and the
// reason, and a reconfig serves a renewed certificate to new connections
// while an open one goes on.
func TestWebTLS(t *testing.T) {
	curl := testdeb.Need(t, "curl", "curl")
	openssl := testdeb.Need(t, "openssl", "openssl")
	e := newEnv(t)
	mustRun(t, e.master, "create-master", e.masterDir)
	ca := testx509.NewCA(t, e.Dir, "e2e")
	first := ca.Issue(t, e.masterDir, "web", testx509.Options{})

	out := mustRun(t, e.master, "new-token", "-groups", "admins", "-actions", "force", "-builders", "quick", "ci-bot")
	token, table, ok := strings.Cut(out, "\n")
	if !ok || !strings.HasPrefix(token, "gbb_") || strings.Count(out, token) != 1 || !strings.Contains(table, "[[www.auth.tokens]]") {
		t.Fatalf("new-token printed:\n%s", out)
	}
	e.writeConfigData(webTLSConfig, struct {
		*env
		AdminHash, ViewerHash, Token string
	}{e, e.hashpw("admin-pw"), e.hashpw("viewer-pw"), table})
	mustRun(t, e.master, "checkconfig", e.masterDir)
	e.startMaster()
	e.startWorker("w1", "secret")
	base := fmt.Sprintf("https://127.0.0.1:%d", e.WebPort)

	// curl speaks HTTP/2 to it, trusting the test's CA.
	cout := mustRun(t, curl, "-sS", "--http2", "--cacert", ca.File, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", base+"/api/v2/builders")
	if string(cout) != "2 200" {
		t.Errorf("curl --http2: %q, want HTTP/2 and 200", cout)
	}
	// openssl s_client sees TLS 1.2 or 1.3, the certificate's name and a
	// verified chain.
	cmd := exec.Command(openssl, "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", e.WebPort), "-CAfile", ca.File, "-alpn", "h2")
	cmd.Stdin = strings.NewReader("")
	sout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, sout)
	}
	for _, re := range []string{`New, TLSv1\.[23], Cipher is (TLS_AES|TLS_CHACHA20|ECDHE-)`, `Verify return code: 0 \(ok\)`, `subject=CN ?= ?web`, `ALPN protocol: h2`} {
		if !regexp.MustCompile(re).Match(sout) {
			t.Errorf("openssl s_client output lacks %s:\n%s", re, sout)
		}
	}
	// TLS 1.1 is refused.
	cmd = exec.Command(openssl, "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", e.WebPort), "-tls1_1", "-brief")
	cmd.Stdin = strings.NewReader("")
	if sout, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("openssl s_client -tls1_1 connected:\n%s", sout)
	}

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	rpc := func(path, method, params string) (int, string) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(fmt.Sprintf(`{"jsonrpc":"2.0","method":%q,"id":1,"params":%s}`, method, params)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "w1 connected", 30*time.Second, func() bool {
		req, _ := http.NewRequest("GET", base+"/api/v2/workers/w1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Workers []struct {
				ConnectedTo []any `json:"connected_to"`
			} `json:"workers"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		return len(r.Workers) == 1 && len(r.Workers[0].ConnectedTo) > 0
	})

	// The token forces quick; it may not force other, nor stop.
	quick, other := builderIDTLS(t, client, base, token, "quick"), builderIDTLS(t, client, base, token, "other")
	if code, body := rpc("/api/v2/forceschedulers/force", "force", fmt.Sprintf(`{"builderid":%d}`, quick)); code != 200 {
		t.Errorf("force quick with the token: %d %s", code, body)
	}
	if code, body := rpc("/api/v2/forceschedulers/force", "force", fmt.Sprintf(`{"builderid":%d}`, other)); code != 403 || !strings.Contains(body, "token ci-bot is limited to actions force on builders quick: it may not force on builder other") {
		t.Errorf("force other with the token: %d %s, want 403 naming the limit", code, body)
	}
	if code, body := rpc("/api/v2/workers/w1", "pause", "{}"); code != 403 || !strings.Contains(body, "it may not pause") {
		t.Errorf("pause w1 with the token: %d %s, want 403", code, body)
	}
	// The token is not in the config, only its hash.
	cfg, err := os.ReadFile(filepath.Join(e.masterDir, "master.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), token) {
		t.Error("master.toml holds the token itself")
	}

	// A login over TLS gets a Secure session cookie.
	page, err := client.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	csrf := regexp.MustCompile(`name="csrf_token" value="([0-9a-f]{64})"`).FindSubmatch(body)
	if csrf == nil || len(page.Cookies()) != 1 || !page.Cookies()[0].Secure {
		t.Fatalf("login page: %v, cookies %v", page.Status, page.Cookies())
	}
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader("username=admin&password=admin-pw&csrf_token="+string(csrf[1])))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(page.Cookies()[0])
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cks := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(cks) != 1 || !cks[0].Secure || !cks[0].HttpOnly || cks[0].SameSite != http.SameSiteLaxMode {
		t.Errorf("login over TLS: %s, cookies %v: want a Secure, HttpOnly, SameSite=Lax session", resp.Status, cks)
	}

	// Chromium logs in over HTTPS (its Secure cookie holds), and the
	// pages keep their CSP. It trusts the test's certificate by its key
	// (the SPKI pin), not by ignoring every error.
	spki := sha256.Sum256(first.Cert.RawSubjectPublicKeyInfo)
	browser := newBrowser(t, chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])))
	csp := watchCSP(t, browser)
	var user, proto string
	browse(t, browser, "log in over HTTPS",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="username"]`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), "admin-pw"),
		loaded(chromedp.Submit(chromedp.CSS("#login-form"))),
		chromedp.WaitVisible(chromedp.CSS("#auth-user")),
		into(&user, chromedp.Text(chromedp.CSS("#auth-user"))),
		into(&proto, chromedp.Evaluate[string](`location.protocol + " " + performance.getEntriesByType("navigation")[0].nextHopProtocol`)),
		chromedp.Navigate(base+"/builders"),
		chromedp.WaitVisible(chromedp.CSS("#builders-table")),
	)
	if user != "admin" || proto != "https: h2" {
		t.Errorf("Chromium over TLS: user %q, protocol %q; want admin over https: h2", user, proto)
	}
	if v := csp.violations(); len(v) > 0 {
		t.Errorf("CSP violations over TLS:\n%s", strings.Join(v, "\n"))
	}

	// A renewed certificate, in the same files: reconfig serves it to new
	// connections, and the open one goes on.
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	get := func(c *http.Client) *http.Response {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", base+"/api/v2/builders", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	get(client)
	second := ca.Issue(t, e.masterDir, "web", testx509.Options{})
	if out := mustRun(t, e.master, "reconfig", e.masterDir); strings.Contains(string(out), "restart") {
		t.Fatalf("reconfig asks for a restart:\n%s", out)
	}
	if resp := get(client); !reused || resp.TLS.PeerCertificates[0].SerialNumber.Cmp(first.Cert.SerialNumber) != 0 {
		t.Errorf("after the reconfig the open connection was not kept (reused %v)", reused)
	}
	tr2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}
	defer tr2.CloseIdleConnections()
	if resp := get(&http.Client{Transport: tr2}); resp.TLS.PeerCertificates[0].SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("after the reconfig a new connection got serial %v, want the renewed %v", resp.TLS.PeerCertificates[0].SerialNumber, second.Cert.SerialNumber)
	}

	// Turning TLS off needs a restart: the reconfig says so and changes
	// nothing.
	mtoml := filepath.Join(e.masterDir, "master.toml")
	plain := strings.NewReplacer("tls_cert_file = \"web.pem\"\n", "", "tls_key_file = \"web-key.pem\"\n", "").Replace(string(cfg))
	if err := os.WriteFile(mtoml, []byte(plain), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, e.master, "reconfig", e.masterDir); err == nil || !strings.Contains(string(out), "www") || !strings.Contains(string(out), "needs a restart") {
		t.Errorf("reconfig turning TLS off: %v\n%s", err, out)
	}
	if resp := get(&http.Client{Transport: tr2}); resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("after a refused reconfig: %s, TLS %v", resp.Status, resp.TLS != nil)
	}
}

// builderIDTLS returns the id of the builder called name, read with the
// token.
func builderIDTLS(t *testing.T, c *http.Client, base, token, name string) int64 {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v2/builders/"+name, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Builders) != 1 {
		t.Fatalf("builder %s: %v %+v", name, err, r)
	}
	return r.Builders[0].BuilderID
}
