package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsConfigReuse: the example of docs/config-reuse.md loads, makes
// 50 builders, and the page shows each of its files as it is.
func TestDocsConfigReuse(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "..", "docs", "config-reuse")
	cfg, err := Load(filepath.Join(dir, "master.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Builders) != 50 {
		t.Errorf("the example makes %d builders, want 50: %q", len(cfg.Builders), builderNames(cfg))
	}
	page, err := os.ReadFile(filepath.Join("..", "..", "docs", "config-reuse.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(dir, "master.toml")}, cfg.Included...)
	if len(files) != 5 {
		t.Errorf("the example has %d files: %q", len(files), files)
	}
	// Its opening comment counts them right (it said four).
	words := []string{"no", "one", "two", "three", "four", "five", "six", "seven"}
	if first, _ := os.ReadFile(files[0]); len(files) < len(words) && !strings.Contains(string(first), "in "+words[len(files)]+" files") {
		t.Errorf("master.toml's comment does not say it is in %s files", words[len(files)])
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(page), "```toml\n"+string(data)+"```") {
			t.Errorf("docs/config-reuse.md does not show %s as it is", f)
		}
	}
	// Every builder the schedulers name exists (Load checks it), and each
	// platform's tests run on its worker.
	for _, b := range cfg.Builders {
		if b.Name == "test-debian12-1.25-race" && (len(b.WorkerNames) != 1 || b.WorkerNames[0] != "deb12-1") {
			t.Errorf("%s runs on %q", b.Name, b.WorkerNames)
		}
	}
}

// TestIncludeInsideTable: include written after a table's header belongs
// to that table; the error says where it goes.
func TestIncludeInsideTable(t *testing.T) {
	t.Parallel()
	_, msgs, _ := loadTree(t, map[string]string{"master.toml": "[www]\nport = 1\ninclude = [\"a.toml\"]\n"})
	want := "master.toml:3: www.include: unknown key (include is a top-level key: write it before the first [table])"
	if len(msgs) != 1 || msgs[0] != want {
		t.Errorf("errors %q, want %q", msgs, want)
	}
}
