// Package connlimit caps the connections a listener holds, in total and
// per source address, refusing (closing at once) those over a cap, and
// samples the log lines it writes about them so that an attack cannot
// flood the log.
//
// A refused connection is closed as soon as it is accepted rather than
// left waiting in the kernel's backlog (as golang.org/x/net/netutil's
// LimitListener does): a client over its cap learns it at once, and the
// backlog stays free for everyone else.
//
// On a port whose clients log in (the worker port), Config.Evict caps
// only the connections not yet logged in, and a new one over the cap
// closes one of them (the oldest of the address holding the most) rather
// than being refused: a flood of idle connections then cannot hold the
// port against a client whose handshake takes milliseconds. The server
// calls Authenticated on a connection once its client logged in.
package connlimit
