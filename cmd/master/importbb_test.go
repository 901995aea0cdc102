package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -o naming the master.cfg itself is refused before anything runs: the
// buildbot config is neither overwritten nor chmodded.
func TestImportBuildbotRefusesOverwritingInput(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "master.cfg")
	const text = "c = BuildmasterConfig = {}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same file by another name, too.
	if err := os.Symlink(cfg, filepath.Join(dir, "link.cfg")); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{cfg, filepath.Join(dir, "link.cfg"), filepath.Join(dir, ".", "master.cfg")} {
		err := importBuildbot([]string{"-o", out, cfg})
		if err == nil || !strings.Contains(err.Error(), "is the master.cfg itself") {
			t.Errorf("-o %s: %v", out, err)
		}
	}
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != text || st.Mode().Perm() != 0o644 {
		t.Errorf("master.cfg changed: %q, mode %o", data, st.Mode().Perm())
	}
}
