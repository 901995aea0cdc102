package store

// Methods of PG not written yet: the helper writing the core part deletes
// each one here as it writes it. This file must be gone before main is
// released.

import (
	"encoding/json"
	"errors"
	"io"
	"time"
)

var _ = json.Valid
var _ io.Writer
var _ time.Time

func (pg *PG) EnsureMaster(name string) (Master, error)                    { return Master{}, errPGTodo }
func (pg *PG) SetMasterActive(id int64, active bool, seen time.Time) error { return errPGTodo }
func (pg *PG) SetMasterWorkerCert(id int64, notAfter time.Time) error      { return errPGTodo }
func (pg *PG) Masters() ([]Master, error)                                  { return nil, errPGTodo }
func (pg *PG) EnsureBuilder(name string) (Builder, error)                  { return Builder{}, errPGTodo }
func (pg *PG) UpdateBuilder(id int64, description string, tags []string, masterIDs []int64) error {
	return errPGTodo
}
func (pg *PG) Builders() ([]Builder, error)                                     { return nil, errPGTodo }
func (pg *PG) Builder(id int64) (Builder, error)                                { return Builder{}, errPGTodo }
func (pg *PG) BuilderByName(name string) (Builder, error)                       { return Builder{}, errPGTodo }
func (pg *PG) EnsureWorker(name string) (Worker, error)                         { return Worker{}, errPGTodo }
func (pg *PG) SetWorkerConfiguredOn(id int64, on []BuilderMaster) error         { return errPGTodo }
func (pg *PG) WorkerConnected(id, masterID int64, info map[string]string) error { return errPGTodo }
func (pg *PG) WorkerDisconnected(id, masterID int64) error                      { return errPGTodo }
func (pg *PG) SetWorkerPaused(id int64, paused, graceful bool) error            { return errPGTodo }
func (pg *PG) Workers() ([]Worker, error)                                       { return nil, errPGTodo }
func (pg *PG) Worker(id int64) (Worker, error)                                  { return Worker{}, errPGTodo }
func (pg *PG) WorkerByName(name string) (Worker, error)                         { return Worker{}, errPGTodo }
func (pg *PG) AddChange(c Change) (Change, error)                               { return Change{}, errPGTodo }
func (pg *PG) AddChanges(changes []Change) ([]Change, error)                    { return nil, errPGTodo }
func (pg *PG) AddChangesAndState(changes []Change, objectName, key string, value json.RawMessage) ([]Change, error) {
	return nil, errPGTodo
}
func (pg *PG) Change(id int64) (Change, error)          { return Change{}, errPGTodo }
func (pg *PG) Changes(f ChangeFilter) ([]Change, error) { return nil, errPGTodo }
func (pg *PG) CountChanges(f ChangeFilter) (int, error) { return 0, errPGTodo }
func (pg *PG) GetState(objectName, key string) (json.RawMessage, bool, error) {
	return nil, false, errPGTodo
}
func (pg *PG) SetState(objectName, key string, value json.RawMessage) error { return errPGTodo }
func (pg *PG) AddBuildset(nb NewBuildset) (bsid int64, brids map[int64]int64, err error) {
	return 0, nil, errPGTodo
}
func (pg *PG) Buildset(id int64) (Buildset, error)                        { return Buildset{}, errPGTodo }
func (pg *PG) Buildsets(complete *bool) ([]Buildset, error)               { return nil, errPGTodo }
func (pg *PG) BuildsetPage(f BuildsetFilter) ([]Buildset, error)          { return nil, errPGTodo }
func (pg *PG) CountBuildsets(f BuildsetFilter) (int, error)               { return 0, errPGTodo }
func (pg *PG) BuildsetsOfSourceStamp(ssid int64) ([]Buildset, error)      { return nil, errPGTodo }
func (pg *PG) SourceStamp(id int64) (SourceStamp, error)                  { return SourceStamp{}, errPGTodo }
func (pg *PG) BuildRequest(id int64) (BuildRequest, error)                { return BuildRequest{}, errPGTodo }
func (pg *PG) BuildRequests(f BuildRequestFilter) ([]BuildRequest, error) { return nil, errPGTodo }
func (pg *PG) CountBuildRequests(f BuildRequestFilter) (int, error)       { return 0, errPGTodo }
func (pg *PG) PendingBuildRequests(limits map[int64]int) ([]BuildRequest, error) {
	return nil, errPGTodo
}
func (pg *PG) PendingStats() (n int, oldest time.Time, err error)            { return 0, time.Time{}, errPGTodo }
func (pg *PG) ClaimBuildRequest(id, masterID int64, t time.Time) error       { return errPGTodo }
func (pg *PG) UnclaimBuildRequest(id int64) error                            { return errPGTodo }
func (pg *PG) CompleteBuildRequest(id int64, results int, t time.Time) error { return errPGTodo }

var errPGTodo = errors.New("store: this PostgreSQL method is not written yet")
