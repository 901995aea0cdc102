package web

import (
	"cmp"
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/internal/logsample"
	"github.com/gbb-ci/gbb/internal/masterfiles"
	"github.com/gbb-ci/gbb/pkg/changesource/hooks"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/metrics"
	"github.com/gbb-ci/gbb/web/api"
	"github.com/gbb-ci/gbb/web/auth"
	"github.com/gbb-ci/gbb/web/bbui"
	"github.com/gbb-ci/gbb/web/live"
	"github.com/gbb-ci/gbb/web/ui"
)

// Store, Forcer, Controller and SchedulerInfo are web/api's: what the
// server reads and runs.
type (
	Store         = api.Store
	Forcer        = api.Forcer
	Controller    = api.Controller
	SchedulerInfo = api.SchedulerInfo
)

// Config is what a Server needs.
type Config struct {
	Store Store
	// Forcer runs force requests; nil means there are no force schedulers.
	Forcer Forcer
	// Controller runs stop, rebuild, cancel and the worker actions; nil
	// answers them 503.
	Controller Controller

	MasterID   int64
	MasterName string
	// Leader returns the id of the master that leads the masters sharing
	// the store; nil means this one (api.Config.Leader).
	Leader func() int64

	Title    string // shown on the pages; empty means "gbb"
	TitleURL string // the title's link; empty means none
	// BuildbotURL is the public URL of the site, maybe with a path prefix
	// (http://host/buildbot/) that a proxy strips. Its origin is accepted,
	// with the request's own host, as the Origin of a WebSocket and of a
	// change hook's POST (auth.OriginOK); empty means only the request's own
	// host is. SetSite replaces it.
	BuildbotURL string

	// Changes stores the changes that POST /change_hook/DIALECT receives;
	// nil disables every change hook.
	Changes hooks.Sink
	// ChangeHooks enables the change hook dialects it names ("base",
	// "github", "gitlab", "gitea"); a dialect it leaves out answers 404.
	ChangeHooks map[string]hooks.Config
	// Schedulers lists the configured schedulers for /api/v2/schedulers;
	// nil means there are none. Ids must be stable while the master runs.
	Schedulers func() []SchedulerInfo
	// EnableScheduler is api.Config's: buildbot's enable control on
	// /api/v2/schedulers/N; nil answers it 503.
	EnableScheduler func(name string, enabled bool) error
	// BuildbotUI is [www] buildbot_ui_dir and avatar_methods: buildbot's
	// own UI served at /buildbot-ui/ (see bbui.go), and /avatar.
	BuildbotUI config.BuildbotUI
	// MasterFiles are the master's own files, which buildbot's UI never
	// serves (whatever link in buildbot_ui_dir leads to them); nil
	// guards none.
	MasterFiles *masterfiles.Guard
	// Version is the master's, shown on buildbot's UI's about page.
	Version string
	// Events is the bus the store publishes to, served live on /sse/ and
	// /ws (see web/live); nil answers them 404.
	Events *events.Bus

	// Auth is who may log in (see auth.go and web/auth); not enabled (the zero value)
	// means no login: everyone may do everything, and the pages say so.
	Auth config.Auth
	// Authz is what each role may do (see web/api/authz.go and web/auth); used only with Auth.
	Authz config.Authz

	Logger *slog.Logger // nil means discard

	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (see clientAddr); empty means none. SetSite replaces
	// it.
	TrustedProxies []netip.Prefix

	// BodyTimeout bounds how long a POST may take to send its body, so
	// that a client that stalls holds no handler nor connection (see
	// requestBodies); zero means 30s.
	BodyTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request; zero means 60s. It never cuts a request, /sse/
	// or /ws in progress. (No ReadTimeout: it would cut long bodies and
	// WebSockets; ReadHeaderTimeout and BodyTimeout bound slow clients.)
	IdleTimeout time.Duration

	// TLS is [www] tls_cert_file and tls_key_file: when enabled, Serve
	// serves HTTPS and HTTP/2 (see tls.go); zero means plain HTTP.
	TLS config.WebTLS

	// Metrics are served at /metrics and count the requests (metrics.go);
	// nil ([www] metrics = false) answers /metrics 404 and counts nothing.
	Metrics *metrics.Metrics
	// Ready says whether the master is ready for work, for /readyz: nil,
	// or why not; a nil Ready is always ready.
	Ready func() error
	// ReadyKey is the master's secret of this start (in a file beside its
	// pid file, readable by its user only): /readyz answers a request's
	// ReadyNonceHeader with ReadyProofHeader, ReadyProof(ReadyKey, nonce),
	// so that `gbb-master status` knows the master answers, not another
	// program on the port. Nil answers no proof.
	ReadyKey []byte
}

// Server serves the API and the pages. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	// siteNow is buildbot_url and trusted_proxies, replaced whole by SetSite
	// on a reconfig.
	siteNow atomic.Pointer[site]
	live    *live.Server // /sse/ and /ws
	// access is who may see and do what: [www.auth] and [www.authz],
	// replaced whole by SetAccess on a reconfig.
	access atomic.Pointer[access]
	guard  auth.Guard     // the brake on password and token guessing (web/auth)
	hooks  *hooks.Handler // POST /change_hook/DIALECT
	api    *api.Server    // /api/v2 and the one control path of every POST
	ui     *ui.Server     // the pages
	certs  certs          // the certificate of HTTPS (tls.go)
	bbui   *bbui.Server   // buildbot's own UI, or nil (see bbui.go)
	avatar bbui.Avatar    // /avatar
	// metrics is Config.Metrics, and metricsHandler its handler.
	metrics        *metrics.Metrics
	metricsHandler http.Handler
}

// shutdownTimeout bounds how long Serve waits for running requests once its
// context is done.
const shutdownTimeout = 5 * time.Second

// New makes a Server; it starts no goroutine.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.guard = auth.NewGuard(s.log)
	if s.cfg.Title == "" {
		s.cfg.Title = "gbb"
	}
	// What the rooms ask of the [www.auth] and [www.authz] in force.
	inForce := func() auth.Access {
		a := s.acc()
		return auth.Access{Users: a.auth, Rules: a.authz}
	}
	s.hooks = hooks.New(cfg.Changes, cfg.ChangeHooks, s.log)
	var publish func(string, any)
	if cfg.Events != nil {
		publish = cfg.Events.Publish
	}
	s.api = api.New(api.Config{
		Store: cfg.Store, Forcer: cfg.Forcer, Controller: cfg.Controller, MasterID: cfg.MasterID,
		Schedulers: cfg.Schedulers, EnableScheduler: cfg.EnableScheduler, Logger: s.log,
		Publish: publish,
		Leader:  cfg.Leader,
		Access:  inForce,
		Guard:   s.sameOrigin,
	})
	s.ui = ui.New(ui.Config{
		API: s.api, Store: cfg.Store, Controller: cfg.Controller,
		Title: s.cfg.Title, TitleURL: cfg.TitleURL, MasterName: cfg.MasterName, Logger: s.log,
		Access: inForce,
		Guard:  s.sameOrigin,
	})
	s.live = live.New(live.Config{Events: cfg.Events, Encode: s.api.EventMessage, AllowWS: s.wsOriginOK, Logger: s.log})
	if s.cfg.BodyTimeout <= 0 {
		s.cfg.BodyTimeout = 30 * time.Second
	}
	if s.cfg.IdleTimeout <= 0 {
		s.cfg.IdleTimeout = 60 * time.Second
	}
	s.siteNow.Store(newSite(cfg.BuildbotURL, cfg.TrustedProxies))
	s.access.Store(&access{cfg: cfg.Auth, auth: auth.New(cfg.Auth), authz: cfg.Authz})
	s.avatar = bbui.Avatar{Methods: cfg.BuildbotUI.AvatarMethods}
	if s.avatar.Methods == nil {
		s.avatar.Methods = []string{"identicon"}
	}
	s.bbui = s.newBuildbotUI()
	if cfg.Metrics != nil {
		s.metrics, s.metricsHandler = cfg.Metrics, cfg.Metrics.Handler()
	}
	s.handler = s.routes()
	return s
}

// site is what the server knows of where it is served, at one time.
type site struct {
	buildbotURL string
	origin      string // scheme://host of buildbotURL, or ""
	// cookiePath and secure come from buildbot_url: the session cookie is
	// for the public path prefix, and Secure when the site is https.
	cookiePath string
	secure     bool
	proxies    []netip.Prefix // trusted_proxies (clientaddr.go)
}

func newSite(buildbotURL string, proxies []netip.Prefix) *site {
	st := &site{buildbotURL: buildbotURL, cookiePath: "/", proxies: slices.Clone(proxies)}
	if u, err := url.Parse(buildbotURL); err == nil && u.Host != "" {
		st.secure = u.Scheme == "https"
		if u.Path != "" {
			st.cookiePath = u.Path
		}
		if u.Scheme != "" {
			st.origin = u.Scheme + "://" + u.Host
		}
	}
	return st
}

// site returns the site in force.
func (s *Server) site() *site { return s.siteNow.Load() }

// SetSite applies a reconfig's buildbot_url and [www] trusted_proxies,
// from the next request on: the origin a WebSocket or a change hook may
// come from, the session cookie's path and Secure flag, and whose
// X-Forwarded-For is believed. Login sessions stay valid (a browser sends
// a cookie of the old path only where it did before).
func (s *Server) SetSite(buildbotURL string, proxies []netip.Prefix) {
	s.siteNow.Store(newSite(buildbotURL, proxies))
}

// access is the server's [www.auth] and [www.authz] at one time.
type access struct {
	cfg   config.Auth
	auth  *auth.Authenticator // nil when cfg is not enabled
	authz config.Authz
}

// acc returns the access in force.
func (s *Server) acc() *access { return s.access.Load() }

// SetAccess applies a reconfig's [www.auth] and [www.authz], as buildbot's
// reconfig does: they apply from the next request on. Login sessions stay
// valid unless [www.auth] itself changed (its users, an htpasswd file's
// entries, tokens, type or session timeout): then everyone logs in again,
// against the new users.
func (s *Server) SetAccess(authn config.Auth, authz config.Authz) {
	old := s.acc()
	a := &access{cfg: authn, authz: authz, auth: old.auth}
	if !reflect.DeepEqual(withoutLines(old.cfg), withoutLines(authn)) {
		a.auth = auth.New(authn)
		if old.auth != nil {
			s.log.Info("[www.auth] changed: login sessions ended")
		}
	}
	s.access.Store(a)
}

// withoutLines returns a with the line numbers of its tables zeroed, so
// that a reconfig that only moves them (a comment added above [www.auth])
// is no change of [www.auth].
func withoutLines(a config.Auth) config.Auth {
	a.Line = 0
	a.Users = slices.Clone(a.Users)
	for i := range a.Users {
		a.Users[i].Line = 0
	}
	a.Tokens = slices.Clone(a.Tokens)
	for i := range a.Tokens {
		a.Tokens[i].Line = 0
	}
	return a
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves HTTP on lis until ctx is done, then shuts down, waiting at
// most a few seconds for running requests. It returns after the shutdown; a
// shutdown caused by ctx returns nil.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       s.cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          log.New(httpErrorLog{log: s.log, handshakes: logsample.New(10*time.Second, 10)}, "", 0),
	}
	if s.cfg.TLS.Enabled() {
		// A SetTLS that came first (a reconfig while the master started)
		// loaded the newer files.
		if s.certs.cur.Load() == nil {
			if err := s.certs.load(s.cfg.TLS); err != nil {
				return err
			}
		}
		srv.TLSConfig = s.certs.tlsConfig()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-stop:
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("web shutdown timed out; closing connections", "err", err)
			srv.Close()
		}
	})
	var err error
	if srv.TLSConfig != nil {
		err = srv.ServeTLS(lis, "", "") // the certificate comes from GetCertificate
	} else {
		err = srv.Serve(lis)
	}
	close(stop)
	wg.Wait()
	// Shutdown waits for no hijacked connection (/ws), and none of the
	// streams ends by itself when Serve fails: end them all and wait.
	s.live.CloseAndWait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.countRequests, s.forwardedHeaders)
	if s.bbui != nil && s.cfg.BuildbotUI.AtRoot {
		r.Use(s.atRoot(r))
	} else {
		r.Use(bbui.Rewrite)
	}
	r.Use(s.requestBodies, middleware.GetHead, securityHeaders, s.authenticate, s.csrfTokens)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		jsonreply.Error(w, http.StatusNotFound, "no such path "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		jsonreply.Error(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
	})
	s.ui.Routes(r)
	r.Get("/login", s.ui.LoginForm)
	r.With(s.sameOrigin).Post("/login", s.login)
	r.Get("/logout", s.ui.LogoutForm)
	r.With(s.sameOrigin).Post("/logout", s.logout)
	// POST /change_hook with no dialect is the base dialect, as
	// buildbot's.
	hook := func(w http.ResponseWriter, r *http.Request) {
		s.hooks.Serve(w, r, cmp.Or(chi.URLParam(r, "dialect"), "base"))
	}
	r.With(s.sameOrigin).Post("/change_hook", hook)
	r.With(s.sameOrigin).Post("/change_hook/", hook)
	r.With(s.sameOrigin).Post("/change_hook/{dialect}", hook)
	r.Route("/api/v2", s.api.Routes)
	r.Get("/sse/*", func(w http.ResponseWriter, r *http.Request) {
		s.live.SSE(w, r, chi.URLParam(r, "*"))
	})
	r.Get("/ws", s.live.WS)
	s.bbuiRoutes(r)
	s.healthRoutes(r)
	return r
}

// sameOrigin guards every POST, and is the only way to one: it refuses a
// browser's cross-site request (auth.CrossSite), then api.Authorize (web/api/authz.go)
// decodes the request once, checks its CSRF token or content type and who
// may do what, and hands the decoded call to the handler; sameOrigin
// answers its refusals, a form's with the error page. A change hook,
// which has no token, is also refused when a browser says it comes from
// another origin than the site's.
func (s *Server) sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body must come within BodyTimeout (requestBodies set the
		// deadline); a stalled one fails the handler's read with a
		// timeout, which it answers.
		if reason := auth.CrossSite(r); reason != "" {
			s.log.Info("refused a cross-site POST", "path", r.URL.Path, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "reason", reason)
			jsonreply.Error(w, http.StatusForbidden, reason)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && strings.HasPrefix(r.URL.Path, "/change_hook") && !auth.OriginOK(r, o, s.site().origin) {
			jsonreply.Error(w, http.StatusForbidden, "invalid origin "+o)
			return
		}
		r, refused := s.api.Authorize(w, r)
		switch {
		case refused == nil:
			next.ServeHTTP(w, r)
		case refused.Form:
			s.ui.ErrorPage(w, r, refused.Status, refused.Message)
		default:
			refused.Write(w)
		}
	})
}
