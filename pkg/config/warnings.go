package config

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/bcrypt"
)

// Warnings returns what in c is valid but probably not what its author
// meant, one line each naming the file, line and key: checkconfig prints
// them and the master logs them at start and reconfig. They never stop a
// master.
func (c *Config) Warnings() []string {
	var ws []string
	if w := c.WWW.Authz.unnamedActions(c.WWW.Auth); w != "" {
		ws = append(ws, c.at(c.firstRuleLine(), "www.authz.rules", w))
	}
	if w := c.WWW.Auth.mixedCosts(); w != "" {
		ws = append(ws, c.at(c.WWW.Auth.Line, "www.auth", w))
	}
	if w := c.WWW.TLS.expiryWarning(time.Now()); w != "" {
		ws = append(ws, c.at(c.WWW.TLS.Line, "www.tls_cert_file", w))
	}
	for _, f := range append([]string{c.File}, c.Included...) {
		if w := readableSecrets(f); w != "" {
			ws = append(ws, w)
		}
	}
	ws = append(ws, c.openChangeHooks()...)
	for i, r := range c.Reporters {
		if r.Type == "mail" && r.SMTPUser != "" && !r.UseTLS && !r.UseSMTPS && !LocalRelay(r.RelayHost) {
			ws = append(ws, c.at(r.Line, fmt.Sprintf("reporters[%d].smtp_user", i),
				fmt.Sprintf("set without use_tls or use_smtps: the password would cross the network to %s in clear, so no mail is sent", r.RelayHost)))
		}
	}
	ws = append(ws, c.weakWorkerPasswords()...)
	ws = append(ws, c.tlsWarnings(time.Now())...)
	for i, s := range c.Schedulers {
		if (s.Type == "periodic" || s.Type == "nightly") && s.SkipCI != nil && !s.OnlyIfChanged {
			ws = append(ws, c.at(s.Line, fmt.Sprintf("schedulers[%d].skip_ci", i),
				"has no effect without only_if_changed = true: the scheduler builds at its times whatever the commit messages say"))
		}
	}
	return ws
}

// minWorkerPassword is the length under which a worker's password is
// called weak: a recorded login lets it be guessed offline (see the
// README's "What a recorded plaintext login exposes").
const minWorkerPassword = 16

// obviousPasswords are passwords a dictionary tries first, of
// minWorkerPassword characters or more (shorter ones are weak anyway).
var obviousPasswords = []string{
	"passwordpassword", "password12345678", "1234567890123456", "changemechangeme",
	"correcthorsebatterystaple", "correct-horse-battery-staple", "correct horse battery staple",
	"qwertyuiopasdfghjkl", "buildbotbuildbot", "workerpassword", "example-worker-password",
}

// weakWorkerPasswords warns about each worker whose password is shorter
// than minWorkerPassword, well known, its name, or one character repeated.
func (c *Config) weakWorkerPasswords() []string {
	var ws []string
	for i, w := range c.Workers {
		p := w.Password
		why := ""
		switch {
		case p == "":
			continue // a worker logging in with its client certificate only
		case len([]rune(p)) < minWorkerPassword:
			why = fmt.Sprintf("is shorter than %d characters", minWorkerPassword)
		case slices.Contains(obviousPasswords, strings.ToLower(p)):
			why = "is a well-known one"
		case strings.EqualFold(p, w.Name):
			why = "is the worker's name"
		case strings.Count(p, p[:1]) == len(p):
			why = "is one character repeated"
		default:
			continue
		}
		ws = append(ws, c.atIn(fmt.Sprintf("workers[%d]", i), w.Line, "workers", fmt.Sprintf("worker %q: its password %s: whoever records one of its logins (on a plaintext link, or as a man in the middle the worker trusts by mistake) can guess it offline; give it a long random one (openssl rand -base64 24) on both sides", w.Name, why)))
	}
	return ws
}

// LocalRelay reports whether an SMTP relay_host is this host, where the
// password of smtp_user may go without TLS (as Go's net/smtp PlainAuth
// allows: localhost, 127.0.0.1, ::1).
func LocalRelay(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// openChangeHooks warns about each change hook without a secret that
// others than local users may reach: the web port listens on an address
// other than loopback, or trusted_proxies says a proxy passes requests on.
// Whoever reaches such a hook can add changes, and start builds, at will.
func (c *Config) openChangeHooks() []string {
	if c.WWW.loopbackOnly() && len(c.WWW.TrustedProxies) == 0 {
		return nil
	}
	var ws []string
	for _, dialect := range slices.Sorted(maps.Keys(c.WWW.ChangeHooks)) {
		h := c.WWW.ChangeHooks[dialect]
		if h.Secret != "" {
			continue
		}
		ws = append(ws, c.at(h.Line, "www.change_hook."+dialect,
			"no secret: anyone who can reach the web port can add changes and start builds through POST /change_hook/"+dialect+
				"; set secret or secret_file (see the README's \"Change hooks\"), or listen on loopback only (interface = \"127.0.0.1\")"))
	}
	return ws
}

// loopbackOnly reports whether the web port listens on a loopback address
// only.
func (w WWW) loopbackOnly() bool {
	if w.Interface == "localhost" {
		return true
	}
	addr, err := netip.ParseAddr(w.Interface)
	return err == nil && addr.IsLoopback()
}

// inlineSecretKeys are the keys whose value is a secret written into the
// config itself (password_file, secret_file and htpasswd keep them
// elsewhere).
var inlineSecretKeys = map[string]bool{"password": true, "secret": true, "password_hash": true}

// readableSecrets returns a warning when the file at path holds secrets
// inline (the keys it names) and its group or others may read it, as the
// worker's rc.d script warns about worker.toml; "" otherwise.
func readableSecrets(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return ""
	}
	var doc map[string]any
	md, err := toml.DecodeFile(path, &doc)
	if err != nil {
		return ""
	}
	var keys []string
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		if name := k.String(); inlineSecretKeys[k[len(k)-1]] && !seen[name] {
			seen[name] = true
			keys = append(keys, name)
		}
	}
	if db, ok := doc["db"].(map[string]any); ok {
		if u, ok := db["url"].(string); ok && dbURLHasPassword(u) {
			keys = append(keys, "db.url (a PostgreSQL password: ~/.pgpass or PGPASSWORD keep it out)")
		}
	}
	if len(keys) == 0 {
		return ""
	}
	return fmt.Sprintf("%s holds secrets (%s) and is readable by its group or others (mode %04o): chmod 600 it, owned by the master's user, or move them to password_file or secret_file", path, strings.Join(keys, ", "), fi.Mode().Perm())
}

func (c *Config) at(line int, key, msg string) string {
	return c.atIn(key, line, key, msg)
}

// atIn formats a warning about key at line of the file that holds the
// value at path (master.toml or an included file).
func (c *Config) atIn(path string, line int, key, msg string) string {
	file := c.fileOf(path)
	if line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", file, line, key, msg)
	}
	return fmt.Sprintf("%s: %s: %s", file, key, msg)
}

func (c *Config) firstRuleLine() int {
	if len(c.WWW.Authz.Rules) == 0 {
		return 0
	}
	return c.WWW.Authz.Rules[0].Line
}

// unnamedActions says which control actions every logged-in user may do
// because rules name some actions but not these ("" when the rules name
// all of them, or none: then every logged-in user may do everything, the
// documented default). A rule with builders names no worker action (it
// matches none), so it does not count for them.
func (z Authz) unnamedActions(a Auth) string {
	if !a.Enabled() || len(z.Rules) == 0 {
		return ""
	}
	named := map[string]bool{}
	for _, r := range z.Rules {
		for _, act := range r.Actions {
			for _, x := range AuthzActions {
				if act != "*" && act != x {
					continue
				}
				if len(r.Builders) > 0 && (slices.Contains(WorkerActions, x) || slices.Contains(SchedulerActions, x)) {
					continue
				}
				named[x] = true
			}
		}
	}
	if len(named) == 0 {
		return ""
	}
	var unnamed, open, closed []string
	for _, x := range AuthzActions {
		if named[x] {
			continue
		}
		unnamed = append(unnamed, x)
		if slices.Contains(NewActions, x) {
			closed = append(closed, x)
		} else {
			open = append(open, x)
		}
	}
	if len(unnamed) == 0 {
		return ""
	}
	var says []string
	if len(open) > 0 {
		says = append(says, "every logged-in user may do "+strings.Join(open, ", "))
	}
	if len(closed) > 0 {
		says = append(says, "no one may do "+strings.Join(closed, ", ")+" (added in this version; name it in a rule to allow it)")
	}
	return fmt.Sprintf("the rules name some control actions but not %s: %s (add them to a rule's actions, or use \"*\")",
		strings.Join(unnamed, ", "), strings.Join(says, "; "))
}

// mixedCosts says which users' bcrypt hashes have which costs when they
// differ, or "".
func (a Auth) mixedCosts() string {
	byCost := map[int][]string{}
	for _, u := range a.Users {
		c, err := bcrypt.Cost([]byte(u.PasswordHash))
		if err != nil {
			continue // refused at load
		}
		byCost[c] = append(byCost[c], u.Username)
	}
	if len(byCost) < 2 {
		return ""
	}
	var costs []int
	for c := range byCost {
		costs = append(costs, c)
	}
	slices.SortFunc(costs, cmp.Compare)
	var parts []string
	for _, c := range costs {
		parts = append(parts, fmt.Sprintf("cost %d: %s", c, strings.Join(byCost[c], ", ")))
	}
	return fmt.Sprintf("the users' bcrypt hashes have different costs (%s): a login takes as long as its user's cost, and a name that exists in no table is checked at one cost, so the time a refused login takes tells that a user of another cost exists; rehash every password at one cost with `gbb-master hashpw -cost N`",
		strings.Join(parts, "; "))
}

// dbURLHasPassword says whether a [db] url carries a password, in its user
// part or as ?password=.
func dbURLHasPassword(s string) bool {
	if !IsPostgresURL(s) {
		return false
	}
	u, err := url.Parse(s)
	if err != nil {
		return true // it may; it is not shown
	}
	if _, set := u.User.Password(); set {
		return true
	}
	for _, k := range SecretDBParams {
		if u.Query().Has(k) {
			return true
		}
	}
	return false
}
