package config

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultSessionTimeout is how long a login lasts when
// [www.auth] session_timeout is not set.
const DefaultSessionTimeout = 24 * time.Hour

// AuthzActions are the actions a [[www.authz.rules]] table may name, as
// buildbot's endpoint matchers: force, stop and rebuild a build, cancel a
// build request, and the worker actions (graceful is buildbot's "stop" on a
// worker; a worker's JSON-RPC stop must be allowed by the rules for both
// graceful and stop), and enable, buildbot's enabling and disabling of a
// scheduler. "*" names them all.
var AuthzActions = []string{"force", "stop", "rebuild", "cancel", "pause", "unpause", "graceful", "kill", "enable"}

// WorkerActions are the AuthzActions done to a worker rather than to a
// builder's build.
var WorkerActions = []string{"pause", "unpause", "graceful", "kill"}

// SchedulerActions are the AuthzActions done to a scheduler: like the
// worker actions, they act on no builder, so a rule with builders names
// none of them.
var SchedulerActions = []string{"enable"}

// ViewActions are what a [[www.authz.rules]] table may name besides the
// AuthzActions: things to see rather than do. "metrics" is /metrics: a
// rule naming it (by name; "*" does not) lets only its roles read the
// metrics; with none, whoever may see the pages may read them. They are no
// token's limit: a read-only token reads what its roles may see.
var ViewActions = []string{"metrics"}

// NewActions are the AuthzActions added in this version: rules written
// before them named every action there was, so when [[www.authz.rules]]
// exist, one of these is allowed only to those a rule names it for (an
// older action no rule names stays open to every logged-in user). An
// upgrade widens no one's rights.
var NewActions = []string{"enable"}

// RoleOwner is the role a user has on the builds and requests they forced,
// as buildbot's RolesFromOwner.
const RoleOwner = "owner"

// Auth is [www.auth]: who may log in to the web UI and the API. With no
// [www.auth] table (Type "") there is no login and everyone may do
// everything, as in buildbot.
type Auth struct {
	// Type is type: "users" (the [[www.auth.users]] tables) or "htpasswd"
	// (the bcrypt entries of File); "" when there is no [www.auth].
	Type string
	// Users are the [[www.auth.users]] tables, or File's entries (without
	// groups: give htpasswd users roles with [[www.authz.roles]]).
	Users []User
	// File is file, the htpasswd file of type "htpasswd": read at load
	// time, relative to the config file's directory. Only bcrypt entries
	// (htpasswd -B) are accepted.
	File string
	// Tokens are the [[www.auth.tokens]] tables: API clients sending
	// "Authorization: Bearer TOKEN".
	Tokens []Token
	// SessionTimeout is session_timeout: how long a login lasts; default
	// DefaultSessionTimeout (24h).
	SessionTimeout time.Duration
	Line           int // line of the [www.auth] table
}

// Enabled reports whether [www.auth] is configured.
func (a Auth) Enabled() bool { return a.Type != "" }

// User is one [[www.auth.users]] table, or one entry of an htpasswd file.
type User struct {
	Username     string   // username; required, unique, no ":"
	PasswordHash string   // password_hash: a bcrypt hash, as `gbb-master hashpw` prints; required
	Groups       []string // groups: the user's groups, which are also roles
	Line         int      // line of the table, or of the htpasswd entry
}

// Token is one [[www.auth.tokens]] table: an API token. Tokens should be
// long random strings, so a SHA-256 of them is stored rather than a slow
// bcrypt hash that every API call would have to check.
type Token struct {
	Name   string   // name: the user name the token acts as; required, unique among tokens
	SHA256 string   // token_sha256: the lowercase hex SHA-256 of the token, as `gbb-master new-token` and `hash-token` print (or printf %s TOKEN | sha256sum); required
	Groups []string // groups: the token's groups, which are also roles
	// Actions is actions: the only AuthzActions the token may do ("*" for
	// all), on top of what [www.authz] allows its name and groups. Nil (no
	// actions key, the default) means no limit beyond [www.authz]; empty
	// (actions = []) means none: a read-only token.
	Actions []string
	// Builders is builders: shell patterns (as a rule's) of the only
	// builders the token may act on; a token limited to builders may do
	// no worker action. Empty (the default) means any builder.
	Builders []string
	Line     int // line of the table
}

// Limited reports whether the token is limited to some actions or
// builders.
func (t Token) Limited() bool { return t.Actions != nil || t.Builders != nil }

// Authz is [www.authz]: what each role may do.
type Authz struct {
	// NoAnonymousView is allow_anonymous_view = false: a visitor who is
	// not logged in is sent to the login page (or answered 401 on /api,
	// /sse and /ws). Zero (allow_anonymous_view = true, the default) lets
	// anonymous visitors see everything.
	NoAnonymousView bool
	// Roles are the [[www.authz.roles]] tables, which give roles to users
	// by name or by group (buildbot's RolesFromUsername and
	// RolesFromGroups). A user's groups are roles too.
	Roles []RoleMap
	// Rules are the [[www.authz.rules]] tables, buildbot's allowRules: the
	// first rule that names an action (and its builder) decides who may do
	// it. An action no rule names is allowed to every logged-in user and
	// refused to anonymous ones, except one of NewActions, which is then
	// refused to everyone; with no rules, every logged-in user may do
	// anything, and with no [www.auth], everything is allowed.
	Rules []Rule
}

// RoleMap is one [[www.authz.roles]] table.
type RoleMap struct {
	Role   string   // role; required
	Users  []string // users: user names given the role
	Groups []string // groups: groups whose members get the role
	Line   int
}

// Rule is one [[www.authz.rules]] table.
type Rule struct {
	// Actions is actions: some of AuthzActions, or "*" for all; required.
	Actions []string
	// Builders is builders: shell patterns of the builders the rule is
	// about, matched as buildbot's fnmatch ("*" and "?" match any
	// character, "/" included; "[...]" and "[!...]" classes); empty (the default) means every builder. A rule with
	// builders matches no worker action.
	Builders []string
	// Roles is roles: the roles allowed; RoleOwner ("owner") allows the
	// user who forced the build; required (an empty array denies all).
	Roles []string
	Line  int
}

// authConfig reads [www.auth] and [www.authz] of the [www] table w.
func (d *decoder) authConfig(w *table, c *WWW) {
	if t, ok := w.sub("auth"); ok {
		c.Auth = d.auth(t)
	}
	if t, ok := w.sub("authz"); ok {
		c.Authz = d.authz(t)
		if !c.Auth.Enabled() && (len(c.Authz.Rules) > 0 || c.Authz.NoAnonymousView) {
			t.errorf("rules", "[www.authz] needs [www.auth]: without a login everyone is anonymous")
		}
	}
}

func (d *decoder) auth(t *table) Auth {
	a := Auth{Line: t.line(), SessionTimeout: DefaultSessionTimeout}
	typ, _ := t.oneOf("type", "auth type", "users", "htpasswd")
	a.Type = typ
	if a.Type == "" {
		a.Type = "invalid" // the error is reported; keep auth on
	}
	if x, ok := t.duration("session_timeout"); ok {
		if x.Duration == 0 {
			t.errorf("session_timeout", "must be positive")
		} else {
			a.SessionTimeout = x.Duration
		}
	}
	seen := map[string]int{}
	switch typ {
	case "users":
		if t.has("file") {
			t.ignore("file")
			t.errorf("file", `only for type = "htpasswd"`)
		}
		users := t.tables("users")
		if len(users) == 0 && !t.has("tokens") {
			t.errorf("users", `type = "users" needs at least one [[www.auth.users]]`)
		}
		for _, u := range users {
			a.Users = append(a.Users, d.user(u, seen))
		}
	case "htpasswd":
		if t.has("users") {
			t.ignore("users")
			t.errorf("users", `only for type = "users"`)
		}
		file, ok := t.required("file")
		if ok {
			a.File = file
			a.Users = d.htpasswd(t, file)
		}
	default:
		t.ignore("users", "file")
	}
	tokens := map[string]int{}
	for _, tt := range t.tables("tokens") {
		a.Tokens = append(a.Tokens, d.token(tt, tokens))
	}
	t.done()
	return a
}

func (d *decoder) user(t *table, seen map[string]int) User {
	u := User{Line: t.line()}
	if name, ok := t.required("username"); ok {
		switch {
		case strings.ContainsAny(name, ":\n"):
			t.errorf("username", "must not contain ':'")
		case seen[name] != 0:
			t.errorf("username", "duplicate user %q (first at line %d)", name, seen[name])
		default:
			seen[name] = t.d.line(t.path.key("username"))
		}
		u.Username = name
	}
	if h, ok := t.required("password_hash"); ok {
		if err := checkBcrypt(h); err != nil {
			t.errorf("password_hash", "%v (make one with `gbb-master hashpw`)", err)
		}
		u.PasswordHash = h
	}
	u.Groups, _ = t.strings("groups")
	t.done()
	return u
}

func (d *decoder) token(t *table, seen map[string]int) Token {
	tk := Token{Line: t.line(), Name: t.unique(seen, "token")}
	if h, ok := t.required("token_sha256"); ok {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 || strings.ToLower(h) != h {
			t.errorf("token_sha256", "must be 64 lowercase hex digits, as sha256sum prints")
		}
		tk.SHA256 = h
	}
	tk.Groups, _ = t.strings("groups")
	if t.has("actions") {
		tk.Actions, _ = t.strings("actions")
		if tk.Actions == nil {
			tk.Actions = []string{} // a read-only token
		}
		k := t.path.key("actions")
		for i, a := range tk.Actions {
			if a != "*" && !slices.Contains(AuthzActions, a) {
				t.d.errorAt(k.index(i), k, "unknown action %q (want %s or *)", a, strings.Join(AuthzActions, ", "))
			}
		}
	}
	if t.has("builders") {
		tk.Builders, _ = t.strings("builders")
		if len(tk.Builders) == 0 {
			t.errorf("builders", "empty: leave builders out for a token that may act on any builder")
		}
	}
	t.done()
	return tk
}

// htpasswd reads the htpasswd file named by the key file of t. Entries
// are "user:hash" lines; blank lines and lines starting with # are skipped.
func (d *decoder) htpasswd(t *table, file string) []User {
	p := file
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.dir, p)
	}
	d.keyFile(t, "file", p)
	data, err := os.ReadFile(p)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		t.errorf("file", "read %s: %v", p, err)
		return nil
	}
	var users []User
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok || name == "":
			t.errorf("file", "%s:%d: not a user:hash entry", p, n)
			continue
		case seen[name] != 0:
			t.errorf("file", "%s:%d: duplicate user %q (first at line %d)", p, n, name, seen[name])
			continue
		}
		if err := checkBcrypt(hash); err != nil {
			t.errorf("file", "%s:%d: user %q: %v; only bcrypt entries are accepted (htpasswd -B, or `gbb-master hashpw`)", p, n, name, err)
			continue
		}
		seen[name] = n
		users = append(users, User{Username: name, PasswordHash: hash, Line: n})
	}
	if len(users) == 0 && len(d.errs) == 0 {
		t.errorf("file", "%s has no users", p)
	}
	return users
}

// checkBcrypt checks that h looks like a bcrypt hash ($2a$, $2b$ or $2y$,
// a two-digit cost, 53 characters of salt and hash).
func checkBcrypt(h string) error {
	switch {
	case strings.HasPrefix(h, "$apr1$"), strings.HasPrefix(h, "$1$"):
		return errors.New("an MD5 hash, not bcrypt")
	case strings.HasPrefix(h, "{SHA}"):
		return errors.New("a SHA-1 hash, not bcrypt")
	case strings.HasPrefix(h, "$5$"), strings.HasPrefix(h, "$6$"):
		return errors.New("a SHA-crypt hash, not bcrypt")
	case len(h) != 60 || !slices.Contains([]string{"$2a$", "$2b$", "$2y$"}, h[:4]) || h[6] != '$':
		return errors.New("not a bcrypt hash")
	}
	if h[4] < '0' || h[4] > '3' || h[5] < '0' || h[5] > '9' {
		return fmt.Errorf("bad bcrypt cost %q", h[4:6])
	}
	return nil
}

func (d *decoder) authz(t *table) Authz {
	var z Authz
	if b, ok := t.boolean("allow_anonymous_view"); ok {
		z.NoAnonymousView = !b
	}
	for _, rt := range t.tables("roles") {
		rm := RoleMap{Line: rt.line()}
		rm.Role, _ = rt.required("role")
		rm.Users, _ = rt.strings("users")
		rm.Groups, _ = rt.strings("groups")
		if len(rm.Users) == 0 && len(rm.Groups) == 0 {
			rt.errorf("users", "give users or groups")
		}
		rt.done()
		z.Roles = append(z.Roles, rm)
	}
	for _, rt := range t.tables("rules") {
		z.Rules = append(z.Rules, d.rule(rt))
	}
	t.done()
	return z
}

func (d *decoder) rule(t *table) Rule {
	r := Rule{Line: t.line()}
	if !t.has("actions") {
		t.errorf("actions", "required")
	}
	actions, _ := t.strings("actions")
	k := t.path.key("actions")
	for i, a := range actions {
		if a != "*" && !slices.Contains(AuthzActions, a) && !slices.Contains(ViewActions, a) {
			t.d.errorAt(k.index(i), k, "unknown action %q (want %s, %s or *)", a, strings.Join(AuthzActions, ", "), strings.Join(ViewActions, ", "))
		}
	}
	r.Actions = actions
	// Every string is a valid fnmatch pattern (a "[" without "]" stands
	// for itself), as in buildbot.
	r.Builders, _ = t.strings("builders")
	if !t.has("roles") {
		t.errorf("roles", "required")
	}
	r.Roles, _ = t.strings("roles")
	t.done()
	return r
}
