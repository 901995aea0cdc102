package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDBKeys: [db] takes a bbolt path or a PostgreSQL URL, and the
// heartbeat keys with their defaults.
func TestDBKeys(t *testing.T) {
	t.Parallel()
	type got struct {
		URL                string
		Bolt               bool
		Heartbeat, Timeout time.Duration
	}
	tests := []struct {
		name, src string
		want      got
	}{
		{"default", ``, got{"bbolt:state.db", true, 5 * time.Second, time.Minute}},
		{"postgresql", `[db]
url = "postgresql://gbb:s3cret@db.example.org:5432/gbb?sslmode=verify-full"`,
			got{"postgresql://gbb:s3cret@db.example.org:5432/gbb?sslmode=verify-full", false, 5 * time.Second, time.Minute}},
		{"postgres, a unix socket", `[db]
url = "postgres:///gbb?host=/var/run/postgresql"`,
			got{"postgres:///gbb?host=/var/run/postgresql", false, 5 * time.Second, time.Minute}},
		{"heartbeat keys", `[db]
url = "postgresql://gbb@db/gbb"
heartbeat_interval = "2s"
master_timeout = "30s"`, got{"postgresql://gbb@db/gbb", false, 2 * time.Second, 30 * time.Second}},
		{"heartbeat keys in seconds", `[db]
heartbeat_interval = 10
master_timeout = 120`, got{"bbolt:state.db", true, 10 * time.Second, 2 * time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse("master.toml", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			g := got{c.DB.URL, c.DB.IsBolt(), c.DB.Heartbeat(), c.DB.Timeout()}
			if diff := cmp.Diff(tc.want, g); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestDBErrors: a bad [db] is an error naming file, line and key, and
// never quotes a password.
func TestDBErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		want      []string
	}{
		{"no database", `[db]
url = "postgresql://gbb:s3cret@db.example.org:5432"`,
			[]string{`master.toml:2: db.url: the PostgreSQL URL names no database: postgresql://USER@HOST:PORT/DATABASE`}},
		{"does not parse", `[db]
url = "postgresql://gbb:s3cr%t@db/gbb"`,
			[]string{`master.toml:2: db.url: not a PostgreSQL URL that parses: write it postgresql://USER@HOST:PORT/DATABASE?sslmode=… (special characters in the password %-encoded)`}},
		{"misspelt scheme", `[db]
url = "postgress://gbb:s3cret@db/gbb"`,
			[]string{`master.toml:2: db.url: unsupported database "postgress://…": write "bbolt:PATH", or PostgreSQL as "postgresql://USER@HOST/DATABASE" (not a libpq "host=… dbname=…" string)`}},
		{"bad sslmode", `[db]
url = "postgresql://gbb:s3cret@db/gbb?sslmode=bogus"`,
			[]string{`master.toml:2: db.url: the PostgreSQL URL is not valid: failed to configure TLS (sslmode is invalid)`}},
		{"bad pool size", `[db]
url = "postgresql://gbb:s3cret@db/gbb?pool_max_conns=abc"`,
			[]string{`master.toml:2: db.url: the PostgreSQL URL is not valid: cannot parse pool_max_conns (strconv.ParseInt: parsing "abc": invalid syntax)`}},
		{"zero heartbeat", `[db]
heartbeat_interval = "0s"`,
			[]string{`master.toml:2: db.heartbeat_interval: must be positive`}},
		{"negative timeout", `[db]
master_timeout = "-1s"`,
			[]string{`master.toml:2: db.master_timeout: must not be negative`}},
		{"timeout too short", `[db]
heartbeat_interval = "5s"
master_timeout = "10s"`,
			[]string{`master.toml:3: db.master_timeout: master_timeout (10s) must be at least 3 times heartbeat_interval (5s), so that a master missing one heartbeat is not presumed dead`}},
		{"heartbeat too long for the default timeout", `[db]
heartbeat_interval = "30s"`,
			[]string{`master.toml:2: db.heartbeat_interval: master_timeout (1m0s) must be at least 3 times heartbeat_interval (30s), so that a master missing one heartbeat is not presumed dead`}},
		{"unknown key", `[db]
heartbeat = "5s"`,
			[]string{`master.toml:2: db.heartbeat: unknown key`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("master.toml", []byte(tc.src))
			var got []string
			for _, e := range Errors(err) {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// TestRedactDBURL: what logs and pages may show of a store URL.
func TestRedactDBURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"bbolt:state.db": "bbolt:state.db",
		"postgresql://gbb:s3cret@db:5432/gbb?sslmode=require":                           "postgresql://gbb:xxxxx@db:5432/gbb?sslmode=require",
		"postgres://gbb@db/gbb":                                                         "postgres://gbb@db/gbb",
		"postgresql://db/gbb?user=gbb&password=s3cret":                                  "postgresql://db/gbb?password=xxxxx&user=gbb",
		"postgresql://gbb:s3cr%t@db/gbb":                                                "postgresql://(a URL that does not parse)",
		"postgres://gbb:s3cr%40t@db.example:5432/gbb?sslmode=require":                   "postgres://gbb:xxxxx@db.example:5432/gbb?sslmode=require",
		"postgresql://gbb@db/gbb?password=s3cr%40t&sslmode=disable":                     "postgresql://gbb@db/gbb?password=xxxxx&sslmode=disable",
		"postgres://gbb:s3cr@t@db/gbb":                                                  "postgres://gbb:xxxxx@db/gbb",
		"postgresql://gbb@db/gbb?sslmode=verify-full&sslpassword=s3cret-key-passphrase": "postgresql://gbb@db/gbb?sslmode=verify-full&sslpassword=xxxxx",
	} {
		if got := RedactDBURL(in); got != want {
			t.Errorf("RedactDBURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDBMasterFiles: the store file is one of the master's own files on
// bbolt only; a PostgreSQL URL names no file, and nothing named like it in
// the basedir is guarded.
func TestDBMasterFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url   string
		store bool
	}{{"bbolt:state.db", true}, {"postgresql://gbb@db/gbb", false}} {
		c, err := Parse("master.toml", []byte("[db]\nurl = \""+tc.url+"\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range c.MasterFiles("/m") {
			if f.What == "the master's store" {
				found = true
				if f.Path != "/m/state.db" {
					t.Errorf("%s: store file %q", tc.url, f.Path)
				}
			}
			if f.Path == "" || f.Path == "/m" {
				t.Errorf("%s: a master file with path %q (%s)", tc.url, f.Path, f.What)
			}
		}
		if found != tc.store {
			t.Errorf("%s: the store among the master's files = %v, want %v", tc.url, found, tc.store)
		}
		if got := c.DB.BoltPath("/m"); (got != "") != tc.store {
			t.Errorf("%s: BoltPath = %q", tc.url, got)
		}
	}
}

// TestDBDumpRoundTrip: checkconfig --dump keeps [db] as written, password
// too (the dump is the config), and loads to the same values.
func TestDBDumpRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.toml")
	src := `[db]
url = "postgresql://gbb:s3cret@db.example.org/gbb?sslmode=verify-full"
heartbeat_interval = "3s"
master_timeout = "45s"
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Dump(path)
	if err != nil {
		t.Fatal(err)
	}
	dumped := filepath.Join(dir, "dumped.toml")
	if err := os.WriteFile(dumped, out, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dumped)
	if err != nil {
		t.Fatalf("the dump does not load: %v\n%s", err, out)
	}
	if diff := cmp.Diff(want.DB, got.DB); diff != "" {
		t.Errorf("[db] after the round trip (-want +got):\n%s\n%s", diff, out)
	}
}

// TestDocsPostgreSQL: the [db] of docs/postgresql.md loads, with the
// defaults it says.
func TestDocsPostgreSQL(t *testing.T) {
	t.Parallel()
	page, err := os.ReadFile(filepath.Join("..", "..", "docs", "postgresql.md"))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, block := range strings.Split(string(page), "```toml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if !strings.Contains(block, "[db]") {
			continue
		}
		found++
		c, err := Parse("master.toml", []byte(strings.ReplaceAll(block, "#heartbeat_interval", "heartbeat_interval")))
		if err != nil {
			t.Fatalf("docs/postgresql.md's [db] does not load: %v\n%s", err, block)
		}
		c2, err := Parse("master.toml", []byte(block))
		if err != nil {
			t.Fatal(err)
		}
		if c.DB.IsBolt() || c.DB.Heartbeat() != DefaultHeartbeatInterval || c2.DB.Timeout() != DefaultMasterTimeout ||
			!strings.Contains(block, `"`+DefaultHeartbeatInterval.String()+`"`) || !strings.Contains(block, `"60s"`) {
			t.Errorf("docs/postgresql.md's [db] says other defaults than the code's: %+v\n%s", c.DB, block)
		}
	}
	if found != 1 {
		t.Errorf("docs/postgresql.md has %d [db] examples, want 1", found)
	}
}

// TestDBURLPasswordNeverEchoed: a [db] url that is not a URL gbb takes
// may still hold a password (a libpq keyword string, a URL without its
// two slashes): the error names only its scheme.
func TestDBURLPasswordNeverEchoed(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"host=127.0.0.1 port=5432 user=gbb password=TOPSECRET23 dbname=gbb",
		"postgresql:gbb:TOPSECRET22@x/gbb",
		"mysql://gbb:TOPSECRET21@x/gbb",
	} {
		_, err := Parse("master.toml", []byte("[db]\nurl = \""+u+"\"\n"))
		if err == nil {
			t.Errorf("%q accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "TOPSECRET") {
			t.Errorf("%q: the error shows the password: %v", u, err)
		}
	}
}

// TestDBURLPasswordReadable: a master.toml that others may read and whose
// [db] url holds a password is warned about, as inline worker passwords.
func TestDBURLPasswordReadable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		warn bool
	}{
		{"postgresql://gbb:s3cret@db/gbb", true},
		{"postgresql://gbb@db/gbb?password=s3cret", true},
		{"postgresql://gbb@db/gbb?sslpassword=s3cret", true},
		{"postgresql://gbb@db/gbb", false},
	} {
		path := filepath.Join(t.TempDir(), "master.toml")
		if err := os.WriteFile(path, []byte("[db]\nurl = \""+tc.url+"\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		w := readableSecrets(path)
		if got := strings.Contains(w, "db.url"); got != tc.warn {
			t.Errorf("%s: warning %q, want one about db.url: %v", tc.url, w, tc.warn)
		}
		if strings.Contains(w, "s3cret") {
			t.Errorf("the warning shows the password: %s", w)
		}
	}
}
