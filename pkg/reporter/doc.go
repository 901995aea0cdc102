// Package reporter tells forges and people what happened to builds, as
// buildbot's reporters: commit statuses on GitHub, GitLab, Gitea and
// Bitbucket, pull request comments, mail, JSON to a URL and chat
// webhooks. A report is written to the store's outbox in the transaction
// of the build event that causes it, then delivered in the background
// with retries, so a forge that is down, a rate limit or a master restart
// loses nothing.
//
// Each kind is a Sender in a file of its own; forgeKinds, mailKinds and otherKinds
// name their constructors by config type.
package reporter
