package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestKeyFilesRefuseSpecialFiles: a password_file naming a device or a
// FIFO, or a file too big to be a password, is refused at once: never read
// whole, never waited on.
func TestKeyFilesRefuseSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxKeyFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"/dev/zero": "not a regular file",
		fifo:        "not a regular file",
		big:         "65537 bytes, more than the 65536 allowed",
	} {
		src := "[[workers]]\nname = \"w\"\npassword_file = \"" + file + "\"\n"
		_, err := Parse(filepath.Join(dir, "master.toml"), []byte(src))
		if err == nil || !strings.Contains(err.Error(), "master.toml:3: workers[0].password_file: read "+file+": "+want) {
			t.Errorf("password_file %s: %v, want %q", file, err, want)
		}
	}
}
