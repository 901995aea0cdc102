package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
)

// TestTokenTable: what new-token prints for master.toml loads, holds the
// token's SHA-256 and not the token, and keeps its limits; tokens differ.
func TestTokenTable(t *testing.T) {
	t.Parallel()
	tok := randomToken()
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) != len(tokenPrefix)+43 || tok == randomToken() {
		t.Fatalf("token %q: want %s and 43 random characters, new each time", tok, tokenPrefix)
	}
	for _, want := range []config.Token{
		{Name: "ci \"bot\"", SHA256: hashToken(tok)},
		{Name: "deploy", SHA256: hashToken(tok), Groups: []string{"ops"}, Actions: []string{"force", "stop"}, Builders: []string{"deploy-*"}},
		{Name: "reader", SHA256: hashToken(tok), Actions: []string{}},
	} {
		block := tokenTable(want)
		if strings.Contains(block, tok) {
			t.Errorf("the table holds the token itself:\n%s", block)
		}
		cfg, err := config.Parse("master.toml", []byte("[www.auth]\ntype = \"users\"\n"+block))
		if err != nil {
			t.Fatalf("%s\n%v", block, err)
		}
		got := cfg.WWW.Auth.Tokens[0]
		got.Line = 0
		if got.Name != want.Name || got.SHA256 != want.SHA256 || !slices.Equal(got.Groups, want.Groups) ||
			!slices.Equal(got.Actions, want.Actions) || (got.Actions == nil) != (want.Actions == nil) || !slices.Equal(got.Builders, want.Builders) {
			t.Errorf("table\n%s\nloads as %+v, want %+v", block, got, want)
		}
	}
	// sha256sum's answer for "test".
	if got := hashToken("test"); got != "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
		t.Errorf("hashToken(test) = %s", got)
	}
}

// TestHashTokenFrom: hash-token hashes the first line of its input, as
// the master hashes the bearer token, and refuses an empty one.
func TestHashTokenFrom(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func(data string) *os.File {
		p := filepath.Join(dir, "tok")
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	if h, err := hashTokenFrom(open("test\n")); err != nil || h != hashToken("test") {
		t.Errorf("hash-token of test: %q, %v", h, err)
	}
	if _, err := hashTokenFrom(open("\n")); err == nil {
		t.Error("hash-token took an empty token")
	}
}
