// Package changesource polls git remotes and emits Changes.
//
// A [GitPoller] does what buildbot's GitPoller does, with the git binary as
// buildbot runs it: it lists the remote's refs (git ls-remote), fetches the
// branches (or tags) it follows into a bare mirror (git fetch), compares
// their tips with the revisions it saw last, which it keeps in the store,
// and announces one [store.Change] per new commit, oldest first (git
// rev-list; git log and git diff-tree read every new commit's details in
// two commands). The changes and the new revisions are written in one
// transaction, so a master that stops at any moment neither announces a
// commit twice nor misses one. A poll in which no followed ref moved runs
// git ls-remote alone.
//
// git runs in its own process group, killed whole when the poll is
// cancelled; it never prompts (GIT_TERMINAL_PROMPT=0), and what it says
// on stderr ends the error of a command that fails. A master without git
// in PATH fails each poll with an error naming the package to install.
//
// A mirror damaged by such a stop (an empty ref file, a lost object,
// garbage in HEAD or config) is found when a poll fails in it, set aside
// with a warning naming the damage, and fetched anew in the same poll;
// since the tips seen are in the store, the new mirror announces exactly
// what was not announced yet. A remote that cannot be reached only fails
// the poll: the mirror is neither checked nor touched.
package changesource
