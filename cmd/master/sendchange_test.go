package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gbb-ci/gbb/internal/teststore"
	"github.com/gbb-ci/gbb/pkg/changesource/hooks"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web"
)

// newHookServer serves the web side of a master on a real store, with the
// base change hook enabled with secret.
func newHookServer(t *testing.T, secret string) (*store.DB, *httptest.Server) {
	t.Helper()
	db := teststore.Open(t)
	srv := httptest.NewServer(web.New(web.Config{
		Store: db, Changes: hooks.StoreSink{DB: db}, ChangeHooks: map[string]hooks.Config{"base": {Secret: secret}},
	}).Handler())
	t.Cleanup(srv.Close)
	return db, srv
}

func TestSendchange(t *testing.T) {
	t.Parallel()
	db, srv := newHookServer(t, "s3cret")
	logfile := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(logfile, []byte("from a file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	args := []string{
		"--master", srv.URL, "--auth", "s3cret", "-W", "Jane <jane@example.org>",
		"-R", "https://example.org/r.git", "-P", "proj", "-b", "main", "-r", "abc123", "-C", "hotfix",
		"-s", "app", "--revlink", "https://example.org/r/abc123", "-c", "fix the thing",
		"--when", "1700000000", "-p", "ticket:42", "--property", "url:http://x:8080/",
		"a.go", "dir/b.go",
	}
	if err := runSendchange(t.Context(), args, nil, &out, http.DefaultClient); err != nil {
		t.Fatalf("sendchange: %v", err)
	}
	if out.String() != "1\n" {
		t.Errorf("output %q, want the change id", out.String())
	}
	got, err := db.Change(1)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Change{
		ID: 1, Author: "Jane <jane@example.org>", Comments: "fix the thing", Branch: "main", Revision: "abc123",
		Repository: "https://example.org/r.git", Project: "proj", Codebase: "app", Category: "hotfix",
		RevLink: "https://example.org/r/abc123", When: time.Unix(1700000000, 0), Files: []string{"a.go", "dir/b.go"},
		Properties: store.Properties{
			"ticket": {Value: json.RawMessage(`"42"`), Source: "Change"},
			"url":    {Value: json.RawMessage(`"http://x:8080/"`), Source: "Change"},
		},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(store.Change{}, "SourceStampID")); diff != "" {
		t.Errorf("change (-want +got):\n%s", diff)
	}

	// Comments from a file and from stdin.
	out.Reset()
	if err := runSendchange(t.Context(), []string{"-m", srv.URL + "/", "-a", "s3cret", "-W", "bob", "-F", logfile}, nil, &out, http.DefaultClient); err != nil {
		t.Fatal(err)
	}
	if err := runSendchange(t.Context(), []string{"-m", srv.URL, "-a", "s3cret", "--who", "bob", "--logfile", "-"}, strings.NewReader("from stdin"), &out, http.DefaultClient); err != nil {
		t.Fatal(err)
	}
	if out.String() != "2\n3\n" {
		t.Errorf("output %q", out.String())
	}
	for id, comments := range map[int64]string{2: "from a file\n", 3: "from stdin"} {
		if c, _ := db.Change(id); c.Comments != comments || !c.When.After(time.Unix(1700000000, 0)) {
			t.Errorf("change %d: comments %q, when %v", id, c.Comments, c.When)
		}
	}
}

func TestSendchangeErrors(t *testing.T) {
	t.Parallel()
	db, srv := newHookServer(t, "s3cret")
	_, noBase := newHookServer(t, "")
	tests := []struct {
		name string
		args []string
		code int // exit code; 1 is a plain error
		msg  string
	}{
		{"no who", []string{"-m", srv.URL}, 2, "you must give the change's author (--who)"},
		{"bad when", []string{"-m", srv.URL, "-W", "a", "--when", "soon"}, 2, `--when must be unix seconds, not "soon"`},
		{"bad property", []string{"-m", srv.URL, "-W", "a", "-p", "novalue"}, 2, `property "novalue" is not NAME:VALUE`},
		{"comments twice", []string{"-m", srv.URL, "-W", "a", "-c", "x", "-F", "-"}, 2, "give --comments or --logfile, not both"},
		{"wrong secret", []string{"-m", srv.URL, "-W", "a", "-a", "nope"}, 1, "403 Forbidden: wrong bearer token in Authorization"},
		{"no secret", []string{"-m", srv.URL, "-W", "a"}, 1, "403 Forbidden: missing bearer token in Authorization"},
		{"base not enabled", []string{"-m", noBase.URL + "/sub/", "-W", "a"}, 1, "404 Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := runSendchange(t.Context(), tt.args, strings.NewReader(""), &bytes.Buffer{}, http.DefaultClient)
			if err == nil {
				t.Fatal("no error")
			}
			code := 1
			if ee, ok := err.(*exitError); ok {
				code = ee.code
			}
			if code != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v (exit %d), want %q (exit %d)", err, code, tt.msg, tt.code)
			}
		})
	}
	if cs, _ := db.Changes(store.ChangeFilter{}); len(cs) != 0 {
		t.Errorf("%d changes stored", len(cs))
	}
}
