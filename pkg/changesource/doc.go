// Package changesource polls git remotes and emits Changes.
//
// A [GitPoller] does what buildbot's GitPoller does, with go-git only: it
// fetches the branches (or tags) it follows into a bare mirror, compares
// their tips with the revisions it saw last, which it keeps in the store,
// and announces one [store.Change] per new commit, oldest first. The changes
// and the new revisions are written in one transaction, so a master that
// stops at any moment neither announces a commit twice nor misses one.
package changesource
