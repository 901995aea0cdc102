package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/internal/testx509"
	"github.com/gorilla/websocket"
)

// startNginx runs Debian's nginx (binary nginx) with deploy/freebsd/nginx.conf,
// changing only what a test must: it listens on 127.0.0.1:port (and the
// returned TLS port, with a certificate the test made), keeps its
// files under dir/nginx, and, when upstream is not empty, proxies to it
// instead of the jail address 10.1.1.2:8010, from 127.0.0.1 instead of the
// jail host's 10.1.1.1 (proxy_bind). nginx stops at the test's end; its
// output goes to dir/nginx.out.
func startNginx(t *testing.T, nginx, dir string, port int, upstream string) nginxTLS {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/freebsd/nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(src)
	if upstream != "" {
		if !strings.Contains(conf, "http://10.1.1.2:8010") {
			t.Fatal("deploy/freebsd/nginx.conf does not proxy to http://10.1.1.2:8010")
		}
		conf = strings.ReplaceAll(conf, "http://10.1.1.2:8010", "http://"+upstream)
		if !strings.Contains(conf, "proxy_bind 10.1.1.1;") {
			t.Fatal("deploy/freebsd/nginx.conf does not connect from 10.1.1.1 (proxy_bind)")
		}
		conf = strings.ReplaceAll(conf, "proxy_bind 10.1.1.1;", "proxy_bind 127.0.0.1;")
	}
	return startNginxConf(t, nginx, dir, "nginx", port, conf)
}

// nginxTLS is where a started nginx serves HTTPS: Port on 127.0.0.1, with
// a certificate of CA for 127.0.0.1 and localhost; zero when its
// configuration has no TLS server.
type nginxTLS struct {
	Port int
	CA   *testx509.CA
}

// Client returns an HTTP client that trusts the certificate.
func (n nginxTLS) Client(t *testing.T) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: n.CA.Pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// startNginxConf runs nginx with conf, changing only its "listen 80;" to
// 127.0.0.1:port and its files to dir/name; it stops at the test's end,
// its output in dir/name.out.
func startNginxConf(t *testing.T, nginx, dir, name string, port int, conf string) nginxTLS {
	t.Helper()
	return startNginxConfIn(t, "", nginx, dir, name, port, conf)
}

// startNginxConfIn is startNginxConf in the network namespace netns ("" is
// the test's own). A TLS server ("listen 443 ssl") listens on a free port
// of 127.0.0.1 (8443 in a namespace of its own) with a certificate made
// for the test in place of the one under /usr/local/etc/ssl/gbb.
func startNginxConfIn(t *testing.T, netns, nginx, dir, name string, port int, conf string) nginxTLS {
	t.Helper()
	ndir := filepath.Join(dir, name)
	if err := os.MkdirAll(ndir, 0o755); err != nil {
		t.Fatal(err)
	}
	var tlsSrv nginxTLS
	var changes []struct{ old, new string }
	if strings.Contains(conf, "listen 443 ssl") {
		tlsSrv.Port = 8443
		if netns == "" {
			tlsSrv.Port = freePort(t)
		}
		tlsSrv.CA = testx509.NewCA(t, ndir, "nginx-test")
		leaf := tlsSrv.CA.Issue(t, ndir, "gbb", testx509.Options{})
		changes = append(changes, []struct{ old, new string }{
			{"listen 443 ssl", fmt.Sprintf("listen 127.0.0.1:%d ssl", tlsSrv.Port)},
			{"/usr/local/etc/ssl/gbb/fullchain.pem", leaf.CertFile},
			{"/usr/local/etc/ssl/gbb/privkey.pem", leaf.KeyFile},
		}...)
	}
	changes = append(changes, []struct{ old, new string }{
		{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port)},
		{"http {\n", fmt.Sprintf("http {\n    access_log %[1]s/access.log;\n    client_body_temp_path %[1]s/body;\n    proxy_temp_path %[1]s/proxy;\n    fastcgi_temp_path %[1]s/fastcgi;\n    uwsgi_temp_path %[1]s/uwsgi;\n    scgi_temp_path %[1]s/scgi;\n", ndir)},
	}...)
	for _, r := range changes {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("the nginx configuration has no %q to adapt:\n%s", r.old, conf)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	nconf := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(nconf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	global := fmt.Sprintf("daemon off; pid %[1]s/nginx.pid; error_log %[1]s/error.log;", ndir)
	mustRun(t, nginx, "-t", "-p", ndir, "-c", nconf, "-g", global)
	args := []string{nginx, "-p", ndir, "-c", nconf, "-g", global}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	netnsProc(t, filepath.Join(dir, name+".out"), args[0], args[1:]...)
	return tlsSrv
}

// TestNginxWebSockets: through the shipped deploy/freebsd/nginx.conf, the
// WebSocket of gbb's pages (/buildbot/ws) and the one buildbot's UI opens
// beside its pages (/buildbot/buildbot-ui/ws) both upgrade and answer
// startConsuming; a location without Upgrade and Connection would answer
// the UI's 400.
func TestNginxWebSockets(t *testing.T) {
	t.Parallel()
	nginx := testdeb.Need(t, "nginx", "nginx")
	e := newEnv(t)
	e.writeConfig(loopback)
	port := freePort(t)
	startNginx(t, nginx, e.Dir, port, fmt.Sprintf("127.0.0.1:%d", e.WebPort))
	e.startMaster()
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, path := range []string{"/buildbot/ws", "/buildbot/buildbot-ui/ws"} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			url := fmt.Sprintf("ws://127.0.0.1:%d%s", port, path)
			conn, resp, err := websocket.DefaultDialer.DialContext(ctx, url, http.Header{"Origin": {origin}})
			if err != nil {
				status := ""
				if resp != nil {
					status = resp.Status
				}
				t.Fatalf("WebSocket %s through nginx: %v %s", url, err, status)
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if err := conn.WriteJSON(map[string]any{"cmd": "startConsuming", "path": "builders/*/*", "_id": 1}); err != nil {
				t.Fatal(err)
			}
			var ack map[string]any
			if err := conn.ReadJSON(&ack); err != nil || ack["code"] != 200.0 {
				t.Fatalf("startConsuming over %s: %v %v", path, ack, err)
			}
		})
	}
}
