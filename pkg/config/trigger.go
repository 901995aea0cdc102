package config

import "slices"

// triggerStep reads the keys of a trigger step, as buildbot's Trigger:
// scheduler_names (required, each a triggerable scheduler), wait_for_finish
// (default false), set_properties (a table of properties for the triggered
// builds), update_source_stamp (default true: the triggered builds build the
// revision this build got).
func (d *decoder) triggerStep(t *table, s *Step) {
	s.UpdateSourceStamp = true
	names, ok := t.strings("scheduler_names")
	switch {
	case !t.has("scheduler_names"):
		t.errorf("scheduler_names", "required for a trigger step")
	case ok && len(names) == 0:
		t.errorf("scheduler_names", "must name at least one scheduler")
	case ok:
		s.SchedulerNames = names
		for _, n := range names {
			d.triggers = append(d.triggers, triggerRef{at: t.path.key("scheduler_names"), name: n})
		}
	}
	s.WaitForFinish, _ = t.boolean("wait_for_finish")
	if b, ok := t.boolean("update_source_stamp"); ok {
		s.UpdateSourceStamp = b
	}
	if v, ok := t.get("set_properties"); ok {
		m, isTable := v.(map[string]any)
		if !isTable {
			t.errorf("set_properties", "expected a table, got %s", typeName(v))
		} else {
			s.SetProperties = m
		}
	}
	d.triggerSources(t, s)
}

// checkTriggers reports trigger steps naming a scheduler that is not a
// triggerable one.
func (d *decoder) checkTriggers(scheds []Scheduler) {
	for _, ref := range d.triggers {
		i := slices.IndexFunc(scheds, func(s Scheduler) bool { return s.Name == ref.name })
		switch {
		case i < 0:
			d.errorAt(ref.at, ref.at, "unknown scheduler %q", ref.name)
		case scheds[i].Type != "triggerable" && scheds[i].Type != "nightly_triggerable":
			d.errorAt(ref.at, ref.at, "scheduler %q is a %s scheduler, not a triggerable one", ref.name, scheds[i].Type)
		}
	}
	d.checkUpstreams(scheds)
}
