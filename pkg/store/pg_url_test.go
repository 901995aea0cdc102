package store

import (
	"os"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, raw := range []string{
		"postgres://gbb:s3cr%40t@db.example:5432/gbb?sslmode=require",
		"postgresql://gbb@db/gbb?password=s3cr%40t&sslmode=disable",
		"postgres://gbb:s3cr@t@db/gbb",
		"postgresql://gbb@db/gbb?sslmode=verify-full&sslpassword=s3cret-key-passphrase",
	} {
		got := redactURL(raw)
		if strings.Contains(got, "s3cr") {
			t.Errorf("redactURL(%q) = %q: the password shows", raw, got)
		}
		if !strings.Contains(got, "xxxxx") && !strings.Contains(got, "unparsable") {
			t.Errorf("redactURL(%q) = %q: no sign of the redaction", raw, got)
		}
	}
}

func TestOpenPGBadURLHidesPassword(t *testing.T) {
	_, err := OpenPG("postgres://gbb:s3cret@db:notaport/gbb", Options{})
	if err == nil {
		t.Fatal("a bad port was accepted")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the password: %v", err)
	}
}

// TestOpenURLRefusesKeywordStrings: a libpq "host=… dbname=…" string is
// refused, not taken for a bbolt file's name, and not echoed.
func TestOpenURLRefusesKeywordStrings(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenURL("host=localhost port=5432 user=gbb password=s3cret dbname=gbb", dir, Options{})
	if err == nil {
		t.Fatal("a keyword string was opened (as a bbolt file)")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows the password: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files made in %s: %v", dir, ents)
	}
}
