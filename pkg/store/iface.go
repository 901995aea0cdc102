package store

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Store is the master's store, whatever keeps it: [DB] on bbolt (one master,
// no setup) or [PG] on PostgreSQL (one or several masters sharing it). Its
// behaviour is defined once, by the shared test suite both must pass: every
// method means the same on both, publishes the same events, and returns an
// error wrapping [ErrNotFound] for a missing id or name.
type Store interface {
	// Close releases the store; nothing may use it afterwards.
	Close() error
	// Check verifies the store's invariants, returning every breach.
	Check() error
	// SetOutbox turns the reporters' outbox on: notify is called after
	// every commit that added an entry. nil turns it off.
	SetOutbox(notify func())
	// Size is the store's size in bytes, for the metrics.
	Size() (int64, error)

	// Lock takes the lock called name among the masters sharing the store,
	// without waiting: ok is false when another master holds it. Schedulers,
	// pollers, reporters and the janitor run only on the master holding
	// "leader", so that each runs once. On bbolt, whose file one master
	// holds, it always succeeds.
	Lock(name string) (l Lock, ok bool, err error)

	// SendControl sends a control action to the master that holds what it
	// acts on (see [Control]); an error wraps ErrMasterInactive when that
	// master is not active, which is always so on bbolt. SetControl sets
	// the handler of the messages sent to this store's master; it must
	// not block.
	SendControl(c Control) error
	SetControl(fn func(Control))

	EnsureMaster(name string) (Master, error)
	SetMasterActive(id int64, active bool, seen time.Time) error
	Now() (time.Time, error)
	Heartbeat(id int64) (alive bool, err error)
	ExpireMaster(id int64, seenBefore, now time.Time) (expired bool, err error)
	AbandonStoppedMaster(id int64, stoppedBefore, now time.Time) (abandoned bool, err error)
	SetMasterWorkerCert(id int64, notAfter time.Time) error
	Masters() ([]Master, error)

	EnsureBuilder(name string) (Builder, error)
	UpdateBuilder(id int64, description string, tags []string, masterIDs []int64) error
	SetBuilderOnMaster(builderID, masterID int64, on bool) error
	SetBuilderInfo(id int64, description string, tags []string) error
	Builders() ([]Builder, error)
	Builder(id int64) (Builder, error)
	BuilderByName(name string) (Builder, error)

	EnsureWorker(name string) (Worker, error)
	SetWorkerConfiguredOn(id int64, on []BuilderMaster) error
	SetWorkerConfiguredOnMaster(workerID, masterID int64, on []BuilderMaster) error
	WorkerConnected(id, masterID int64, info map[string]string) error
	WorkerDisconnected(id, masterID int64) error
	SetWorkerPaused(id int64, paused, graceful bool) error
	Workers() ([]Worker, error)
	Worker(id int64) (Worker, error)
	WorkerByName(name string) (Worker, error)

	AddChange(c Change) (Change, error)
	AddChanges(changes []Change) ([]Change, error)
	AddChangesAndState(changes []Change, objectName, key string, value json.RawMessage) ([]Change, error)
	Change(id int64) (Change, error)
	Changes(f ChangeFilter) ([]Change, error)
	CountChanges(f ChangeFilter) (int, error)
	GetState(objectName, key string) (json.RawMessage, bool, error)
	SetState(objectName, key string, value json.RawMessage) error

	AddBuildset(nb NewBuildset) (bsid int64, brids map[int64]int64, err error)
	Buildset(id int64) (Buildset, error)
	Buildsets(complete *bool) ([]Buildset, error)
	BuildsetPage(f BuildsetFilter) ([]Buildset, error)
	CountBuildsets(f BuildsetFilter) (int, error)
	BuildsetsOfSourceStamp(ssid int64) ([]Buildset, error)
	SourceStamp(id int64) (SourceStamp, error)

	BuildRequest(id int64) (BuildRequest, error)
	BuildRequests(f BuildRequestFilter) ([]BuildRequest, error)
	CountBuildRequests(f BuildRequestFilter) (int, error)
	PendingBuildRequests(limits map[int64]int) ([]BuildRequest, error)
	PendingStats() (n int, oldest time.Time, err error)
	ClaimBuildRequest(id, masterID int64, t time.Time) error
	UnclaimBuildRequest(id int64) error
	CompleteBuildRequest(id int64, results int, t time.Time) error
	UnclaimBuildRequestOf(id, masterID int64) error
	CompleteBuildRequestOf(id, masterID int64, results int, t time.Time) error

	AddBuild(nb NewBuild) (Build, error)
	Build(id int64) (Build, error)
	BuildByNumber(builderID, number int64) (Build, error)
	Builds(f BuildFilter) ([]Build, error)
	CountBuilds(f BuildFilter) (int, error)
	SetBuildStateString(id int64, s string) error
	SetBuildProperty(id int64, name string, p Property) error
	EndBuild(id int64, state string, results int, t time.Time) error
	FinishBuild(id int64, results int, t time.Time) error
	AbandonBuilds(masterID int64, t time.Time) ([]int64, error)
	AbandonBuild(buildID int64, t time.Time) (bool, error)
	SetResumePoint(p ResumePoint) error
	ResumePoints(masterID int64) ([]ResumePoint, error)
	DeleteResumePoint(buildID int64) error

	AddStep(buildID int64, name string) (Step, error)
	StartNewStep(buildID int64, name string, t time.Time) (Step, error)
	StartStep(id int64, t time.Time) error
	SetStepStateString(id int64, str string) error
	SetStepHidden(id int64, hidden bool) error
	AddStepURL(id int64, name, url string) error
	FinishStep(id int64, results int, t time.Time) error
	EndStep(id int64, state string, results int, t time.Time) error
	Step(id int64) (Step, error)
	Steps(buildID int64) ([]Step, error)
	StepByNumber(buildID int64, number int) (Step, error)
	StepByName(buildID int64, name string) (Step, error)

	AddLog(stepID int64, name, typ string) (Log, error)
	AppendLog(logID int64, lines string) (first int64, err error)
	FinishLog(logID int64) error
	Log(id int64) (Log, error)
	Logs(stepID int64) ([]Log, error)
	LogBySlug(stepID int64, slug string) (Log, error)
	LogLines(logID int64, first, last int64) (string, error)
	WriteLog(logID int64, w io.Writer, fn func(line string) string) error

	DeleteLogsBefore(t time.Time) (n int, err error)
	DeleteBuildsBefore(t time.Time) (n int, err error)

	AddWorkerMissing(name string, lastSeen time.Time) error
	OutboxAfter(seq int64, limit int) ([]OutboxEntry, error)
	OutboxFinishedSeq(buildID int64) (int64, bool, error)
	OutboxCursor(reporter string) (int64, error)
	SkipOutbox(reporter string, seq int64) error
	SaveDelivery(d Delivery, done bool) error
	Delivery(reporter string, buildID, seq int64) (Delivery, bool, error)
	Deliveries(buildID int64) ([]Delivery, error)
	FailedDeliveries() (int, error)
	PruneOutbox(keep []string) error
}

// Lock is a lock taken by [Store.Lock].
type Lock interface {
	// Lost is closed when the lock is no longer held: Unlock was called,
	// or the store lost the session that held it (then another master may
	// hold it already, so its holder must stop what it guards at once).
	Lost() <-chan struct{}
	// Unlock releases the lock.
	Unlock() error
}

var _ Store = (*DB)(nil)

// Lock on bbolt always succeeds: the file lock that Open takes already
// makes this master the only one.
func (db *DB) Lock(name string) (Lock, bool, error) {
	return &fileLock{lost: make(chan struct{})}, true, nil
}

// fileLock is the Lock of a [DB].
type fileLock struct {
	once sync.Once
	lost chan struct{}
}

func (l *fileLock) Lost() <-chan struct{} { return l.lost }

func (l *fileLock) Unlock() error {
	l.once.Do(func() { close(l.lost) })
	return nil
}
