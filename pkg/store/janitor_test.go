package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// finishedBuild stores a buildset with one request on builder, and a build
// of it with two steps of one log each (chunks appends of a few lines),
// ended at end; zero end leaves the build running.
func finishedBuild(t testing.TB, db Store, builder int64, end time.Time, chunks int) Build {
	t.Helper()
	_, brids := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{BuilderIDs: []int64{builder}, SubmittedAt: end.Add(-time.Hour)}))
	b := must[Build](t)(db.AddBuild(NewBuild{BuilderID: builder, BuildRequestID: brids[builder], StartedAt: end.Add(-time.Hour)}))
	for _, name := range []string{"git", "shell"} {
		s := must[Step](t)(db.AddStep(b.ID, name))
		l := must[Log](t)(db.AddLog(s.ID, "stdio", "s"))
		for i := range chunks {
			must[int64](t)(db.AppendLog(l.ID, fmt.Sprintf("o%s line %d\nowith a second\n", name, i)))
		}
		if !end.IsZero() {
			ok(t, db.FinishLog(l.ID))
			ok(t, db.FinishStep(s.ID, Success, end))
		}
	}
	if !end.IsZero() {
		ok(t, db.FinishBuild(b.ID, Success, end))
		ok(t, db.CompleteBuildRequest(brids[builder], Success, end))
	}
	return must[Build](t)(db.Build(b.ID))
}

func must2[A, B any](t testing.TB) func(A, B, error) (A, B) {
	return func(a A, b B, err error) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// addChunks adds n chunks of two lines to a log in one transaction, as n
// calls of AppendLog would (were the log not finished) but faster,
// writing what AppendLog writes.
func addChunks(t testing.TB, s Store, logID int64, n int) {
	t.Helper()
	switch db := s.(type) {
	case *DB:
		chunk := binary.BigEndian.AppendUint32(nil, 2)
		chunk = db.enc.EncodeAll([]byte("oone\notwo\n"), chunk)
		ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
			return modify(tx, bucketLog, logID, func(l *Log) error {
				for range n {
					if err := bucket(tx, bucketLogChunk).Put(key2(logID, l.NumLines), chunk); err != nil {
						return err
					}
					l.NumLines += 2
				}
				return nil
			})
		}))
	case *PG:
		chunk := db.enc.EncodeAll([]byte("oone\notwo\n"), nil)
		ctx := context.Background()
		tx, err := db.pool.Begin(ctx)
		ok(t, err)
		defer tx.Rollback(ctx)
		l := must[Log](t)(pgGet[Log](ctx, tx, "logs", logID, true))
		for range n {
			_, err := tx.Exec(ctx, "INSERT INTO logchunks (log_id, first_line, num_lines, data) VALUES ($1, $2, 2, $3)", logID, l.NumLines, chunk)
			ok(t, err)
			l.NumLines += 2
		}
		ok(t, pgPutLog(ctx, tx, l))
		ok(t, tx.Commit(ctx))
	default:
		t.Fatalf("addChunks: no fast path for a %T", s)
	}
}

// logsOf returns the logs of a build's steps.
func logsOf(t testing.TB, db Store, buildID int64) []Log {
	t.Helper()
	var out []Log
	for _, s := range must[[]Step](t)(db.Steps(buildID)) {
		out = append(out, must[[]Log](t)(db.Logs(s.ID))...)
	}
	return out
}

func TestDeleteLogsBefore(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, _, _ := setup(t, db)
		old := finishedBuild(t, db, a.ID, t0.Add(-48*time.Hour), 3)
		// More chunks than one transaction deletes.
		big := finishedBuild(t, db, a.ID, t0.Add(-47*time.Hour), 3)
		addChunks(t, db, logsOf(t, db, big.ID)[1].ID, janitorChunks+50)
		recent := finishedBuild(t, db, a.ID, t0, 3)
		running := finishedBuild(t, db, a.ID, time.Time{}, 3)

		n, err := db.DeleteLogsBefore(t0.Add(-24 * time.Hour))
		if err != nil || n != 4 {
			t.Fatalf("DeleteLogsBefore = %d, %v; want 4 logs", n, err)
		}
		for _, b := range []Build{old, big} {
			for _, l := range logsOf(t, db, b.ID) {
				if l.Type != LogDeleted || l.NumLines == 0 || !l.Complete {
					t.Errorf("build %d: log after deletion: %+v", b.Number, l)
				}
				if s := must[string](t)(db.LogLines(l.ID, 0, l.NumLines)); s != "" {
					t.Errorf("build %d: deleted log still reads %q", b.Number, s)
				}
			}
		}
		for _, b := range []Build{recent, running} {
			for _, l := range logsOf(t, db, b.ID) {
				if l.Type != "s" || l.NumLines != 6 || must[string](t)(db.LogLines(l.ID, 0, 0)) == "" {
					t.Errorf("build %d: log kept changed: %+v", b.Number, l)
				}
			}
		}
		ok(t, db.Check())
		if n, err := db.DeleteLogsBefore(t0.Add(-24 * time.Hour)); err != nil || n != 0 {
			t.Errorf("second DeleteLogsBefore = %d, %v; want 0", n, err)
		}
	})
}

func TestDeleteBuildsBefore(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		a, b, _ := setup(t, db)
		day := func(d int) time.Time { return t0.Add(time.Duration(d) * 24 * time.Hour) }
		// A buildset of two requests, one of them still pending: it stays, the
		// old one's request goes with its build.
		pendingBS, brids := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID, b.ID}, SubmittedAt: day(-12)}))
		ab := must[Build](t)(db.AddBuild(NewBuild{BuilderID: a.ID, BuildRequestID: brids[a.ID], StartedAt: day(-12)}))
		ok(t, db.FinishBuild(ab.ID, Failure, day(-12)))
		ok(t, db.CompleteBuildRequest(brids[a.ID], Failure, day(-12)))
		a1 := finishedBuild(t, db, a.ID, day(-10), 2)
		a2 := finishedBuild(t, db, a.ID, day(-9), 2)
		a3 := finishedBuild(t, db, a.ID, day(-8), 2) // the newest of a: kept
		b1 := finishedBuild(t, db, b.ID, day(-7), 2)
		b2 := finishedBuild(t, db, b.ID, day(0), 2)
		b3 := finishedBuild(t, db, b.ID, time.Time{}, 2) // running
		// A request cancelled before it was built, long ago.
		cancelledBS, brids2 := must2[int64, map[int64]int64](t)(db.AddBuildset(NewBuildset{BuilderIDs: []int64{a.ID}, SubmittedAt: day(-20)}))
		ok(t, db.CompleteBuildRequest(brids2[a.ID], Cancelled, day(-20)))

		n, err := db.DeleteBuildsBefore(day(-1))
		if err != nil {
			t.Fatal(err)
		}
		if n != 4 {
			t.Errorf("deleted %d builds, want 4 (a1, a2, a's build of the pending buildset, b1)", n)
		}
		var left []int64
		for _, x := range must[[]Build](t)(db.Builds(BuildFilter{})) {
			left = append(left, x.ID)
		}
		if diff := cmp.Diff([]int64{a3.ID, b2.ID, b3.ID}, left); diff != "" {
			t.Errorf("builds left (-want +got):\n%s", diff)
		}
		for _, gone := range []Build{a1, a2, b1} {
			if _, err := db.BuildRequest(gone.BuildRequestID); err == nil {
				t.Errorf("request of deleted build %d kept", gone.ID)
			}
		}
		if _, err := db.BuildRequest(a3.BuildRequestID); err != nil {
			t.Errorf("request of the kept build: %v", err)
		}
		if _, err := db.Buildset(cancelledBS); err == nil {
			t.Errorf("old cancelled buildset kept")
		}
		if _, err := db.Buildset(pendingBS); err != nil {
			t.Errorf("pending buildset: %v", err)
		}
		if reqs := must[[]BuildRequest](t)(db.BuildRequests(BuildRequestFilter{BuildsetID: pendingBS})); len(reqs) != 1 || reqs[0].BuilderID != b.ID {
			t.Errorf("pending buildset's requests: %+v", reqs)
		}
		ok(t, db.Check())

		// Numbers go on after the kept newest build.
		next := finishedBuild(t, db, a.ID, day(0), 1)
		if next.Number != a3.Number+1 {
			t.Errorf("next build of a numbered %d, want %d", next.Number, a3.Number+1)
		}
		// a3 is no longer the newest of a.
		if n, err := db.DeleteBuildsBefore(day(-1)); err != nil || n != 1 {
			t.Errorf("second DeleteBuildsBefore = %d, %v; want 1 (a3)", n, err)
		}
		if n, err := db.DeleteBuildsBefore(day(-1)); err != nil || n != 0 {
			t.Errorf("third DeleteBuildsBefore = %d, %v; want 0", n, err)
		}
		// The logs of the kept builds are whole.
		for _, l := range logsOf(t, db, b2.ID) {
			if got := must[string](t)(db.LogLines(l.ID, 0, 1)); !strings.HasPrefix(got, "o") {
				t.Errorf("log of a kept build reads %q", got)
			}
		}
	})
}

// keyRecorder is a Publisher that keeps the keys of the events whose key
// ends in "/deleted", with their records.
type keyRecorder struct {
	mu      sync.Mutex
	deleted map[string]any // guarded by mu
}

func (r *keyRecorder) Publish(key string, rec any) {
	if !strings.HasSuffix(key, "/deleted") {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted[key] = rec
}

// TestJanitorEvents: live clients hear of what the janitor deletes: each
// log whose lines went, with its record Type LogDeleted, and each build
// deleted, as it was, under every key of a build.
func TestJanitorEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		rec := &keyRecorder{deleted: map[string]any{}}
		db := be.openWith(t, Options{Events: rec})
		a, _, _ := setup(t, db)
		old := finishedBuild(t, db, a.ID, t0.Add(-72*time.Hour), 2)
		mid := finishedBuild(t, db, a.ID, t0.Add(-48*time.Hour), 2)
		finishedBuild(t, db, a.ID, t0, 2) // the newest: kept

		if n, err := db.DeleteLogsBefore(t0.Add(-24 * time.Hour)); err != nil || n != 4 {
			t.Fatalf("DeleteLogsBefore = %d, %v; want 4", n, err)
		}
		rec.mu.Lock()
		for _, b := range []Build{old, mid} {
			for _, l := range logsOf(t, db, b.ID) {
				for _, k := range []string{fmt.Sprintf("logs/%d/deleted", l.ID), fmt.Sprintf("steps/%d/logs/%s/deleted", l.StepID, l.Slug)} {
					got, ok := rec.deleted[k].(Log)
					if !ok || got.Type != LogDeleted || got.ID != l.ID {
						t.Errorf("event %s: %+v, want the log marked deleted", k, rec.deleted[k])
					}
				}
			}
		}
		rec.mu.Unlock()

		if n, err := db.DeleteBuildsBefore(t0.Add(-24 * time.Hour)); err != nil || n != 2 {
			t.Fatalf("DeleteBuildsBefore = %d, %v; want 2", n, err)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, b := range []Build{old, mid} {
			for _, k := range []string{
				fmt.Sprintf("builds/%d/deleted", b.ID),
				fmt.Sprintf("builders/%d/builds/%d/deleted", b.BuilderID, b.Number),
				fmt.Sprintf("workers/%d/builds/%d/deleted", b.WorkerID, b.ID),
			} {
				if got, ok := rec.deleted[k].(Build); !ok || got.ID != b.ID {
					t.Errorf("event %s: %+v, want build %d", k, rec.deleted[k], b.ID)
				}
			}
		}
		if len(rec.deleted) != 2*2*2+2*3 {
			t.Errorf("%d deletion events, want %d: %v", len(rec.deleted), 2*2*2+2*3, slices.Sorted(maps.Keys(rec.deleted)))
		}
	})
}
