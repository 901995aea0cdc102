package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Error(err)
		}
		db.Close()
	})
	return db
}

func TestForce(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	a, _ := db.EnsureBuilder("a")
	b, _ := db.EnsureBuilder("b")
	other, _ := db.EnsureBuilder("other")
	woken := 0
	s := New([]config.Scheduler{
		{Type: "force", Name: "force", BuilderNames: []string{"a", "b"}},
		{Type: "force", Name: "other", BuilderNames: []string{"other"}},
	}, db, func() { woken++ }, nil)

	if diff := cmp.Diff([]ForceInfo{
		{Name: "force", Label: "force", ButtonName: "force", BuilderNames: []string{"a", "b"}, Reason: "force build"},
		{Name: "other", Label: "other", ButtonName: "other", BuilderNames: []string{"other"}, Reason: "force build"},
	}, s.ForceSchedulers()); diff != "" {
		t.Errorf("ForceSchedulers (-want +got):\n%s", diff)
	}

	ctx := context.Background()
	// All of the scheduler's builders by default.
	bsid, brids, err := s.Force(ctx, "force", ForceRequest{Reason: "why", Owner: "me", Branch: "main", Properties: map[string]any{"n": 3}})
	if err != nil {
		t.Fatal(err)
	}
	if len(brids) != 2 || brids[a.ID] == 0 || brids[b.ID] == 0 || woken != 1 {
		t.Errorf("brids %v, woken %d", brids, woken)
	}
	bs, err := db.Buildset(bsid)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for k, p := range bs.Properties {
		var v any
		json.Unmarshal(p.Value, &v)
		got[k] = []any{v, p.Source}
	}
	want := map[string]any{
		"n":         []any{3.0, "Force Build Form"},
		"reason":    []any{"why", "Force Build Form"},
		"owner":     []any{"me", "Force Build Form"},
		"scheduler": []any{"force", "Scheduler"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}
	if bs.SourceStamps[0].Branch != "main" || bs.SchedulerName != "force" {
		t.Errorf("buildset %+v", bs)
	}

	// One builder by id.
	_, brids, err = s.Force(ctx, "force", ForceRequest{BuilderID: b.ID})
	if err != nil || len(brids) != 1 || brids[b.ID] == 0 {
		t.Errorf("force builderid: %v %v", brids, err)
	}

	// Refusals add nothing.
	var pe *ParamError
	if _, _, err := s.Force(ctx, "force", ForceRequest{BuilderID: other.ID}); !errors.As(err, &pe) || pe.Field != "builderid" {
		t.Errorf("builder of another scheduler: %v", err)
	}
	if _, _, err := s.Force(ctx, "force", ForceRequest{BuilderNames: []string{"nope"}}); !errors.As(err, &pe) {
		t.Errorf("unknown builder name: %v", err)
	}
	if _, _, err := s.Force(ctx, "nope", ForceRequest{}); !errors.Is(err, ErrNoScheduler) {
		t.Errorf("unknown scheduler: %v", err)
	}
	all, _ := db.Buildsets(nil)
	if len(all) != 2 {
		t.Errorf("%d buildsets, want 2", len(all))
	}

	// Reconfigure replaces the schedulers.
	s.Reconfigure([]config.Scheduler{{Type: "force", Name: "new", BuilderNames: []string{"a"}}})
	if _, _, err := s.Force(ctx, "force", ForceRequest{}); !errors.Is(err, ErrNoScheduler) {
		t.Errorf("old scheduler after reconfigure: %v", err)
	}
	if _, _, err := s.Force(ctx, "new", ForceRequest{}); err != nil {
		t.Errorf("new scheduler: %v", err)
	}
}

// TestForceStoreFailureIsNotTheUsers: a store that cannot answer is the
// master's failure (a 500), not a builderid the user got wrong (a 400).
func TestForceStoreFailureIsNotTheUsers(t *testing.T) {
	t.Parallel()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := db.EnsureBuilder("a")
	s := New([]config.Scheduler{{Type: "force", Name: "force", BuilderNames: []string{"a"}}}, db, func() {}, nil)
	_, _, err = s.Force(context.Background(), "force", ForceRequest{BuilderID: a.ID + 100})
	if pe := (*ParamError)(nil); !errors.As(err, &pe) || pe.Field != "builderid" {
		t.Fatalf("unknown builderid: %v, want a ParamError on builderid", err)
	}
	db.Close()
	_, _, err = s.Force(context.Background(), "force", ForceRequest{BuilderID: a.ID})
	if err == nil {
		t.Fatal("forced with a closed store")
	}
	if pe := (*ParamError)(nil); errors.As(err, &pe) {
		t.Errorf("closed store: %v is a ParamError (a 400 blaming the user)", err)
	}
}
