package store

import (
	"encoding/json"
	"errors"
	"time"
)

// Result codes, as buildbot's (process/results.py).
const (
	Success   = 0
	Warnings  = 1
	Failure   = 2
	Skipped   = 3
	Exception = 4
	Retry     = 5
	Cancelled = 6
)

// ErrNotFound is returned when no record has the given id or name.
var ErrNotFound = errors.New("store: not found")

// ErrClaimed is returned by ClaimBuildRequest when the request is already
// claimed or complete.
var ErrClaimed = errors.New("store: build request already claimed")

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("store: database is locked by another process")

// Property is a build property with its source, as buildbot's [value, source].
// Value holds JSON-encoded data so that every backend stores it as is.
type Property struct {
	Value  json.RawMessage `json:"value"`
	Source string          `json:"source"`
	// Secrets names the secrets whose values Value holds redacted, as
	// <NAME> (a trigger's set_properties = { x = "%(secret:NAME)s" }):
	// a build rendering the property puts their values back, and only
	// there. The store never holds a secret's value.
	Secrets []string `json:"secrets,omitempty"`
}

// Properties maps a property name to its value and source.
type Properties map[string]Property

// Master is a build master known to the store (one per process for now).
type Master struct {
	ID       int64
	Name     string
	Active   bool
	LastSeen time.Time
	// WorkerCertNotAfter is when the TLS certificate of the master's
	// worker port ends; zero when it serves plaintext (or never said).
	WorkerCertNotAfter time.Time `json:",omitzero"`
}

// Builder is a configured builder. IDs are stable across restarts: a
// builder is found by name.
type Builder struct {
	ID          int64
	Name        string
	Description string
	Tags        []string
	MasterIDs   []int64 // masters on which this builder is configured now
}

// Worker is a configured worker and what is known of its connection.
type Worker struct {
	ID   int64
	Name string
	// Info is what the worker reported at its last connection: admin, host,
	// os, arch, version, basedir, numcpus.
	Info map[string]string
	// ConfiguredOn lists the builders using this worker, per master.
	ConfiguredOn []BuilderMaster
	// ConnectedTo lists the masters the worker is connected to now.
	ConnectedTo []int64
	Paused      bool
	Graceful    bool
}

// BuilderMaster pairs a builder with the master it is configured on.
type BuilderMaster struct {
	BuilderID int64
	MasterID  int64
}

// SourceStamp names the source a buildset builds.
type SourceStamp struct {
	ID         int64
	Codebase   string
	Branch     string
	Revision   string
	Repository string
	Project    string
	CreatedAt  time.Time
}

// Buildset is a set of build requests made together by one scheduler call.
type Buildset struct {
	ID            int64
	ExternalID    string
	Reason        string
	SubmittedAt   time.Time
	Complete      bool
	CompleteAt    time.Time // zero while not complete
	Results       int       // valid when Complete
	ParentBuildID int64     // 0 when none
	SourceStamps  []SourceStamp
	Properties    Properties
	SchedulerName string
	ChangeIDs     []int64 // the changes that made a scheduler add it, oldest first
	// RebuiltBuildID is the build a rebuild builds again (buildbot 4's
	// rebuilt_buildid); 0 when none.
	RebuiltBuildID int64 `json:",omitempty"`
}

// NewBuildset is what AddBuildset stores.
type NewBuildset struct {
	Reason        string
	ExternalID    string
	SchedulerName string
	ParentBuildID int64
	SourceStamps  []SourceStamp // IDs and CreatedAt are assigned by the store
	ChangeIDs     []int64       // changes it builds; each must exist
	Properties    Properties
	BuilderIDs    []int64 // one build request per builder
	Priority      int
	SubmittedAt   time.Time // zero means now
	WaitedFor     bool      // copied onto each build request: a trigger step waits for them
	// RebuiltBuildID is the build a rebuild builds again; 0 when none.
	RebuiltBuildID int64
}

// BuildRequest asks for one build on one builder.
type BuildRequest struct {
	ID                int64
	BuildsetID        int64
	BuilderID         int64
	Priority          int
	SubmittedAt       time.Time
	Claimed           bool
	ClaimedAt         time.Time
	ClaimedByMasterID int64
	Complete          bool
	CompleteAt        time.Time
	Results           int // valid when Complete; -1 otherwise
	WaitedFor         bool
}

// BuildRequestFilter selects build requests; zero fields match all.
type BuildRequestFilter struct {
	BuilderID  int64
	BuildsetID int64
	Claimed    *bool
	Complete   *bool
	// Desc lists the newest (highest id) first. Offset skips that many
	// matches; Limit returns at most that many (zero means no limit).
	Desc          bool
	Offset, Limit int
}

// Build is one run of a builder on a worker.
type Build struct {
	ID             int64
	Number         int64 // per builder, from 1
	BuilderID      int64
	BuildRequestID int64
	WorkerID       int64
	MasterID       int64
	StartedAt      time.Time
	Complete       bool
	CompleteAt     time.Time
	Results        int // valid when Complete; -1 while running
	StateString    string
	Properties     Properties
}

// NewBuild is what AddBuild stores; the store assigns ID and Number.
type NewBuild struct {
	BuilderID      int64
	BuildRequestID int64
	WorkerID       int64
	MasterID       int64
	StartedAt      time.Time // zero means now
	StateString    string
	Properties     Properties
}

// BuildFilter selects builds; zero fields match all. Builds come by id,
// which within a builder is also by number.
type BuildFilter struct {
	BuilderID      int64
	BuildRequestID int64
	WorkerID       int64
	Complete       *bool
	// Before, when not zero, matches only the builds whose ids are below
	// it: a cursor to page back from (the waterfall's "older"). Walking
	// all builds newest first, the store seeks to it; with a BuilderID it
	// is checked build by build.
	Before int64

	// Desc lists the newest (highest id) first.
	Desc bool
	// Offset skips that many of the matching builds, in the order asked.
	Offset int
	// Limit is the most builds returned; zero means no limit. With a
	// Limit, only the builds returned are read, as SQL's ORDER BY id
	// LIMIT … OFFSET ….
	Limit int
}

// Step is one step of a build.
type Step struct {
	ID          int64
	BuildID     int64
	Number      int // from 0 within the build
	Name        string
	StartedAt   time.Time // zero until started
	Complete    bool
	CompleteAt  time.Time
	Results     int // valid when Complete; -1 otherwise
	StateString string
	Hidden      bool
	URLs        []StepURL
}

// StepURL is a link a step shows.
type StepURL struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// Log is one log of a step. Type is buildbot's: "s" stdio (lines start with
// a channel letter: 'o' stdout, 'e' stderr, 'h' header), "t" text, "h" html.
type Log struct {
	ID       int64
	StepID   int64
	Name     string
	Slug     string
	Type     string
	NumLines int64
	Complete bool
}
