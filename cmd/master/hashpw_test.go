package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/pkg/config"
)

func TestHashPassword(t *testing.T) {
	t.Parallel()
	h, err := hashPassword("s3cret", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")); err != nil {
		t.Errorf("hash does not verify: %v", err)
	}
	// What it prints is what [[www.auth.users]] takes.
	src := "[www.auth]\ntype = \"users\"\n[[www.auth.users]]\nusername = \"a\"\npassword_hash = \"" + h + "\"\n"
	if _, err := config.Parse("master.toml", []byte(src)); err != nil {
		t.Errorf("config refuses the hash: %v", err)
	}
	if _, err := hashPassword("", bcrypt.MinCost); err == nil {
		t.Error("an empty password was hashed")
	}
}

func TestReadPasswordPipe(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte("hunter2\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pw, err := readPassword(f, nil)
	if err != nil || pw != "hunter2" {
		t.Errorf("readPassword = %q, %v; want hunter2", pw, err)
	}
}
