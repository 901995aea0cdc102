package store

import (
	"context"
	"os"
	"strings"
	"testing"
)

// The redaction itself is pkg/config's RedactDBURL, tested there; these
// check that the store's messages go through it.

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

// TestCopyDBSameStoreHidesPassword: copy-db's refusal names both stores,
// without their secrets.
func TestCopyDBSameStoreHidesPassword(t *testing.T) {
	from := "postgresql://gbb:s3cret@db:5432/gbb?sslmode=verify-full&sslpassword=s3cret-key"
	to := "postgres://gbb@db:5432/gbb?password=s3cret"
	_, err := CopyDB(context.Background(), from, to, CopyOptions{})
	if err == nil || !strings.Contains(err.Error(), "same store") {
		t.Fatalf("CopyDB(%q, %q) = %v, want a same-store refusal", from, to, err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows a secret: %v", err)
	}
	if !strings.Contains(err.Error(), "xxxxx") {
		t.Errorf("the error shows no redacted URL: %v", err)
	}
}
