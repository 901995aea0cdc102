package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogFormatFlag: start --log-format json makes the daemon write
// master.log as JSON lines (the flag reaches the background master); a
// format other than text and json is refused before anything starts.
func TestLogFormatFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := "[protocols.grpc]\nport = 0\ninterface = \"127.0.0.1\"\n[www]\nport = 0\ninterface = \"127.0.0.1\"\n"
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var ee *exitError
	if err := run([]string{"start", "--log-format", "xml", dir}); !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), `unknown log format "xml"`) {
		t.Errorf("start --log-format xml = %v, want exit 2 naming the format", err)
	}
	bin := buildMaster(t)
	runMaster(t, bin, "start", "--log-format", "json", dir)
	t.Cleanup(func() { runMaster(t, bin, "stop", dir) })
	f, err := os.Open(filepath.Join(dir, logFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	up := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("master.log line is not JSON: %q", sc.Text())
		}
		up = up || line["msg"] == "gbb-master is up"
	}
	if !up {
		t.Error("master.log has no JSON \"gbb-master is up\" line")
	}
}

// TestFailedStartLogsJSON: with log_format = "json", a start that fails in
// the background master (its web port taken) leaves only JSON lines in
// master.log, the error among them, and says why on the terminal.
func TestFailedStartLogsJSON(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	conf := fmt.Sprintf("log_format = \"json\"\n[protocols.grpc]\nport = 0\ninterface = \"127.0.0.1\"\n[www]\nport = %d\ninterface = \"127.0.0.1\"\n", taken.Addr().(*net.TCPAddr).Port)
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildMaster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "start", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") {
		t.Errorf("gbb-master start on a taken port: %v %q, want a failure saying the address is in use", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, logFile))
	if err != nil {
		t.Fatal(err)
	}
	failed := false
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Errorf("master.log line is not JSON: %q", l)
			continue
		}
		if e, _ := line["err"].(string); line["level"] == "ERROR" && strings.Contains(e, "address already in use") {
			failed = true
		}
	}
	if !failed {
		t.Errorf("master.log has no JSON error line about the taken port:\n%s", data)
	}
}
