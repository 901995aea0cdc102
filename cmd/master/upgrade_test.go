package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestUpgradeMaster: upgrade-master checks the config and brings the
// store to this gbb's schema, on PostgreSQL (a new database gets the whole
// schema) and on bbolt; a bad config is reported as checkconfig does.
func TestUpgradeMaster(t *testing.T) {
	bin := buildMaster(t)
	url := newCopyDatabase(t)
	dir := t.TempDir()
	write := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "master.toml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[db]\nurl = \"" + url + "\"\n")
	out, err := exec.Command(bin, "upgrade-master", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("upgrade-master on PostgreSQL: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "schema version 1") {
		t.Errorf("output %q names no schema version", out)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('builds', 'buildrequests', 'gbb_schema')").Scan(&n); err != nil || n != 3 {
		t.Errorf("%d of the schema's tables (%v) after upgrade-master, want 3", n, err)
	}

	write("")
	out, err = exec.Command(bin, "upgrade-master", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bbolt store") {
		t.Fatalf("upgrade-master on bbolt: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		t.Errorf("no state.db after upgrade-master: %v", err)
	}

	write("[db]\nurl = \"mysql://x\"\n")
	out, err = exec.Command(bin, "upgrade-master", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "master.toml:2: db.url") {
		t.Errorf("a bad config: %v\n%s", err, out)
	}
}
