package master

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// finished stores a build of builder that ended at end, with one log.
func finished(t *testing.T, st *store.DB, builder int64, end time.Time) store.Log {
	t.Helper()
	_, brids, err := st.AddBuildset(store.NewBuildset{BuilderIDs: []int64{builder}, SubmittedAt: end})
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.AddBuild(store.NewBuild{BuilderID: builder, BuildRequestID: brids[builder], StartedAt: end})
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.AddStep(b.ID, "shell")
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.AddLog(s.ID, "stdio", "s")
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error { _, err := st.AppendLog(l.ID, "ohello\n"); return err }(),
		st.FinishLog(l.ID),
		st.FinishStep(s.ID, store.Success, end),
		st.FinishBuild(b.ID, store.Success, end),
		st.CompleteBuildRequest(brids[builder], store.Success, end),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// TestJanitor: the janitor runs at start, then every interval, with the
// config of the moment, and stops with its context.
func TestJanitor(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := st.Check(); err != nil {
				t.Error(err)
			}
			st.Close()
		}()
		b, err := st.EnsureBuilder("b")
		if err != nil {
			t.Fatal(err)
		}
		old := finished(t, st, b.ID, time.Now().Add(-48*time.Hour))
		recent := finished(t, st, b.ID, time.Now().Add(-time.Hour))
		cfg := config.Janitor{LogHorizon: config.Duration{Duration: 24 * time.Hour}, Interval: config.Duration{Duration: 12 * time.Hour}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- runJanitor(ctx, st, func() config.Janitor { return cfg }, nil) }()
		synctest.Wait()
		typeOf := func(l store.Log) string {
			got, err := st.Log(l.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.Type
		}
		if got, want := [2]string{typeOf(old), typeOf(recent)}, [2]string{store.LogDeleted, "s"}; got != want {
			t.Errorf("after the first run: log types %v, want %v", got, want)
		}
		time.Sleep(12*time.Hour + time.Second)
		synctest.Wait()
		if got := typeOf(recent); got != "s" {
			t.Errorf("after 12h: recent log %q, want it kept", got)
		}
		time.Sleep(12 * time.Hour)
		synctest.Wait()
		if got := typeOf(recent); got != store.LogDeleted {
			t.Errorf("after 24h: recent log %q, want it deleted", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runJanitor: %v", err)
		}
	})
}
