package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/web/auth"
)

// healthRoutes mounts /healthz, /readyz and /metrics.
func (s *Server) healthRoutes(r chi.Router) {
	// /healthz: the process answers. Service managers and load balancers
	// poll it; it reads nothing.
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	// /readyz: the store is open, the worker port listens and the config
	// is loaded (Config.Ready); 503 with the reason otherwise, stopping
	// included, so that a load balancer sends no more work.
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if nonce := r.Header.Get(ReadyNonceHeader); nonce != "" && s.cfg.ReadyKey != nil {
			w.Header().Set(ReadyProofHeader, ReadyProof(s.cfg.ReadyKey, nonce))
		}
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte("not ready: " + err.Error() + "\n"))
				return
			}
		}
		w.Write([]byte("ready\n"))
	})
	r.Get("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.metrics == nil {
			jsonreply.Error(w, http.StatusNotFound, "metrics are off ([www] metrics = false)")
			return
		}
		a := s.acc()
		if a.auth != nil && !auth.MetricsAllowed(a.authz, auth.UserOf(r)) {
			if auth.UserOf(r) == nil {
				w.Header().Set("WWW-Authenticate", `Basic realm="gbb"`)
				jsonreply.Error(w, http.StatusUnauthorized, "log in first (basic auth or a bearer token): the metrics need a role")
				return
			}
			jsonreply.Error(w, http.StatusForbidden, "you may not read the metrics: a [[www.authz.rules]] table naming \"metrics\" does not give your roles")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		s.metricsHandler.ServeHTTP(w, r)
	})
}

// The headers of /readyz's proof of who answers (see Config.ReadyKey).
const (
	ReadyNonceHeader = "X-Gbb-Ready-Nonce"
	ReadyProofHeader = "X-Gbb-Ready-Proof"
)

// ReadyProof is what /readyz answers to nonce with key: HMAC-SHA256 of the
// nonce, in hex. Only who holds key (the master, and its user who can read
// the key file) can make it.
func ReadyProof(key []byte, nonce string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(nonce))
	return hex.EncodeToString(mac.Sum(nil))
}

// countRequests counts every request by its route pattern (never its
// path: "/api/v2/builds/{id}", so that no URL makes a label) and status
// code, once it is answered.
func (s *Server) countRequests(next http.Handler) http.Handler {
	if s.metrics == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := ""
		if rc := chi.RouteContext(r.Context()); rc != nil {
			route = rc.RoutePattern()
		}
		code := ww.Status()
		if code == 0 {
			code = http.StatusOK
		}
		s.metrics.HTTP(route, r.Method, code, time.Since(start))
	})
}
