package store

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// t0 has nanoseconds, to show that times keep full precision.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

// openBolt opens a new bbolt store in t.TempDir(), for the bbolt-only
// tests; cleanup checks and closes it.
func openBolt(t testing.TB) *DB {
	t.Helper()
	return openBoltAt(t, filepath.Join(t.TempDir(), "state.db"))
}

// openBoltAt opens the bbolt store at path; cleanup checks and closes it.
func openBoltAt(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// bbolt only: the lock of bbolt's file (masters share a PostgreSQL database).
func TestOpenLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	openBoltAt(t, path)
	const timeout = 100 * time.Millisecond
	start := time.Now()
	db, err := Open(path, Options{Timeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		db.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	for _, want := range []string{path, "another master is probably running"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if elapsed > timeout+time.Second {
		t.Errorf("second Open took %v, want about %v", elapsed, timeout)
	}
}

// bbolt only: a file in a missing directory.
func TestOpenBadPath(t *testing.T) {
	t.Parallel()
	_, err := Open(filepath.Join(t.TempDir(), "missing", "state.db"), Options{})
	if err == nil || errors.Is(err, ErrLocked) {
		t.Errorf("Open in a missing directory: %v", err)
	}
}

func TestMasters(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		m1 := must[Master](t)(db.EnsureMaster("m1"))
		m2 := must[Master](t)(db.EnsureMaster("m2"))
		if m1.ID != 1 || m2.ID != 2 || !m1.Active || m1.LastSeen.IsZero() {
			t.Errorf("masters: %+v %+v", m1, m2)
		}
		ok(t, db.SetMasterActive(m1.ID, false, t0))
		again := must[Master](t)(db.EnsureMaster("m1"))
		if again.ID != m1.ID || !again.Active {
			t.Errorf("EnsureMaster again: %+v, want id %d and active", again, m1.ID)
		}
		ok(t, db.SetMasterActive(m2.ID, false, t0))
		ms := must[[]Master](t)(db.Masters())
		want := []Master{{ID: 1, Name: "m1", Active: true}, {ID: 2, Name: "m2", LastSeen: t0}}
		if diff := cmp.Diff(want, ms, cmpopts.IgnoreFields(Master{}, "LastSeen")); diff != "" {
			t.Errorf("Masters (-want +got):\n%s", diff)
		}
		if !ms[1].LastSeen.Equal(t0) {
			t.Errorf("LastSeen = %v, want %v", ms[1].LastSeen, t0)
		}
		if _, err := db.EnsureMaster(""); err == nil {
			t.Error("EnsureMaster with an empty name succeeded")
		}
		if err := db.SetMasterActive(99, true, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetMasterActive(99): %v, want ErrNotFound", err)
		}
	})
}

func TestBuilders(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a := must[Builder](t)(db.EnsureBuilder("a"))
		b := must[Builder](t)(db.EnsureBuilder("b"))
		if a.ID != 1 || b.ID != 2 {
			t.Errorf("ids %d %d, want 1 2", a.ID, b.ID)
		}
		if again := must[Builder](t)(db.EnsureBuilder("a")); again.ID != 1 {
			t.Errorf("EnsureBuilder(a) again: id %d, want 1", again.ID)
		}
		tags := []string{"linux", "fast"}
		ok(t, db.UpdateBuilder(b.ID, "the b builder", tags, []int64{1}))
		tags[0] = "changed" // the store must not keep the caller's slice
		want := []Builder{{ID: 1, Name: "a"}, {ID: 2, Name: "b", Description: "the b builder", Tags: []string{"linux", "fast"}, MasterIDs: []int64{1}}}
		if diff := cmp.Diff(want, must[[]Builder](t)(db.Builders())); diff != "" {
			t.Errorf("Builders (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want[1], must[Builder](t)(db.Builder(2))); diff != "" {
			t.Errorf("Builder(2) (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want[1], must[Builder](t)(db.BuilderByName("b"))); diff != "" {
			t.Errorf("BuilderByName(b) (-want +got):\n%s", diff)
		}
		for name, err := range map[string]error{
			"Builder":       func() error { _, err := db.Builder(3); return err }(),
			"BuilderByName": func() error { _, err := db.BuilderByName("c"); return err }(),
			"UpdateBuilder": db.UpdateBuilder(3, "", nil, nil),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s of a missing builder: %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		w1 := must[Worker](t)(db.EnsureWorker("w1"))
		w2 := must[Worker](t)(db.EnsureWorker("w2"))
		if w1.ID != 1 || w2.ID != 2 || must[Worker](t)(db.EnsureWorker("w1")).ID != 1 {
			t.Fatalf("worker ids: %d %d", w1.ID, w2.ID)
		}
		on := []BuilderMaster{{BuilderID: 1, MasterID: 1}, {BuilderID: 2, MasterID: 1}}
		ok(t, db.SetWorkerConfiguredOn(w1.ID, on))
		info := map[string]string{"host": "jail1", "os": "freebsd"}
		ok(t, db.WorkerConnected(w1.ID, 1, info))
		ok(t, db.WorkerConnected(w1.ID, 1, info)) // twice: listed once
		ok(t, db.WorkerConnected(w1.ID, 2, info))
		ok(t, db.WorkerDisconnected(w1.ID, 1))
		ok(t, db.SetWorkerPaused(w2.ID, true, true))
		info["host"] = "changed"
		want := []Worker{
			{ID: 1, Name: "w1", Info: map[string]string{"host": "jail1", "os": "freebsd"}, ConfiguredOn: on, ConnectedTo: []int64{2}},
			{ID: 2, Name: "w2", Paused: true, Graceful: true},
		}
		if diff := cmp.Diff(want, must[[]Worker](t)(db.Workers())); diff != "" {
			t.Errorf("Workers (-want +got):\n%s", diff)
		}
		ok(t, db.WorkerDisconnected(w1.ID, 2))
		got := must[Worker](t)(db.WorkerByName("w1"))
		if len(got.ConnectedTo) != 0 {
			t.Errorf("ConnectedTo after disconnecting all = %v", got.ConnectedTo)
		}
		if diff := cmp.Diff(want[1], must[Worker](t)(db.Worker(2))); diff != "" {
			t.Errorf("Worker(2) (-want +got):\n%s", diff)
		}
		if _, err := db.Worker(9); !errors.Is(err, ErrNotFound) {
			t.Errorf("Worker(9): %v, want ErrNotFound", err)
		}
		if _, err := db.WorkerByName("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("WorkerByName(nope): %v, want ErrNotFound", err)
		}
		if err := db.WorkerConnected(9, 1, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("WorkerConnected(9): %v, want ErrNotFound", err)
		}
	})
}

func TestWorstResult(t *testing.T) {
	t.Parallel()
	order := []int{Skipped, Success, Warnings, Failure, Exception, Retry, Cancelled}
	for i, a := range order {
		for j, b := range order {
			want := order[max(i, j)]
			if got := WorstResult(a, b); got != want {
				t.Errorf("WorstResult(%d, %d) = %d, want %d", a, b, got, want)
			}
		}
	}
}
