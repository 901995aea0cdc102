package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
