package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testHash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"

func TestAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("# users\nalice:"+testHash+"\n\nbob:"+testHash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, src string
		auth      Auth
		authz     Authz
	}{
		{"none", ``, Auth{}, Authz{}},
		{"www without auth", "[www]\nport = 8010\n", Auth{}, Authz{}},
		{"users", `
[www.auth]
type = "users"
session_timeout = "1h"
[[www.auth.users]]
username = "alice"
password_hash = "` + testHash + `"
groups = ["admins"]
[[www.auth.tokens]]
name = "bot"
token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
[www.authz]
allow_anonymous_view = false
[[www.authz.roles]]
role = "releasers"
users = ["alice"]
[[www.authz.rules]]
actions = ["force", "stop"]
builders = ["rel-*"]
roles = ["releasers", "owner"]
[[www.authz.rules]]
actions = ["*"]
roles = ["admins"]
[[www.auth.tokens]]
name = "ci"
token_sha256 = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
groups = ["admins"]
actions = ["force", "stop"]
builders = ["rel-*"]
[[www.auth.tokens]]
name = "reader"
token_sha256 = "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13"
actions = []
`, Auth{
			Type: "users", SessionTimeout: time.Hour, Line: 2,
			Users: []User{{Username: "alice", PasswordHash: testHash, Groups: []string{"admins"}, Line: 5}},
			Tokens: []Token{
				{Name: "bot", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Line: 9},
				{Name: "ci", SHA256: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752", Groups: []string{"admins"},
					Actions: []string{"force", "stop"}, Builders: []string{"rel-*"}, Line: 24},
				{Name: "reader", SHA256: "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13", Actions: []string{}, Line: 30},
			},
		}, Authz{
			NoAnonymousView: true,
			Roles:           []RoleMap{{Role: "releasers", Users: []string{"alice"}, Line: 14}},
			Rules: []Rule{
				{Actions: []string{"force", "stop"}, Builders: []string{"rel-*"}, Roles: []string{"releasers", "owner"}, Line: 17},
				{Actions: []string{"*"}, Roles: []string{"admins"}, Line: 21},
			},
		}},
		{"htpasswd", `
[www.auth]
type = "htpasswd"
file = "` + htpasswd + `"
`, Auth{
			Type: "htpasswd", File: htpasswd, SessionTimeout: DefaultSessionTimeout, Line: 2,
			Users: []User{{Username: "alice", PasswordHash: testHash, Line: 2}, {Username: "bob", PasswordHash: testHash, Line: 4}},
		}, Authz{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustParse(t, "master.toml", tc.src)
			if diff := cmp.Diff(tc.auth, cfg.WWW.Auth); diff != "" {
				t.Errorf("auth (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.authz, cfg.WWW.Authz); diff != "" {
				t.Errorf("authz (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	md5 := write("md5", "carol:$apr1$abcdefgh$0123456789012345678901\n")
	tests := []struct {
		name, src string
		want      []string
	}{
		{"bad type", "[www.auth]\ntype = \"ldap\"\n", []string{
			`master.toml:2: www.auth.type: unknown auth type "ldap" (want "users", "htpasswd")`,
		}},
		{"users", `[www.auth]
type = "users"
file = "x"
[[www.auth.users]]
username = "a:b"
password_hash = "secret"
[[www.auth.users]]
password_hash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
groups = "admins"
[[www.auth.tokens]]
name = "bot"
token_sha256 = "abc"
actions = ["force", "fly"]
builders = []
`, []string{
			`master.toml:3: www.auth.file: only for type = "htpasswd"`,
			`master.toml:5: www.auth.users[0].username: must not contain ':'`,
			`master.toml:6: www.auth.users[0].password_hash: not a bcrypt hash (make one with ` + "`gbb-master hashpw`" + `)`,
			`master.toml:7: www.auth.users[1].username: required`,
			`master.toml:9: www.auth.users[1].groups: expected an array of strings, got string`,
			`master.toml:12: www.auth.tokens[0].token_sha256: must be 64 lowercase hex digits, as sha256sum prints`,
			`master.toml:13: www.auth.tokens[0].actions: unknown action "fly" (want force, stop, rebuild, cancel, pause, unpause, graceful, kill, enable or *)`,
			`master.toml:14: www.auth.tokens[0].builders: empty: leave builders out for a token that may act on any builder`,
		}},
		{"htpasswd md5", "[www.auth]\ntype = \"htpasswd\"\nfile = \"" + md5 + "\"\n", []string{
			`master.toml:3: www.auth.file: ` + md5 + `:1: user "carol": an MD5 hash, not bcrypt; only bcrypt entries are accepted (htpasswd -B, or ` + "`gbb-master hashpw`)",
		}},
		{"htpasswd missing", "[www.auth]\ntype = \"htpasswd\"\nfile = \"nope\"\n", []string{
			`master.toml:3: www.auth.file: read nope: no such file or directory`,
		}},
		{"rules", `[www.auth]
type = "users"
[[www.auth.users]]
username = "a"
password_hash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
[www.authz]
allow_anonymous_view = "no"
[[www.authz.roles]]
role = "x"
[[www.authz.rules]]
actions = ["force", "explode"]
builders = ["[a"]
[[www.authz.rules]]
roles = []
`, []string{
			`master.toml:7: www.authz.allow_anonymous_view: expected a boolean, got string`,
			`master.toml:8: www.authz.roles[0].users: give users or groups`,
			`master.toml:10: www.authz.rules[0].roles: required`,
			`master.toml:11: www.authz.rules[0].actions: unknown action "explode" (want force, stop, rebuild, cancel, pause, unpause, graceful, kill, enable, metrics or *)`,
			`master.toml:13: www.authz.rules[1].actions: required`,
		}},
		{"log format", "title = \"x\"\nlog_format = \"xml\"\n[www]\nmetrics = \"no\"\n", []string{
			`master.toml:2: log_format: unknown log format "xml" (want "text" or "json")`,
			`master.toml:4: www.metrics: expected a boolean, got string`,
		}},
		{"authz without auth", "[www.authz]\nallow_anonymous_view = false\n", []string{
			`master.toml:1: www.authz.rules: [www.authz] needs [www.auth]: without a login everyone is anonymous`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("master.toml", []byte(tc.src))
			var msgs []string
			for _, e := range Errors(err) {
				msgs = append(msgs, e.Error())
			}
			if diff := cmp.Diff(tc.want, msgs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
