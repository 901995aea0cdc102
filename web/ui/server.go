package ui

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/web/api"
	"github.com/gbb-ci/gbb/web/auth"
)

// Config is what the pages need.
type Config struct {
	// API is the read model the pages share with the REST API: its
	// resolvers of paths (BuilderParam ...), errors, and the one act of
	// the controls (Act); the pages never call its handlers.
	API        *api.Server
	Store      api.Store
	Controller api.Controller // nil: the control forms answer 503
	Title      string         // shown on the pages
	TitleURL   string         // the title's link; empty means none
	MasterName string
	Logger     *slog.Logger // nil means discard
	// Access returns the [www.auth] users and the [www.authz] rules in
	// force.
	Access func() auth.Access
	// Guard is the middleware every POST form goes through (the server's
	// sameOrigin, which calls api.Authorize and answers its refusals).
	Guard func(http.Handler) http.Handler
}

// Server serves the pages. It is safe for concurrent use.
type Server struct {
	cfg Config
	api *api.Server
	log *slog.Logger

	trendsMu  sync.Mutex
	trends    *trends   // guarded by trendsMu; the home page's charts, last drawn
	trendsAt  time.Time // guarded by trendsMu; when
	trendsFor string    // guarded by trendsMu; the store's state they show (see trendsKey)
}

// New makes a Server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, api: cfg.API, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}
