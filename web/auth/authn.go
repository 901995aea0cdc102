package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/pkg/config"
)

// SessionCookie is the name of the session cookie.
const SessionCookie = "gbb_session"

// CSRFField is the form field, and CSRFHeader the header, that carry a
// session's CSRF token.
const (
	CSRFField  = "csrf_token"
	CSRFHeader = "X-CSRF-Token"
)

// verifiedTTL is how long a checked basic-auth password is remembered, so
// that a script's calls do not each pay for a bcrypt comparison;
// maxVerified bounds how many are.
const (
	verifiedTTL = 5 * time.Minute
	maxVerified = 1024
)

// User is who made a request.
type User struct {
	Name   string
	Groups []string
	// Session is the login of a browser; nil for basic auth and tokens,
	// which need no CSRF token.
	Session *Session
	// Limit is what an API token is limited to ([[www.auth.tokens]]
	// actions and builders); nil for users and tokens without limits.
	Limit *Limit
}

// Limit narrows what a token may do, on top of [www.authz]'s rules.
type Limit struct {
	// Actions are the actions the token may do ("*" for all); nil means
	// any, empty none (a read-only token).
	Actions []string
	// Builders are patterns of the builders it may act on; nil means any.
	// A token limited to builders may do no worker action.
	Builders []string
}

// Allows reports whether the limit lets its token do action on builder
// ("" for a worker action); a nil limit allows everything.
func (l *Limit) Allows(action, builder string) bool {
	if l == nil {
		return true
	}
	if l.Actions != nil && !slices.Contains(l.Actions, action) && !slices.Contains(l.Actions, "*") {
		return false
	}
	return l.Builders == nil || MatchAny(l.Builders, builder)
}

// String says what the limit allows, for a refusal.
func (l *Limit) String() string {
	var parts []string
	switch {
	case l.Actions == nil:
	case len(l.Actions) == 0:
		parts = append(parts, "no action (read-only)")
	default:
		parts = append(parts, "actions "+strings.Join(l.Actions, ", "))
	}
	if l.Builders != nil {
		parts = append(parts, "builders "+strings.Join(l.Builders, ", "))
	}
	return strings.Join(parts, " on ")
}

// Session is one login.
type Session struct {
	// ID is the session cookie's value; CSRF is the token every POST
	// made with that cookie must send back.
	ID, CSRF string
	User     User
	expires  time.Time
}

// Expires is when the session ends.
func (s *Session) Expires() time.Time { return s.expires }

type userKey struct{}

// WithUser returns ctx carrying u as who made the request.
func WithUser(ctx context.Context, u *User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserOf returns who made r, or nil for an anonymous visitor (and for
// everyone when no [www.auth] is configured).
func UserOf(r *http.Request) *User {
	u, _ := r.Context().Value(userKey{}).(*User)
	return u
}

// Authenticator checks passwords, tokens and sessions. It is safe for
// concurrent use.
type Authenticator struct {
	users  map[string]config.User
	tokens map[[sha256.Size]byte]config.Token
	// timeout is how long a session lasts.
	timeout time.Duration
	now     func() time.Time
	// dummyHash is what the password of a user name that does not exist is
	// compared with: a bcrypt hash at the median cost of the users', so
	// that the time a refusal takes does not tell which names exist; nil
	// when there are no users.
	dummyHash []byte

	mu       sync.Mutex
	sessions map[string]*Session             // guarded by mu; by id
	verified map[[sha256.Size]byte]time.Time // guarded by mu; sha256(User, password) of basic-auth logins checked, until when
}

// New returns the authenticator of a, or nil when a is not enabled.
func New(a config.Auth) *Authenticator {
	if !a.Enabled() {
		return nil
	}
	au := &Authenticator{
		users:    map[string]config.User{},
		tokens:   map[[sha256.Size]byte]config.Token{},
		timeout:  a.SessionTimeout,
		now:      time.Now,
		sessions: map[string]*Session{},
		verified: map[[sha256.Size]byte]time.Time{},
	}
	if au.timeout <= 0 {
		au.timeout = config.DefaultSessionTimeout
	}
	var costs []int
	for _, u := range a.Users {
		au.users[u.Username] = u
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
			costs = append(costs, c)
		}
	}
	if len(costs) > 0 {
		slices.Sort(costs)
		// The password of no one: random, so that no guess matches it.
		h, err := bcrypt.GenerateFromPassword([]byte(RandomID()[:64]), costs[len(costs)/2])
		if err == nil {
			au.dummyHash = h
		}
	}
	for _, t := range a.Tokens {
		var h [sha256.Size]byte
		if b, err := hex.DecodeString(t.SHA256); err == nil && len(b) == len(h) {
			copy(h[:], b)
			au.tokens[h] = t
		}
	}
	return au
}

// LogName returns name, as given in a login, for the log: a configured
// user's name, or only that it is none (never the text itself: users
// paste tokens and passwords into the user field, as curl -u "$TOKEN:").
func (a *Authenticator) LogName(name string) LogName {
	_, known := a.users[name]
	return LogName{name: name, known: known, given: name != ""}
}

// CheckPassword returns the user name and password's user, or nil.
func (a *Authenticator) CheckPassword(name, password string) *User {
	cu, ok := a.users[name]
	if !ok {
		// Spend the time a real comparison would, so that timing does not
		// tell which user names exist.
		if a.dummyHash != nil {
			bcrypt.CompareHashAndPassword(a.dummyHash, []byte(password))
		}
		return nil
	}
	key := sha256.Sum256([]byte(cu.PasswordHash + "\x00" + name + "\x00" + password))
	now := a.now()
	a.mu.Lock()
	until, ok := a.verified[key]
	a.mu.Unlock()
	if !ok || now.After(until) {
		if bcrypt.CompareHashAndPassword([]byte(cu.PasswordHash), []byte(password)) != nil {
			return nil
		}
		a.mu.Lock()
		if len(a.verified) >= maxVerified {
			clear(a.verified)
		}
		a.verified[key] = now.Add(verifiedTTL)
		a.mu.Unlock()
	}
	return &User{Name: cu.Username, Groups: cu.Groups}
}

// CheckToken returns the user of an API token, or nil.
func (a *Authenticator) CheckToken(token string) *User {
	h := sha256.Sum256([]byte(token))
	// The map lookup compares hashes of a secret, which tells an attacker
	// nothing useful about the token itself.
	t, ok := a.tokens[h]
	if !ok {
		return nil
	}
	u := &User{Name: t.Name, Groups: t.Groups}
	if t.Limited() {
		u.Limit = &Limit{Actions: t.Actions, Builders: t.Builders}
	}
	return u
}

// NewSession starts a login for u.
func (a *Authenticator) NewSession(u *User) *Session {
	now := a.now()
	s := &Session{ID: RandomID(), CSRF: RandomID(), User: *u, expires: now.Add(a.timeout)}
	s.User.Session = s
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, old := range a.sessions {
		if now.After(old.expires) {
			delete(a.sessions, id)
		}
	}
	a.sessions[s.ID] = s
	return s
}

// Session returns the live session with the given id, or nil.
func (a *Authenticator) Session(id string) *Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[id]
	if !ok {
		return nil
	}
	if a.now().After(s.expires) {
		delete(a.sessions, id)
		return nil
	}
	return s
}

// EndSession ends the session with the given id.
func (a *Authenticator) EndSession(id string) {
	a.mu.Lock()
	delete(a.sessions, id)
	a.mu.Unlock()
}

// RandomID returns 32 random bytes in hex: a session id or a CSRF token.
func RandomID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// ValidToken reports whether v looks like a token RandomID made.
func ValidToken(v string) bool {
	if len(v) != 64 {
		return false
	}
	for _, c := range []byte(v) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
