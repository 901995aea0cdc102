// Package changesource polls git remotes and emits Changes.
//
// A [GitPoller] does what buildbot's GitPoller does, in process with
// go-git; the master runs no git binary. Each poll lists the remote's refs
// (as git ls-remote does), and only when a followed branch (or tag) moved,
// fetches those refs into a bare mirror, compares their tips with the
// revisions it saw last, which it keeps in the store, and announces one
// [store.Change] per new commit, oldest first, with its author, committer,
// message and the files it changes from its first parent. The changes and
// the new revisions are written in one transaction, so a master that stops
// at any moment neither announces a commit twice nor misses one. A poll in
// which no followed ref moved lists the refs and does nothing else.
//
// Transports: file:// URLs and local paths (read in process: the objects
// the mirror lacks are packed by go-git's encoder into the mirror, as an
// upload-pack would send them; no git-upload-pack, and nothing registered
// in go-git's global transport table), http:// and https:// (with a user name
// and a password read from a secret at each poll; through the proxy that
// http_proxy, https_proxy and no_proxy name, read at each poll; a loopback
// host is never proxied), ssh:// and scp-like user@host:path (with a
// private key file, or else the ssh agent; the host's key must be in the
// known_hosts file given, or else in SSH_KNOWN_HOSTS, ~/.ssh/known_hosts or
// /etc/ssh/ssh_known_hosts: an unknown host is refused, never trusted on
// first use), and git://. A cancelled poll closes its connection at once,
// over ssh too (go-git's ssh transport does not: the poller dials the
// connection itself, through a dialer it hands go-git as a proxy, see
// sshdial.go). A poll is bounded by PollTimeout (poll_timeout, default
// 5m): a remote that stalls (accepts and never answers, or stops in the
// middle of a fetch) fails the poll with a warning that says it timed
// out, and the next interval polls again. A remote that refuses the
// credentials is named in one line, with the user and secret tried,
// without the page the server sent.
//
// What the git binary did that go-git does not, and how to get the same:
//
//   - Credential helpers (git credential-store, -cache, a forge's helper):
//     put the token in a secret and set http_username and
//     http_password_secret.
//   - ~/.ssh/config: go-git reads only Hostname and Port from it. For
//     another IdentityFile set ssh_private_key_file; for another
//     UserKnownHostsFile set ssh_known_hosts_file; for a user, put it in
//     the URL (ssh://user@host/path). ProxyCommand and ProxyJump are not
//     supported: run the poller where the host is reachable, or forward a
//     loopback port to it (ssh -L) and poll ssh://user@127.0.0.1:PORT/...
//     with that host's key listed for [127.0.0.1]:PORT.
//   - ssh keys protected by a passphrase: not supported (the poll fails,
//     saying so). Use a key without one, readable by the master's user
//     only, or the ssh agent (SSH_AUTH_SOCK), which holds the key
//     unlocked.
//   - url.<base>.insteadOf and other git config of the master's user: not
//     read; write the URL as it is to be fetched.
//   - http.sslCAInfo, http.extraHeader, Kerberos or NTLM proxies: not
//     supported. The system's CA certificates are used, as by the rest of
//     the master.
//   - A file:// or local remote is read by go-git in process: a bare
//     repository or one with a work tree (.git), not a linked worktree
//     whose .git is a file. A fetch from it lists every object the mirror
//     already has, to leave them out, where git's upload-pack negotiates:
//     for a large local repository, serve it over ssh or http instead.
//   - Shallow or partial (filtered) clones: the mirror always holds the
//     followed refs' whole history, as with the git binary.
//
// Memory: the mirror's object cache is bounded (4 MiB), a blob is never
// read, and go-git writes the pack a fetch receives to the mirror's
// objects/pack as it reads it; what a large first fetch holds in memory is
// the pack's index as it is built (see BENCHMARKS.md).
//
// A mirror damaged by a stop in the middle of a fetch (an empty ref file,
// a lost object, garbage in HEAD or config) is found when a poll fails in
// it, set aside with a warning naming the damage, and fetched anew in the
// same poll; since the tips seen are in the store, the new mirror
// announces exactly what was not announced yet. A remote that cannot be
// reached only fails the poll: the mirror is neither checked nor touched.
package changesource
