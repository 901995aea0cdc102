package auth

import (
	"slices"

	"github.com/gbb-ci/gbb/internal/fnmatch"
	"github.com/gbb-ci/gbb/pkg/config"
)

// Access is the [www.auth] users (nil when it is not enabled) and the
// [www.authz] rules in force at one time.
type Access struct {
	Users *Authenticator
	Rules config.Authz
}

// Allowed applies the rules of authz to user u doing action on builder ("" for a
// worker action) of a build owned by owner.
//
// A token limited to some actions or builders (u.Limit) may do nothing
// else, whatever the rules say.
func Allowed(authz config.Authz, u *User, action, builder, owner string) bool {
	if u != nil && !u.Limit.Allows(action, builder) {
		return false
	}
	for _, rule := range authz.Rules {
		if !slices.Contains(rule.Actions, action) && !slices.Contains(rule.Actions, "*") {
			continue
		}
		if len(rule.Builders) > 0 && !MatchAny(rule.Builders, builder) {
			continue
		}
		if u == nil {
			return false
		}
		roles := RolesOf(authz, u)
		for _, role := range rule.Roles {
			if role == config.RoleOwner && owner != "" && owner == u.Name || slices.Contains(roles, role) {
				return true
			}
		}
		return false
	}
	// An action added in this version needs a rule once rules exist:
	// rules written before it must not open it to everyone.
	return u != nil && (len(authz.Rules) == 0 || !slices.Contains(config.NewActions, action))
}

// MatchAny reports whether name matches one of patterns, with buildbot's
// fnmatch: "*" and "?" match "/" too, so a builder "restricted/x" is one of
// "restricted*" (path.Match let it escape every pattern with a "*").
func MatchAny(patterns []string, name string) bool {
	if name == "" {
		return false
	}
	for _, p := range patterns {
		if fnmatch.Match(p, name) {
			return true
		}
	}
	return false
}

// RolesOf returns u's roles: its groups and the roles given to its name or
// groups.
func RolesOf(authz config.Authz, u *User) []string {
	roles := slices.Clone(u.Groups)
	for _, rm := range authz.Roles {
		if slices.Contains(rm.Users, u.Name) || slices.ContainsFunc(rm.Groups, func(g string) bool { return slices.Contains(u.Groups, g) }) {
			roles = append(roles, rm.Role)
		}
	}
	return roles
}

// Refusal is why u may not do action on builder ("" for none), as the
// callers tell the client.
func Refusal(u *User, action, builder string) string {
	if u != nil && !u.Limit.Allows(action, builder) {
		msg := "token " + u.Name + " is limited to " + u.Limit.String() + ": it may not " + action
		if builder != "" {
			msg += " on builder " + builder
		}
		return msg
	}
	who := "anonymous users"
	if u != nil {
		who = u.Name
	}
	msg := who + " may not " + action
	if builder != "" {
		msg += " on builder " + builder
	}
	if u == nil {
		msg += ": log in first"
	}
	return msg
}

// MetricsAllowed reports whether u (nil: anonymous) may read /metrics.
// The first [[www.authz.rules]] table naming the action "metrics" (by
// name: "*" does not name it, so that rules written before it do not
// close the metrics) decides by its roles; with none, whoever may see the
// pages may read them (everyone, unless allow_anonymous_view = false).
func MetricsAllowed(authz config.Authz, u *User) bool {
	for _, rule := range authz.Rules {
		if !slices.Contains(rule.Actions, "metrics") {
			continue
		}
		if u == nil {
			return false
		}
		roles := RolesOf(authz, u)
		for _, role := range rule.Roles {
			if slices.Contains(roles, role) {
				return true
			}
		}
		return false
	}
	return u != nil || !authz.NoAnonymousView
}
