package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeSecret(t *testing.T, dir, name, value string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(value), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // the umask may have cut it
		t.Fatal(err)
	}
}

func TestFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeSecret(t, dir, "token", "s3cr3t\n", 0o600)
	writeSecret(t, dir, "multi", "a\nb\n", 0o400)
	writeSecret(t, dir, "open", "x", 0o644)
	f, err := NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want, err string
		notFound        bool
	}{
		{name: "token", want: "s3cr3t"},
		{name: "multi", want: "a\nb"},
		{name: "open", err: "permissions 0644"},
		{name: "missing", notFound: true},
		{name: "../secrets/token", notFound: true},
		{name: ".hidden", notFound: true},
	}
	for _, tt := range tests {
		got, err := f.Get(tt.name)
		switch {
		case tt.notFound:
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%q) = %q, %v; want ErrNotFound", tt.name, got, err)
			}
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Get(%q) error = %v; want one with %q", tt.name, err, tt.err)
			}
		case err != nil || got != tt.want:
			t.Errorf("Get(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestFileDirectoryRefused(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o755, 0o740, 0o702} {
		dir := filepath.Join(t.TempDir(), "secrets")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := NewFile(dir); err == nil || !strings.Contains(err.Error(), "too open") {
			t.Errorf("mode %04o: NewFile error = %v; want too open", mode, err)
		}
	}
	if _, err := NewFile(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("NewFile of a missing directory: no error")
	}
}

func TestChain(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GBB_A": "from-env", "B": "plain"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c := Chain{Env{Prefix: "GBB_", Lookup: lookup}, Env{Lookup: lookup}}
	for name, want := range map[string]string{"A": "from-env", "B": "plain"} {
		if got, err := c.Get(name); err != nil || got != want {
			t.Errorf("Get(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := c.Get("C"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(C) error = %v; want ErrNotFound", err)
	}
}
