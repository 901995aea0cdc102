package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/auth"
)

// Store is what the API and the pages read from the store; *store.DB satisfies it.
// Every method returns an error wrapping store.ErrNotFound for a missing id
// or name.
type Store interface {
	Masters() ([]store.Master, error)

	Builders() ([]store.Builder, error)
	Builder(id int64) (store.Builder, error)
	BuilderByName(name string) (store.Builder, error)

	Workers() ([]store.Worker, error)
	Worker(id int64) (store.Worker, error)
	WorkerByName(name string) (store.Worker, error)

	Buildset(id int64) (store.Buildset, error)
	Buildsets(complete *bool) ([]store.Buildset, error)
	BuildsetsOfSourceStamp(ssid int64) ([]store.Buildset, error)
	SourceStamp(id int64) (store.SourceStamp, error)

	Change(id int64) (store.Change, error)
	Changes(f store.ChangeFilter) ([]store.Change, error)

	BuildRequest(id int64) (store.BuildRequest, error)
	BuildRequests(f store.BuildRequestFilter) ([]store.BuildRequest, error)

	Build(id int64) (store.Build, error)
	BuildByNumber(builderID, number int64) (store.Build, error)
	Builds(f store.BuildFilter) ([]store.Build, error)
	CountBuilds(f store.BuildFilter) (int, error)
	CountBuildRequests(f store.BuildRequestFilter) (int, error)
	CountChanges(f store.ChangeFilter) (int, error)
	BuildsetPage(f store.BuildsetFilter) ([]store.Buildset, error)
	CountBuildsets(f store.BuildsetFilter) (int, error)

	Step(id int64) (store.Step, error)
	Steps(buildID int64) ([]store.Step, error)
	StepByNumber(buildID int64, number int) (store.Step, error)
	StepByName(buildID int64, name string) (store.Step, error)

	// Deliveries and FailedDeliveries are the reporters' (gbb's
	// extension /api/v2/builds/N/reports, the pages' deliveries).
	Deliveries(buildID int64) ([]store.Delivery, error)
	FailedDeliveries() (int, error)

	Log(id int64) (store.Log, error)
	Logs(stepID int64) ([]store.Log, error)
	LogBySlug(stepID int64, slug string) (store.Log, error)
	// LogLines returns lines first..last inclusive, each ending in "\n".
	LogLines(logID, first, last int64) (string, error)
	// WriteLog streams the whole log to w, each line through fn.
	WriteLog(logID int64, w io.Writer, fn func(line string) string) error
}

// Forcer runs force schedulers; *scheduler.Set satisfies it.
type Forcer interface {
	// ForceSchedulers lists the force schedulers, in configuration order.
	ForceSchedulers() []scheduler.ForceInfo
	// Force adds a buildset for the force scheduler called name. It returns
	// an error wrapping scheduler.ErrNoScheduler for an unknown name and a
	// *scheduler.ParamError for a bad parameter.
	Force(ctx context.Context, name string, req scheduler.ForceRequest) (bsid int64, brids map[int64]int64, err error)
}

// Config is what the API needs.
type Config struct {
	Store Store
	// Forcer runs force requests; nil means there are no force schedulers.
	Forcer Forcer
	// Controller runs stop, rebuild, cancel and the worker actions; nil
	// answers them 503.
	Controller Controller
	MasterID   int64
	// Schedulers lists the configured schedulers; nil means there are
	// none. Ids must be stable while the master runs.
	Schedulers func() []SchedulerInfo
	// EnableScheduler enables or disables the scheduler called name, as
	// buildbot's "enable" control on /schedulers/N; it returns an error
	// wrapping scheduler.ErrUnknownScheduler for an unknown name. Nil
	// answers that control 503.
	EnableScheduler func(name string, enabled bool) error
	// Publish publishes an event as the store does on the events bus
	// (/sse/, /ws): the API publishes what changes outside the store,
	// the scheduler switch's schedulers/N/updated. Nil publishes nothing.
	Publish func(key string, record any)
	// Leader returns the id of the master that leads the masters sharing
	// the store (runs their schedulers, change sources and reporters); 0
	// when none is known. Nil means this master, the only one.
	Leader func() int64
	Logger *slog.Logger // nil means discard

	// Access returns the [www.auth] users and the [www.authz] rules in
	// force.
	Access func() auth.Access
	// Guard is the middleware every POST route goes through; it calls
	// Authorize and answers its refusals (see the server's sameOrigin).
	Guard func(http.Handler) http.Handler
}

// Server serves the REST data API and the controls. It is safe for
// concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger
}

// Leader returns the id of the master that leads (see Config.Leader).
func (s *Server) Leader() int64 {
	if s.cfg.Leader == nil {
		return s.cfg.MasterID
	}
	return s.cfg.Leader()
}

// MasterID returns the id of the master serving.
func (s *Server) MasterID() int64 { return s.cfg.MasterID }

// New makes a Server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// formError is the status and message for a form that cannot be read: 413
// when its body is larger than MaxRPCBody, 400 otherwise.
func formError(err error) (int, string) {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("bad form: request body larger than %d bytes", MaxRPCBody)
	}
	return http.StatusBadRequest, "bad form: " + err.Error()
}
