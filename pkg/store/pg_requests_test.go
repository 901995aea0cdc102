package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// openMasters opens n stores on one new database, each with its own
// connections, as n masters sharing it.
func openMasters(t *testing.T, n int) []*PG {
	t.Helper()
	url := pg.NewDatabase(t)
	ps := make([]*PG, n)
	for i := range ps {
		ps[i] = openPGTest(t, url, Options{})
	}
	return ps
}

// race runs fn(i) for each of n goroutines at once and waits for them.
func race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// TestPGClaimRace: masters race to claim the same requests, each trying
// them all in its own order; every request is claimed by exactly one of
// them, the one its record names, and the others get ErrClaimed.
func TestPGClaimRace(t *testing.T) {
	t.Parallel()
	const masters, builders, buildsets = 4, 3, 40
	ps := openMasters(t, masters)
	var bids []int64
	for i := range builders {
		bids = append(bids, must[Builder](t)(ps[0].EnsureBuilder(fmt.Sprint("b", i))).ID)
	}
	var brids []int64
	for range buildsets {
		_, m, err := ps[0].AddBuildset(NewBuildset{BuilderIDs: bids})
		ok(t, err)
		for _, b := range bids {
			brids = append(brids, m[b])
		}
	}
	mids := make([]int64, masters)
	for i, p := range ps {
		mids[i] = must[Master](t)(p.EnsureMaster(fmt.Sprint("m", i))).ID
	}
	won := make([][]int64, masters)
	race(masters, func(i int) {
		order := slices.Clone(brids)
		rand.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, id := range order {
			err := ps[i].ClaimBuildRequest(id, mids[i], t0)
			switch {
			case err == nil:
				won[i] = append(won[i], id)
			case !errors.Is(err, ErrClaimed):
				t.Errorf("master %d: %v", i, err)
			}
		}
	})
	winner := map[int64]int64{}
	for i, ids := range won {
		for _, id := range ids {
			if m, dup := winner[id]; dup {
				t.Errorf("request %d claimed by masters %d and %d", id, m, mids[i])
			}
			winner[id] = mids[i]
		}
	}
	for _, id := range brids {
		br := must[BuildRequest](t)(ps[1].BuildRequest(id))
		if !br.Claimed || br.ClaimedByMasterID != winner[id] {
			t.Errorf("request %d: claimed %v by %d, won by %d", id, br.Claimed, br.ClaimedByMasterID, winner[id])
		}
	}
	if n, _, err := ps[2].PendingStats(); err != nil || n != 0 {
		t.Errorf("PendingStats: %d pending, %v; want none", n, err)
	}
}

// TestPGCompleteRace: masters complete the requests of each buildset at
// once, one request each; every buildset completes, once, with the worst
// result of its requests.
func TestPGCompleteRace(t *testing.T) {
	t.Parallel()
	const masters, buildsets = 4, 30
	ps := openMasters(t, masters)
	var events [masters]keptEvents
	var bids []int64
	for i := range masters {
		bids = append(bids, must[Builder](t)(ps[0].EnsureBuilder(fmt.Sprint("b", i))).ID)
	}
	// Each master publishes its own writes' events on a bus of its own.
	for i, p := range ps {
		p.events = &events[i]
	}
	var bsids []int64
	brids := map[int64]map[int64]int64{}
	for range buildsets {
		bsid, m, err := ps[0].AddBuildset(NewBuildset{BuilderIDs: bids})
		ok(t, err)
		bsids = append(bsids, bsid)
		brids[bsid] = m
	}
	results := []int{Success, Warnings, Failure, Skipped}
	race(masters, func(i int) {
		for _, bsid := range bsids {
			if err := ps[i].CompleteBuildRequest(brids[bsid][bids[i]], results[(i+int(bsid))%masters], t0); err != nil {
				t.Errorf("master %d: %v", i, err)
			}
		}
	})
	completed := map[string]int{}
	for i := range events {
		for _, e := range events[i].events() {
			completed[e.key]++
		}
	}
	for _, bsid := range bsids {
		bs := must[Buildset](t)(ps[0].Buildset(bsid))
		if !bs.Complete || bs.Results != Failure {
			t.Errorf("buildset %d: complete %v, results %d; want complete, %d", bsid, bs.Complete, bs.Results, Failure)
		}
		if n := completed[key("buildsets", bsid, "complete")]; n != 1 {
			t.Errorf("buildset %d: completed %d times", bsid, n)
		}
	}
	if n := must[int](t)(ps[1].CountBuildsets(BuildsetFilter{Complete: ptr(false)})); n != 0 {
		t.Errorf("%d buildsets incomplete", n)
	}
}

// TestPGClaimLocked: a claim loses at once to another master's claim in
// flight (its transaction holding the row), and does not lose to a build
// being added on the request (which holds its row KEY SHARE).
func TestPGClaimLocked(t *testing.T) {
	t.Parallel()
	ps := openMasters(t, 2)
	b := must[Builder](t)(ps[0].EnsureBuilder("a"))
	_, brids, err := ps[0].AddBuildset(NewBuildset{BuilderIDs: []int64{b.ID}})
	ok(t, err)
	id := brids[b.ID]
	ctx, cancel := pgCtx()
	defer cancel()
	hold := func(lock string) func() {
		tx, err := ps[1].pool.Begin(ctx)
		ok(t, err)
		_, err = tx.Exec(ctx, "SELECT 1 FROM buildrequests WHERE id = $1 FOR "+lock, id)
		ok(t, err)
		return func() { tx.Rollback(ctx) }
	}
	release := hold("NO KEY UPDATE") // as a claim of master 2, not committed yet
	if err := ps[0].ClaimBuildRequest(id, 1, t0); !errors.Is(err, ErrClaimed) {
		t.Errorf("claim while another master claims: %v, want ErrClaimed", err)
	}
	release()
	release = hold("KEY SHARE") // as AddBuild naming the request
	defer release()
	ok(t, ps[0].ClaimBuildRequest(id, 1, t0))
	if br := must[BuildRequest](t)(ps[0].BuildRequest(id)); !br.Claimed || br.ClaimedByMasterID != 1 {
		t.Errorf("request %+v, want claimed by master 1", br)
	}
}
