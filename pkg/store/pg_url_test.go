package store

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, raw := range []string{
		"postgres://gbb:s3cr%40t@db.example:5432/gbb?sslmode=require",
		"postgresql://gbb@db/gbb?password=s3cr%40t&sslmode=disable",
		"postgres://gbb:s3cr@t@db/gbb",
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
