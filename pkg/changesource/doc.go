// Package changesource polls git remotes and emits Changes.
//
// A [GitPoller] does what buildbot's GitPoller does, with go-git only: it
// fetches the branches (or tags) it follows into a bare mirror, compares
// their tips with the revisions it saw last, which it keeps in the store,
// and announces one [store.Change] per new commit, oldest first. The changes
// and the new revisions are written in one transaction, so a master that
// stops at any moment neither announces a commit twice nor misses one.
//
// A mirror damaged by such a stop (an empty ref file, a truncated packfile,
// a lost object, garbage in HEAD or config) is found when a poll fails in
// it, set aside with a warning naming the damage, and fetched anew in the
// same poll; since the tips seen are in the store, the new mirror announces
// exactly what was not announced yet. A remote that cannot be reached only
// fails the poll: the mirror is neither checked nor touched.
package changesource
