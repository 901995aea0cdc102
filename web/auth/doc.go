// Package auth decides who is asking and whether they may: users from
// [www.auth] (a list, or an htpasswd file, with bcrypt hashes), API
// tokens, login sessions with their CSRF tokens, the brake on guessing
// passwords and tokens, and [www.authz]'s rules, which turn a user, an
// action and its target (a builder, a build's owner) into a decision.
//
// It returns users, decisions and errors; the callers render them. It
// must not know HTTP routes, pages, templates or the REST API's encoding:
// it imports neither web/api nor web/ui, and writes no response.
package auth
