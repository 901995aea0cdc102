// Package scheduler turns changes, time, force requests and trigger steps
// into buildsets and build requests in the store.
//
// A [Set] holds the configured schedulers: single_branch and any_branch
// (fed by [Set.AddChanges]), periodic and nightly (timed by [Set.Run]),
// force ([Set.Force]) and triggerable ([Set.Trigger]). What a scheduler
// must remember across a master restart (changes waiting on a
// tree_stable_timer, a timed scheduler's last build and gathered changes)
// is kept in the store's object state under "scheduler:NAME".
package scheduler
