package auth

import (
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/pkg/config"
)

// A login's user names cannot be told by timing: the password of a name
// that does not exist is compared with a hash of the users' median cost,
// so it takes what a wrong password of a real user takes. htpasswd's
// default cost is 5; the old dummy hash had cost 10, 32 times the work.
func TestUnknownUserCost(t *testing.T) {
	t.Parallel()
	hash := func(cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("secret"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	for _, tt := range []struct {
		costs []int
		want  int
	}{
		{[]int{5}, 5},
		{[]int{4, 5, 5, 12}, 5},
		{[]int{6, 4, 7}, 6},
	} {
		var users []config.User
		for i, c := range tt.costs {
			users = append(users, config.User{Username: "u" + strconv.Itoa(i), PasswordHash: hash(c)})
		}
		a := New(config.Auth{Type: "users", Users: users})
		if got, err := bcrypt.Cost(a.dummyHash); err != nil || got != tt.want {
			t.Errorf("users of costs %v: the dummy hash's cost is %d, want %d", tt.costs, got, tt.want)
		}
	}

	// And it is that hash that is compared: measured against each other,
	// interleaved, the fastest of several tries of each (the least
	// disturbed by a loaded machine) are within a factor of 3, where the
	// old dummy hash was 32 times slower.
	a := New(config.Auth{Type: "users", Users: []config.User{{Username: "alice", PasswordHash: hash(5)}}})
	fastest := func(name string) time.Duration {
		start := time.Now()
		if a.CheckPassword(name, "wrong") != nil {
			t.Fatalf("%s logged in with a wrong password", name)
		}
		return time.Since(start)
	}
	known, unknown := time.Hour, time.Hour
	for range 15 {
		known = min(known, fastest("alice"))
		unknown = min(unknown, fastest("mallory"))
	}
	if ratio := float64(unknown) / float64(known); ratio > 3 || ratio < 1.0/3 {
		t.Errorf("a wrong password takes %v for an existing user, %v for an unknown one: a ratio of %.1f", known, unknown, ratio)
	}
}
