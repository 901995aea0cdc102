// Package backoff slows down guessing: a Limiter counts each client
// address's failed attempts (passwords, tokens) and makes an address that
// fails too often wait, in a table of bounded size. (The log lines such
// attempts cause are thinned out by internal/logsample.)
//
// A Limiter keys clients by address (see AddrKey), so an attacker's
// failures never make another address wait. It is a token bucket per key
// (golang.org/x/time/rate): Burst failures are free, then one more is
// allowed every Every. An attempt counts as a failure from the moment it
// begins until it ends, so that attempts sent all at once are counted too;
// one that succeeds costs nothing. A full table forgets the key used least
// recently, or, with ShareOverflow, brakes the keys it has no room for
// together.
package backoff
