package bbimport

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// lockedRole is the role of the rule that refuses every action when the
// import could not translate buildbot's auth or authz: nobody has it.
const lockedRole = "import-buildbot-locked"

// matcherActions are gbb's actions of buildbot's endpoint matchers.
var matcherActions = map[string][]string{
	"AnyEndpointMatcher":             {"*"},
	"AnyControlEndpointMatcher":      {"*"},
	"ForceBuildEndpointMatcher":      {"force"},
	"StopBuildEndpointMatcher":       {"stop", "cancel"},
	"RebuildBuildEndpointMatcher":    {"rebuild"},
	"EnableSchedulerEndpointMatcher": {"enable"},
}

type authzRule struct {
	actions, builders, roles []string
}

// webAuth writes [www.auth] and [www.authz] from buildbot's www auth and
// authz. What it cannot translate is counted, and then the output
// refuses every action (a rule for a role nobody has) rather than leave
// the UI open: buildbot's master did not let everyone act.
func webAuth(w *writer, a, z map[string]any) {
	var problems []string
	authOK := false
	var users []string
	var passwords map[string]any
	var htpasswd string
	switch {
	case a == nil || a["class"] == "NoAuth":
		// buildbot's default Authz() has no rules: everyone may do
		// everything, as gbb without [www.auth].
		if z == nil || len(list(z["allowRules"])) == 0 {
			return
		}
		problems = append(problems, "www authz rules without a login (NoAuth): they refuse anonymous visitors some actions; gbb's rules need [www.auth]")
	case a["class"] == "UserPasswordAuth":
		passwords, _ = a["users"].(map[string]any)
		authOK = len(passwords) > 0
		for _, u := range slices.Sorted(maps.Keys(passwords)) {
			if _, isStr := passwords[u].(string); !isStr || strings.Contains(u, ":") {
				authOK = false
			}
			users = append(users, u)
		}
		if !authOK {
			problems = append(problems, "www auth UserPasswordAuth: users gbb cannot take")
		}
	case a["class"] == "HTPasswdAuth":
		htpasswd, authOK = a["file"].(string)
		if !authOK {
			problems = append(problems, "www auth HTPasswdAuth: no file")
		}
	default:
		problems = append(problems, fmt.Sprintf("www auth %v: gbb has no such login (it has users with bcrypt passwords and htpasswd files)", a["class"]))
	}
	// The rules and role tables, or why not.
	var rules []authzRule
	roleUsers := map[string][]string{}
	var roleOrder []string
	ownerRoles := map[string]bool{}
	viewLimited := false
	if z != nil {
		if z["fnmatch"] != true {
			problems = append(problems, "www authz: a stringsMatcher other than fnmatch")
		}
		for _, m := range list(z["roleMatchers"]) {
			switch m["class"] {
			case "RolesFromUsername":
				for _, r := range strs(m["roles"]) {
					if _, seen := roleUsers[r]; !seen {
						roleOrder = append(roleOrder, r)
					}
					roleUsers[r] = append(roleUsers[r], strs(m["usernames"])...)
				}
			case "RolesFromOwner":
				if r, ok := m["role"].(string); ok {
					ownerRoles[r] = true
				}
			case "RolesFromGroups":
				if p, _ := m["groupPrefix"].(string); p != "" {
					problems = append(problems, fmt.Sprintf("www authz RolesFromGroups(groupPrefix=%q): gbb's groups are roles as they are", p))
				}
			default:
				problems = append(problems, fmt.Sprintf("www authz role matcher %v: gbb has no such one", m["class"]))
			}
		}
		for _, r := range list(z["allowRules"]) {
			cls, _ := r["class"].(string)
			acts, ok := matcherActions[cls]
			role, isStr := r["role"].(string)
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("www authz rule %s: gbb has no such rule", cls))
				continue
			case !isStr || strings.ContainsAny(role, "*?["):
				problems = append(problems, fmt.Sprintf("www authz rule %s: role %v is a pattern; gbb's rules name roles", cls, r["role"]))
				continue
			case r["defaultDeny"] == false:
				problems = append(problems, fmt.Sprintf("www authz rule %s(defaultDeny=False): in gbb the first rule that names an action decides", cls))
				continue
			}
			rule := authzRule{actions: acts, roles: []string{role}}
			if ownerRoles[role] {
				rule.roles = append(rule.roles, "owner")
			}
			if b, ok := r["builder"].(string); ok {
				rule.builders = []string{b}
			}
			if cls == "AnyEndpointMatcher" {
				viewLimited = true
				problems = append(problems, fmt.Sprintf("www authz rule AnyEndpointMatcher(role=%q) limits viewing to that role: gbb lets every logged-in user view (allow_anonymous_view = false is written)", role))
			}
			rules = append(rules, rule)
		}
	}
	for _, p := range problems {
		w.skip("", p, "see [www.authz] below")
	}
	if authOK && len(problems) == 0 {
		w.note("", "buildbot let anonymous visitors do what no rule named; gbb lets only logged-in users (and a rule must name enable)")
	}

	w.printf("\n[www.auth]\n")
	switch {
	case authOK && htpasswd != "":
		w.kv("", "type", "htpasswd")
		w.kv("", "file", htpasswd)
		w.note("", "gbb takes only the file's bcrypt entries (htpasswd -B)")
	case authOK:
		w.kv("", "type", "users")
		for _, u := range users {
			h, err := bcrypt.GenerateFromPassword([]byte(passwords[u].(string)), bcrypt.DefaultCost)
			if err != nil {
				w.skip("", "www auth user "+u, err.Error())
				continue
			}
			w.printf("  [[www.auth.users]]\n")
			w.kv("  ", "username", u)
			w.kv("  ", "password_hash", string(h))
		}
	default:
		// A login no one can use: [www.authz] needs [www.auth].
		w.note("", "buildbot's login was not translated: this placeholder token, whose secret nobody has, only lets the rules below refuse every action")
		w.kv("", "type", "users")
		var secret [32]byte
		_, _ = rand.Read(secret[:])
		sum := sha256.Sum256(secret[:])
		w.printf("  [[www.auth.tokens]]\n")
		w.kv("  ", "name", "import-buildbot-placeholder")
		w.kv("  ", "token_sha256", hex.EncodeToString(sum[:]))
		w.kv("  ", "actions", []string{})
	}
	w.printf("\n[www.authz]\n")
	if viewLimited {
		w.kv("", "allow_anonymous_view", false)
	}
	for _, r := range roleOrder {
		w.printf("  [[www.authz.roles]]\n")
		w.kv("  ", "role", r)
		w.kv("  ", "users", roleUsers[r])
	}
	if len(problems) > 0 {
		w.note("", "what import-buildbot could not translate (above) would have left the UI open: every action is refused until you replace this rule")
		w.printf("  [[www.authz.rules]]\n")
		w.kv("  ", "actions", []string{"*"})
		w.kv("  ", "roles", []string{lockedRole})
	}
	for _, r := range rules {
		w.printf("  [[www.authz.rules]]\n")
		w.kv("  ", "actions", r.actions)
		if r.builders != nil {
			w.kv("  ", "builders", r.builders)
		}
		w.kv("  ", "roles", r.roles)
	}
}
