package store

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestPGEnsureRace: masters starting together ensure the same masters,
// builders and workers at once; each name gets one id, and one "new"
// event.
func TestPGEnsureRace(t *testing.T) {
	t.Parallel()
	const masters, names = 4, 10
	ps := openMasters(t, masters)
	var events [masters]keptEvents
	for i, p := range ps {
		p.events = &events[i] // this master's own events only
	}
	ids := make([][3][]int64, masters)
	race(masters, func(i int) {
		for n := range names {
			name := fmt.Sprint("x", n)
			m, err := ps[i].EnsureMaster(name)
			if err != nil {
				t.Error(err)
				return
			}
			b, err := ps[i].EnsureBuilder(name)
			if err != nil {
				t.Error(err)
				return
			}
			w, err := ps[i].EnsureWorker(name)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i][0] = append(ids[i][0], m.ID)
			ids[i][1] = append(ids[i][1], b.ID)
			ids[i][2] = append(ids[i][2], w.ID)
		}
	})
	for i := 1; i < masters; i++ {
		for k := range 3 {
			if !slices.Equal(ids[i][k], ids[0][k]) {
				t.Errorf("master %d got ids %v, master 0 %v", i, ids[i][k], ids[0][k])
			}
		}
	}
	if n := len(must[[]Builder](t)(ps[0].Builders())); n != names {
		t.Errorf("%d builders, want %d", n, names)
	}
	if n := len(must[[]Worker](t)(ps[0].Workers())); n != names {
		t.Errorf("%d workers, want %d", n, names)
	}
	if n := len(must[[]Master](t)(ps[0].Masters())); n != names {
		t.Errorf("%d masters, want %d", n, names)
	}
	created := map[string]int{}
	for i := range events {
		for _, e := range events[i].events() {
			created[e.key]++
		}
	}
	for n := range int64(names) {
		for _, k := range []string{key("builders", n+1, "new"), key("workers", n+1, "new")} {
			if created[k] != 1 {
				t.Errorf("%s published %d times", k, created[k])
			}
		}
	}
}

// TestPGWorkerConnectedRace: a worker connects to every master at once;
// it is recorded connected to all of them.
func TestPGWorkerConnectedRace(t *testing.T) {
	t.Parallel()
	const masters = 6
	ps := openMasters(t, masters)
	w := must[Worker](t)(ps[0].EnsureWorker("w"))
	race(masters, func(i int) {
		if err := ps[i].WorkerConnected(w.ID, int64(i+1), map[string]string{"os": "linux"}); err != nil {
			t.Error(err)
		}
	})
	got := must[Worker](t)(ps[0].Worker(w.ID))
	slices.Sort(got.ConnectedTo)
	if want := []int64{1, 2, 3, 4, 5, 6}; !slices.Equal(got.ConnectedTo, want) {
		t.Errorf("connected to %v, want %v", got.ConnectedTo, want)
	}
}

// TestPGEnsureBuilderWhileBuilding: ensuring a builder (a master
// starting or reconfigured) does not wait for another master's build
// starting on it, which holds the builder's row.
func TestPGEnsureBuilderWhileBuilding(t *testing.T) {
	t.Parallel()
	ps := openMasters(t, 2)
	b := must[Builder](t)(ps[0].EnsureBuilder("a"))
	ctx, cancel := pgCtx()
	defer cancel()
	tx, err := ps[1].pool.Begin(ctx)
	ok(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "UPDATE builders SET next_number = next_number + 1 WHERE id = $1", b.ID) // as AddBuild
	ok(t, err)
	done := make(chan error, 1)
	go func() {
		got, err := ps[0].EnsureBuilder("a")
		if err == nil && got.ID != b.ID {
			err = fmt.Errorf("builder %d, want %d", got.ID, b.ID)
		}
		done <- err
	}()
	select {
	case err := <-done:
		ok(t, err)
	case <-time.After(10 * time.Second):
		tx.Rollback(ctx)
		t.Errorf("EnsureBuilder waited for a transaction holding the builder: %v", <-done)
	}
}
