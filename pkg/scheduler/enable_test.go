package scheduler

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// A disabled change scheduler ignores the changes that come meanwhile, as
// buildbot's stops consuming them, also after a restart; enabled again, it
// builds the next.
func TestDisabledChangeScheduler(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	cfg := []config.Scheduler{sb(0)}
	s := New(cfg, e.db, e.wake, nil)
	if !s.Enabled("sb") {
		t.Fatal("a new scheduler is disabled")
	}
	if err := s.SetEnabled("sb", false); err != nil {
		t.Fatal(err)
	}
	c1 := e.change(store.Change{Branch: "main", Revision: "r1"})
	s.AddChanges([]store.Change{c1})
	if got := e.buildsets(); len(got) != 0 {
		t.Fatalf("a disabled scheduler added buildsets: %v", got)
	}
	// It stays disabled across a restart, and does not catch up with the
	// change it ignored.
	e.reopen()
	s = New(cfg, e.db, e.wake, nil)
	if s.Enabled("sb") {
		t.Fatal("enabled again after a restart")
	}
	if got := e.buildsets(); len(got) != 0 {
		t.Fatalf("the ignored change was built at the restart: %v", got)
	}
	if err := s.SetEnabled("sb", true); err != nil {
		t.Fatal(err)
	}
	c2 := e.change(store.Change{Branch: "main", Revision: "r2"})
	s.AddChanges([]store.Change{c2})
	if diff := cmp.Diff([][]int64{{c2.ID}}, e.buildsets()); diff != "" {
		t.Errorf("buildsets once enabled again (-want +got):\n%s", diff)
	}
	if err := s.SetEnabled("nosuch", false); !errors.Is(err, ErrUnknownScheduler) {
		t.Errorf("SetEnabled of an unknown scheduler: %v, want ErrUnknownScheduler", err)
	}
}

// A disabled force scheduler refuses to force and says so in its info.
func TestDisabledForceScheduler(t *testing.T) {
	t.Parallel()
	e := newChangeEnv(t)
	s := New([]config.Scheduler{{Type: "force", Name: "force", BuilderNames: []string{"b"}}}, e.db, e.wake, nil)
	if err := s.SetEnabled("force", false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Force(context.Background(), "force", ForceRequest{Owner: "me"}); !errors.Is(err, ErrDisabled) {
		t.Errorf("Force of a disabled scheduler: %v, want ErrDisabled", err)
	}
	if fi := s.ForceSchedulers(); len(fi) != 1 || !fi[0].Disabled {
		t.Errorf("ForceSchedulers: %+v, want it disabled", fi)
	}
	if got := e.buildsets(); len(got) != 0 {
		t.Errorf("buildsets: %v", got)
	}
	if err := s.SetEnabled("force", true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Force(context.Background(), "force", ForceRequest{Owner: "me"}); err != nil {
		t.Errorf("Force once enabled again: %v", err)
	}
}

// A disabled periodic scheduler skips its times; a change scheduler's
// gathered changes wait for it to be enabled again, then fire.
func TestDisabledTimers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newChangeEnv(t)
		cfg := []config.Scheduler{
			{Type: "periodic", Name: "p", BuilderNames: []string{"b"}, Period: config.Duration{Duration: time.Hour}},
			sb(time.Minute),
		}
		s := New(cfg, e.db, e.wake, nil)
		for _, n := range []string{"p", "sb"} {
			if err := s.SetEnabled(n, false); err != nil {
				t.Fatal(err)
			}
		}
		stop := runSet(t, s)
		defer stop()
		synctest.Wait()
		time.Sleep(3*time.Hour + time.Minute)
		synctest.Wait()
		if got := e.submitted(); len(got) != 0 {
			t.Fatalf("a disabled periodic scheduler built at %v", got)
		}
		// Gathered while enabled, then disabled: it waits.
		if err := s.SetEnabled("sb", true); err != nil {
			t.Fatal(err)
		}
		c := e.change(store.Change{Branch: "main", Revision: "r1"})
		s.AddChanges([]store.Change{c})
		if err := s.SetEnabled("sb", false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := e.buildsets(); len(got) != 0 {
			t.Fatalf("a disabled change scheduler fired: %v", got)
		}
		if err := s.SetEnabled("sb", true); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if diff := cmp.Diff([][]int64{{c.ID}}, e.buildsets()); diff != "" {
			t.Errorf("buildsets once enabled again (-want +got):\n%s", diff)
		}
	})
}
