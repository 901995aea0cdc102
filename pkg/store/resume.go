package store

import (
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketResume holds the resume points: buildid → ResumePoint. It is made
// by the first SetResumePoint, so stores that never used it lack it.
const bucketResume = "build_resume"

// ResumePoint is what a master that stopped cleanly with
// finish_steps_on_restart records of a build whose running shell step it
// left to its worker: enough to rebuild the build when it starts again
// and the worker reports the command. The build stays incomplete, with
// its step and the step's stdio log, meanwhile.
type ResumePoint struct {
	BuildID  int64
	MasterID int64
	Builder  string // the builder's name
	Worker   string // the worker's name
	StepID   int64
	LogID    int64 // the step's stdio log, not finished
	// Logfiles are the logs of the step's logfiles, by name, not
	// finished either.
	Logfiles map[string]int64 `json:",omitempty"`
	// StepIndex is the step's index among the builder's configured steps,
	// StepName its configured name (to check the config still has it).
	StepIndex int
	StepName  string
	// Results and Halted are the build's state before the step: its
	// results so far, and whether a failed step stopped all but the
	// always_run steps.
	Results int
	Halted  bool
	// ResumeKey names the command on the worker; Offset counts the bytes
	// of its output the log has.
	ResumeKey string
	Offset    int64
	At        time.Time // when the master stopped
	// Warnings is the state, at Offset, of the warning counter of a step
	// with warning_pattern; nil for a step that counts none. The counter
	// sees every byte of output and the log only what log_max_size
	// leaves, so the state is kept here rather than recounted from the
	// log.
	Warnings *WarningState `json:",omitempty"`
}

// WarningState is a step's warning counter between two masters: the
// warning lines so far, and the unfinished last line of stdout and of
// stderr. Bytes, not strings, so that output that is not UTF-8 survives
// the JSON encoding unchanged.
type WarningState struct {
	Rules   string // the warning_pattern and suppress the state was counted with
	Lines   [][]byte
	Partial [2][]byte
}

// SetResumePoint records p, replacing the resume point of its build.
func (db *DB) SetResumePoint(p ResumePoint) error {
	err := db.update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists([]byte(bucketResume)); err != nil {
			return err
		}
		b, err := get[Build](tx, bucketBuild, p.BuildID)
		if err != nil {
			return err
		}
		if b.Complete {
			return fmt.Errorf("build %d is complete", p.BuildID)
		}
		return put(tx, bucketResume, p.BuildID, &p)
	}, func(emit) {})
	if err != nil {
		return fmt.Errorf("set resume point of build %d: %w", p.BuildID, err)
	}
	return nil
}

// ResumePoints lists the resume points of masterID, by build id.
func (db *DB) ResumePoints(masterID int64) ([]ResumePoint, error) {
	var ps []ResumePoint
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if bucket(tx, bucketResume) == nil {
			return nil
		}
		all, err := list[ResumePoint](tx, bucketResume)
		if err != nil {
			return err
		}
		ps = slices.DeleteFunc(all, func(p ResumePoint) bool { return p.MasterID != masterID })
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list resume points: %w", err)
	}
	return ps, nil
}

// DeleteResumePoint removes the resume point of a build; none is fine.
func (db *DB) DeleteResumePoint(buildID int64) error {
	err := db.update(func(tx *bolt.Tx) error {
		if b := bucket(tx, bucketResume); b != nil {
			return b.Delete(itob(buildID))
		}
		return nil
	}, func(emit) {})
	if err != nil {
		return fmt.Errorf("delete resume point of build %d: %w", buildID, err)
	}
	return nil
}

// AbandonBuild ends one incomplete build as AbandonBuilds does: with Retry
// at t (zero means now), its incomplete steps with Retry, its logs
// finished, its build request unclaimed so that it runs again; its resume
// point goes. A complete build is left alone (false).
func (db *DB) AbandonBuild(buildID int64, t time.Time) (bool, error) {
	t = at(t)
	a := abandoned{outbox: db.outboxOn()}
	err := db.update(func(tx *bolt.Tx) error {
		if rb := bucket(tx, bucketResume); rb != nil {
			if err := rb.Delete(itob(buildID)); err != nil {
				return err
			}
		}
		b, err := get[Build](tx, bucketBuild, buildID)
		if err != nil {
			return err
		}
		if b.Complete {
			return nil
		}
		if err := a.build(tx, b, t); err != nil {
			return err
		}
		br, err := get[BuildRequest](tx, bucketRequest, b.BuildRequestID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if br.Claimed && !br.Complete {
			return a.request(tx, br, t)
		}
		return nil
	}, a.publish)
	if err != nil {
		return false, fmt.Errorf("abandon build %d: %w", buildID, err)
	}
	if len(a.finished) > 0 && a.outbox {
		db.notifyOutbox()
	}
	return len(a.finished) > 0, nil
}
