package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/gbb-ci/gbb/internal/backoff"
	"github.com/gbb-ci/gbb/internal/logsample"
)

// ErrBadCredentials is returned by Guard.Try for a wrong user name,
// password or token.
var ErrBadCredentials = errors.New("wrong user name, password or token")

// TooManyFailures is returned by Guard.Try when the client's address
// failed too often: its guess was not checked.
type TooManyFailures struct {
	wait time.Duration // until the address may try again
}

func (e *TooManyFailures) Error() string {
	return "too many failed logins from your address: try again in " + e.RetryAfter() + "s"
}

// RetryAfter is the wait in whole seconds, rounded up, for Retry-After.
func (e *TooManyFailures) RetryAfter() string {
	return strconv.Itoa(max(1, int(math.Ceil(e.wait.Seconds()))))
}

// Guard brakes the guessing of passwords and tokens, by client
// address (see internal/backoff): the burst of failures a person makes is
// free, then an address may fail once every few seconds. It outlives
// reconfigs, so that a reconfig gives no attacker a fresh start, and
// samples its log lines, so that an attack cannot flood the log.
type Guard struct {
	brake *backoff.Limiter
	logs  *logsample.Sampler
	log   *slog.Logger
}

// Brake settings: LoginBurst failures in a row are free, then one more
// every LoginEvery: 1,200 guesses an hour from one address, rather than
// the 35 a second bcrypt allowed on two cores. loginKeys bounds the table
// of addresses (about 200 bytes each).
const (
	LoginBurst = 10
	LoginEvery = 3 * time.Second
	loginKeys  = 10_000
)

// NewGuard returns a brake that logs its refusals, sampled, to log.
func NewGuard(log *slog.Logger) Guard {
	return Guard{
		brake: backoff.New(backoff.Config{Burst: LoginBurst, Every: LoginEvery, MaxKeys: loginKeys}),
		logs:  logsample.New(10*time.Second, 10),
		log:   log,
	}
}

// Try runs check, the check of a password or token sent by the client at
// addr (the client address the server believes), through the brake of that address. It returns
// check's user, or ErrBadCredentials when check found none, or a
// *TooManyFailures without calling check. via names the way in ("login
// form", "basic auth", "token") and name the user name given, for the log:
// pass Authenticator.LogName's, so that a name that is no user's (a token
// or a password typed into the user field) is never written to the log.
func (g Guard) Try(addr, via string, name LogName, check func() *User) (*User, error) {
	at, wait, ok := g.brake.Begin(backoff.AddrKey(addr))
	if !ok {
		g.logRefusal("login refused: too many failures from the address", via, name, addr)
		return nil, &TooManyFailures{wait: wait}
	}
	u := check()
	if u == nil {
		at.Failed()
		g.logRefusal("login refused", via, name, addr)
		return nil, ErrBadCredentials
	}
	at.Succeeded()
	return u, nil
}

// Addresses returns how many client addresses the brake keeps.
func (g Guard) Addresses() int { return g.brake.Len() }

// LogName is a user name given in a login, as a log may show it: the
// name of a configured user, or only that it is none (Authenticator.
// LogName).
type LogName struct {
	name  string
	known bool
	given bool
}

func (g Guard) logRefusal(msg, via string, name LogName, remote string) {
	ok, dropped := g.logs.Sample()
	if !ok {
		return
	}
	args := []any{"via", via, "remote", remote}
	switch {
	case name.known:
		args = append(args, "user", name.name)
	case name.given:
		args = append(args, "user_known", false)
	}
	if dropped > 0 {
		args = append(args, "unlogged", fmt.Sprintf("%d refusals before this one", dropped))
	}
	g.log.Warn(msg, args...)
}
