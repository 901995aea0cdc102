package store

// Methods of PG not written yet: the helper writing the builds part deletes
// each one here as it writes it. This file must be gone before main is
// released.

import (
	"encoding/json"
	"io"
	"time"
)

var _ = json.Valid
var _ io.Writer
var _ time.Time

func (pg *PG) AddBuild(nb NewBuild) (Build, error)                             { return Build{}, errPGTodo }
func (pg *PG) Build(id int64) (Build, error)                                   { return Build{}, errPGTodo }
func (pg *PG) BuildByNumber(builderID, number int64) (Build, error)            { return Build{}, errPGTodo }
func (pg *PG) Builds(f BuildFilter) ([]Build, error)                           { return nil, errPGTodo }
func (pg *PG) CountBuilds(f BuildFilter) (int, error)                          { return 0, errPGTodo }
func (pg *PG) SetBuildStateString(id int64, s string) error                    { return errPGTodo }
func (pg *PG) SetBuildProperty(id int64, name string, p Property) error        { return errPGTodo }
func (pg *PG) EndBuild(id int64, state string, results int, t time.Time) error { return errPGTodo }
func (pg *PG) FinishBuild(id int64, results int, t time.Time) error            { return errPGTodo }
func (pg *PG) AbandonBuilds(masterID int64, t time.Time) ([]int64, error)      { return nil, errPGTodo }
func (pg *PG) AbandonBuild(buildID int64, t time.Time) (bool, error)           { return false, errPGTodo }
func (pg *PG) SetResumePoint(p ResumePoint) error                              { return errPGTodo }
func (pg *PG) ResumePoints(masterID int64) ([]ResumePoint, error)              { return nil, errPGTodo }
func (pg *PG) DeleteResumePoint(buildID int64) error                           { return errPGTodo }
func (pg *PG) AddStep(buildID int64, name string) (Step, error)                { return Step{}, errPGTodo }
func (pg *PG) StartNewStep(buildID int64, name string, t time.Time) (Step, error) {
	return Step{}, errPGTodo
}
func (pg *PG) StartStep(id int64, t time.Time) error                                { return errPGTodo }
func (pg *PG) SetStepStateString(id int64, str string) error                        { return errPGTodo }
func (pg *PG) SetStepHidden(id int64, hidden bool) error                            { return errPGTodo }
func (pg *PG) AddStepURL(id int64, name, url string) error                          { return errPGTodo }
func (pg *PG) FinishStep(id int64, results int, t time.Time) error                  { return errPGTodo }
func (pg *PG) EndStep(id int64, state string, results int, t time.Time) error       { return errPGTodo }
func (pg *PG) Step(id int64) (Step, error)                                          { return Step{}, errPGTodo }
func (pg *PG) Steps(buildID int64) ([]Step, error)                                  { return nil, errPGTodo }
func (pg *PG) StepByNumber(buildID int64, number int) (Step, error)                 { return Step{}, errPGTodo }
func (pg *PG) StepByName(buildID int64, name string) (Step, error)                  { return Step{}, errPGTodo }
func (pg *PG) AddLog(stepID int64, name, typ string) (Log, error)                   { return Log{}, errPGTodo }
func (pg *PG) AppendLog(logID int64, lines string) (first int64, err error)         { return 0, errPGTodo }
func (pg *PG) FinishLog(logID int64) error                                          { return errPGTodo }
func (pg *PG) Log(id int64) (Log, error)                                            { return Log{}, errPGTodo }
func (pg *PG) Logs(stepID int64) ([]Log, error)                                     { return nil, errPGTodo }
func (pg *PG) LogBySlug(stepID int64, slug string) (Log, error)                     { return Log{}, errPGTodo }
func (pg *PG) LogLines(logID int64, first, last int64) (string, error)              { return "", errPGTodo }
func (pg *PG) WriteLog(logID int64, w io.Writer, fn func(line string) string) error { return errPGTodo }
func (pg *PG) DeleteLogsBefore(t time.Time) (n int, err error)                      { return 0, errPGTodo }
func (pg *PG) DeleteBuildsBefore(t time.Time) (n int, err error)                    { return 0, errPGTodo }
func (pg *PG) AddWorkerMissing(name string, lastSeen time.Time) error               { return errPGTodo }
func (pg *PG) OutboxAfter(seq int64, limit int) ([]OutboxEntry, error)              { return nil, errPGTodo }
func (pg *PG) OutboxFinishedSeq(buildID int64) (int64, bool, error)                 { return 0, false, errPGTodo }
func (pg *PG) OutboxCursor(reporter string) (int64, error)                          { return 0, errPGTodo }
func (pg *PG) SkipOutbox(reporter string, seq int64) error                          { return errPGTodo }
func (pg *PG) SaveDelivery(d Delivery, done bool) error                             { return errPGTodo }
func (pg *PG) Delivery(reporter string, buildID, seq int64) (Delivery, bool, error) {
	return Delivery{}, false, errPGTodo
}
func (pg *PG) Deliveries(buildID int64) ([]Delivery, error) { return nil, errPGTodo }
func (pg *PG) FailedDeliveries() (int, error)               { return 0, errPGTodo }
func (pg *PG) PruneOutbox(keep []string) error              { return errPGTodo }
