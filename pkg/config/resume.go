package config

import "time"

// DefaultFinishStepsWait is how long a restarted master waits for the
// workers of the steps it left running, when finish_steps_wait is unset.
const DefaultFinishStepsWait = 5 * time.Minute

// FinishSteps is what the top-level finish_steps_on_restart and
// finish_steps_wait say: whether a master that stops lets its workers
// finish the shell steps they run, to pick the builds up when it starts
// again. buildbot cannot do this.
type FinishSteps struct {
	// OnRestart is finish_steps_on_restart. False (the default) is
	// buildbot's behaviour: a master that stops interrupts its running
	// builds, which end RETRY and run again. True: a master that stops
	// cleanly leaves the shell steps running on their workers; when it
	// starts again, it waits up to Wait for each such build's worker,
	// takes the step's output and result from it, and goes on with the
	// build's next steps under the same build number.
	OnRestart bool
	// Wait is finish_steps_wait: how long the restarted master waits for
	// the workers of the builds it left running; then those builds end
	// RETRY and run again. Zero (unset) means DefaultFinishStepsWait; set to
	// zero in the file, it is an error.
	Wait time.Duration
}

// finishSteps reads finish_steps_on_restart and finish_steps_wait into c.
func (d *decoder) finishSteps(t *table, c *Config) {
	c.FinishSteps.OnRestart, _ = t.boolean("finish_steps_on_restart")
	if w, ok := t.duration("finish_steps_wait"); ok {
		if w.Duration == 0 {
			t.errorf("finish_steps_wait", "must be positive")
		} else {
			c.FinishSteps.Wait = w.Duration
		}
	}
}
