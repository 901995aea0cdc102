package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandHelp: "checkconfig --help" prints the command's usage and
// options and exits 0 (it printed only "flag: help requested"), and an
// option after DIR is taken (checkconfig DIR --dump said "expected one
// DIR argument, got 2").
func TestCommandHelp(t *testing.T) {
	t.Parallel()
	bin := buildMaster(t)
	for _, args := range [][]string{{"checkconfig", "--help"}, {"checkconfig", "-h"}, {"reconfig", "--help"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "usage: gbb-master "+args[0]+" [options] DIR") {
			t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "checkconfig" && !strings.Contains(string(out), "-dump") {
			t.Errorf("%s does not list --dump:\n%s", strings.Join(args, " "), out)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte("title = \"t\"\n[[workers]]\nname = \"w1\"\npassword = \"p\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "checkconfig", dir, "--dump").Output()
	if err != nil || !strings.Contains(string(out), `title = "t"`) {
		t.Errorf("checkconfig DIR --dump: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "checkconfig", dir, "x").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "expected one DIR argument, got 2") {
		t.Errorf("checkconfig DIR x: %v\n%s", err, out)
	}
}
