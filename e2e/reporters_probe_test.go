package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const echoUser, echoPassword = "ci-robot", "Pw-e2e-Zq9xKk27LmTT"

const reportersEchoConfig = reportersBase + `
[[reporters]]
type = "http_status_push"
url = "{{.Hook}}/status"
user = "` + echoUser + `"
password = "%(secret:pushpw)s"
report_start = false
`

// TestReportSecretEchoAndMovedReconfig: an endpoint that echoes the basic
// auth header it got (cut where the sender used to cut its answer) leaves
// no part of the password, raw or in base64, in the API, the build page,
// master.log or the store; and a reconfig that only adds a comment at the
// top of master.toml restarts no reporter.
func TestReportSecretEchoAndMovedReconfig(t *testing.T) {
	t.Parallel()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, strings.Repeat("x", 170)+"you sent "+r.Header.Get("Authorization")+strings.Repeat("y", 300), http.StatusBadRequest)
	}))
	t.Cleanup(hook.Close)
	e := newEnv(t)
	secrets := filepath.Join(e.Dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "pushpw"), []byte(echoPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := struct {
		*env
		Hook string
	}{e, hook.URL}
	e.writeConfigData(reportersEchoConfig, data)
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "echo"), 60*time.Second)
	var r struct{ Reports []apiReport }
	waitFor(t, "the refused report", 60*time.Second, func() bool {
		e.get(fmt.Sprintf("/api/v2/builds/%d/reports", b.BuildID), &r)
		return len(r.Reports) == 1 && r.Reports[0].State == "failed"
	})
	if le := r.Reports[0].LastError; le == nil || !strings.Contains(*le, "you sent") {
		t.Errorf("last error %v, want the endpoint's answer", le)
	}

	// The same config with a comment on top: every reporter moves a line.
	cfgPath := filepath.Join(e.masterDir, "master.toml")
	src, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, append([]byte("# a comment\n\n"), src...), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, e.master, "reconfig", e.masterDir)
	masterLog := func() string {
		data, err := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	waitFor(t, "the reconfig", 30*time.Second, func() bool { return strings.Count(masterLog(), "reconfig applied") >= 1 })
	if strings.Contains(masterLog(), "reporter stopped") {
		t.Errorf("a reconfig that only moved lines restarted a reporter")
	}

	forms := []string{echoPassword, base64.StdEncoding.EncodeToString([]byte(echoUser + ":" + echoPassword))}
	leak := func(what, text string) {
		for _, f := range forms {
			for i := 0; i+8 <= len(f); i++ {
				if strings.Contains(text, f[i:i+8]) {
					t.Errorf("%s holds %q, part of %q", what, f[i:i+8], f)
					break
				}
			}
		}
	}
	for _, path := range []string{
		fmt.Sprintf("/api/v2/builds/%d/reports", b.BuildID),
		fmt.Sprintf("/builders/%d/builds/%d", b.BuilderID, b.Number),
	} {
		leak(path, e.getText(path))
	}
	e.stopMaster()
	leak("master.log", masterLog())
	db, err := os.ReadFile(filepath.Join(e.masterDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	leak("state.db", string(db))
}
