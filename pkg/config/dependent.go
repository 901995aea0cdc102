package config

import "slices"

// Two schedulers that follow other things than changes, as buildbot's:
//
//   - dependent (buildbot's Dependent): upstream names another scheduler
//     (required; not itself). When a buildset of the upstream scheduler,
//     added after the dependent one started, completes with SUCCESS or
//     WARNINGS, the dependent scheduler adds a buildset for its builders
//     with the same source stamps, reason "downstream".
//   - nightly_triggerable (buildbot's NightlyTriggerable): the nightly
//     keys (minute, hour, day_of_month, month, day_of_week, or cron), no
//     change filter. A trigger step may name it: the trigger is recorded
//     (its source stamps and set_properties, the last one wins) and the
//     step goes on at once; at the next cron time the scheduler builds
//     the recorded trigger, if there is one, else nothing.

// dependent reads the keys of a dependent scheduler.
func (d *decoder) dependent(t *table, s *Scheduler) {
	up, ok := t.required("upstream")
	if !ok {
		return
	}
	if up == s.Name {
		t.errorf("upstream", "a scheduler cannot depend on itself")
		return
	}
	s.Upstream = up
	d.upstreams = append(d.upstreams, triggerRef{at: t.path.key("upstream"), name: up})
}

// checkUpstreams reports dependent schedulers whose upstream is not a
// scheduler.
func (d *decoder) checkUpstreams(scheds []Scheduler) {
	for _, ref := range d.upstreams {
		if !slices.ContainsFunc(scheds, func(s Scheduler) bool { return s.Name == ref.name }) {
			d.errorAt(ref.at, ref.at, "unknown scheduler %q", ref.name)
		}
	}
}
