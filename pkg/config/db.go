package config

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"net/url"
	"strings"
)

// db reads [db]: url, heartbeat_interval and master_timeout.
func (d *decoder) db(t *table, c *DB) {
	if s, ok := t.str("url"); ok {
		if err := checkDBURL(s); err != "" {
			t.errorf("url", "%s", err)
		} else {
			c.URL = s
		}
	}
	if v, ok := t.duration("heartbeat_interval"); ok {
		if v.Duration <= 0 {
			t.errorf("heartbeat_interval", "must be positive")
		} else {
			c.HeartbeatInterval = v
		}
	}
	if v, ok := t.duration("master_timeout"); ok {
		if v.Duration <= 0 {
			t.errorf("master_timeout", "must be positive")
		} else {
			c.MasterTimeout = v
		}
	}
	// A master is presumed dead only after it missed several heartbeats:
	// one late write (a slow disk, a busy database) must not cost its
	// builds.
	if beat, timeout := c.Heartbeat(), c.Timeout(); timeout < 3*beat {
		key := "master_timeout"
		if !t.has(key) {
			key = "heartbeat_interval"
		}
		t.errorf(key, "master_timeout (%s) must be at least 3 times heartbeat_interval (%s), so that a master missing one heartbeat is not presumed dead", timeout, beat)
	}
}

// checkDBURL returns why s is not a store URL gbb opens, or "". The message
// never holds the URL's password.
func checkDBURL(s string) string {
	if IsPostgresURL(s) {
		u, err := url.Parse(s)
		if err != nil {
			// url's error quotes the URL, password and all.
			return "not a PostgreSQL URL that parses: write it postgresql://USER@HOST:PORT/DATABASE?sslmode=… (special characters in the password %-encoded)"
		}
		if u.Opaque != "" {
			return `a PostgreSQL URL must start with "postgresql://" (two slashes)`
		}
		if _, err := url.ParseQuery(u.RawQuery); err != nil {
			return "the PostgreSQL URL's parameters (after ?) do not parse"
		}
		if strings.Trim(u.Path, "/") == "" && !u.Query().Has("dbname") {
			return "the PostgreSQL URL names no database: postgresql://USER@HOST:PORT/DATABASE"
		}
		// What the store's driver refuses at start (sslmode=bogus,
		// pool_max_conns=abc), refused here. Its parse error quotes the
		// URL; the reason it wraps does not.
		if _, err := pgxpool.ParseConfig(s); err != nil {
			why := "its parameters are not valid"
			var pe *pgconn.ParseConfigError
			if errors.As(err, &pe) {
				// "cannot parse `URL`: reason": the URL (which pgx
				// redacts anyway) is left out.
				if _, after, ok := strings.Cut(pe.Error(), "`: "); ok {
					why = after
				}
			}
			return "the PostgreSQL URL is not valid: " + why
		}
		return ""
	}
	scheme, path, found := strings.Cut(s, ":")
	switch {
	case !found || scheme != "bbolt":
		// Only a plain scheme is shown: the rest (a libpq "host=…
		// password=…" string, "postgresql:user:pw@host/db") may hold a
		// password.
		what := "(the value is not shown: it may hold a password)"
		if found && scheme != "" && strings.Trim(scheme, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-") == "" {
			what = `"` + scheme + `:…"`
			if strings.HasPrefix(path, "//") {
				what = `"` + scheme + `://…"`
			}
		}
		return "unsupported database " + what + `: write "bbolt:PATH", or PostgreSQL as "postgresql://USER@HOST/DATABASE" (not a libpq "host=… dbname=…" string)`
	case path == "":
		return `missing the path after "bbolt:"`
	}
	return ""
}
