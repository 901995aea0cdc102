// Package scheduler turns changes, time, force requests and trigger steps
// into buildsets and build requests in the store.
//
// A [Set] holds the configured schedulers: single_branch and any_branch
// (fed by [Set.AddChanges]), periodic and nightly (timed by [Set.Run]),
// force ([Set.Force]) and triggerable ([Set.Trigger]). What a scheduler
// must remember across a master restart (changes waiting on a
// tree_stable_timer, a timed scheduler's last build and gathered changes,
// the last change each scheduler handled) is kept in the store's object
// state under "scheduler:NAME".
//
// A master killed with SIGKILL loses no change and builds none twice. At
// its start ([New]), the change schedulers, and the periodic and nightly
// ones with only_if_changed, take the changes stored after the last they
// handled (stored while the master was down, or stored but not yet
// offered when it died), leaving out those their buildsets already build;
// a periodic or nightly scheduler that died while building for a time
// (recorded before the buildset is added) takes that time as its last
// build and drops the changes it built if the buildset was added, so that
// neither the time nor the changes give a second build, and builds that
// time at once if it was not.
package scheduler
