package live

import (
	"log/slog"
	"net/http"

	"github.com/gbb-ci/gbb/pkg/events"
)

// Config is what the live streams serve.
type Config struct {
	// Events is the bus the store publishes to; nil answers /sse/ and
	// /ws 404.
	Events *events.Bus
	// Encode returns an event's record as the REST API shows it.
	Encode func(record any) any
	// AllowWS reports whether a WebSocket may open from r's origin; it
	// logs why it refuses.
	AllowWS func(r *http.Request) bool
	Logger  *slog.Logger // nil means discard
}

// Server serves /sse/ and /ws. It is safe for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	live liveStreams // the streams running
}

// New makes a Server; it starts no goroutine.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// CloseAndWait ends the streams running, refuses new ones, and waits until
// they have returned.
func (s *Server) CloseAndWait() { s.live.closeAndWait() }
