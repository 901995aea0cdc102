package bbui

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gbb-ci/gbb/internal/masterfiles"
)

// Prefix is where the UI is served: its public place, and where the
// server takes the requests of a UI served at the site's root (see
// Config.AtRoot).
const Prefix = "/buildbot-ui/"

// Config is what a Server needs.
type Config struct {
	// Dir is the UI's static directory, with its index.html.
	Dir string
	// Title and TitleURL are the master's title and its link.
	Title, TitleURL string
	// BuildbotURL returns buildbot_url, the site's public URL (with a
	// trailing slash), as a reconfig leaves it; the UI's own is that +
	// "buildbot-ui/", or that itself with AtRoot.
	BuildbotURL func() string
	// AtRoot says the UI is served at the site's root (the web server
	// passes its requests on as Prefix + path, see Serves); false: at
	// Prefix.
	AtRoot bool
	// AuthName returns buildbot's name of the login in force: "NoAuth",
	// or "UserPasswordAuth" (the UI then offers its login link).
	AuthName func() string
	// AvatarMethods are [www] avatar_methods; none: the UI shows no
	// avatars.
	AvatarMethods []string
	// Versions are shown on the UI's about page, as [name, version].
	Versions [][2]string
	// User returns who asks as buildbot's user_info ({"anonymous": true}
	// or {"username": ..., "groups": [...]}) and whether they may see
	// anything (user_any_access_allowed).
	User func(r *http.Request) (info map[string]any, anyAccess bool)
	// MasterFiles are the master's own files (its config, store, log,
	// keys ...), which the UI never serves, whatever link or hard link
	// leads to them; nil guards none.
	MasterFiles *masterfiles.Guard
	Logger      *slog.Logger // nil means discard
}

// Server serves the UI; it is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	index   []byte            // index.html as installed
	plugins map[string]*dirFS // plugin name → its static directory
	files   *dirFS            // the UI's directory
}

// configPlaceholder is where buildbot's index.html takes the config.
const configPlaceholder = "<!-- BUILDBOT_CONFIG_PLACEHOLDER -->"

// New reads the UI's index.html and finds its plugins: the directories
// beside the UI's package (site-packages/buildbot_NAME/static with a
// scripts.js, as pip installs buildbot-waterfall-view and the others)
// are the plugins NAME.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger, plugins: map[string]*dirFS{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	files, err := s.newDirFS(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("buildbot ui: %w", err)
	}
	s.files = files
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		return nil, fmt.Errorf("buildbot ui: %s: %w", filepath.Join(cfg.Dir, "index.html"), err)
	}
	if !bytes.Contains(index, []byte(configPlaceholder)) {
		return nil, fmt.Errorf("buildbot ui: %s has no %s: not a buildbot UI's index.html", filepath.Join(cfg.Dir, "index.html"), configPlaceholder)
	}
	s.index = index
	pkg := filepath.Dir(filepath.Clean(cfg.Dir))
	if filepath.Base(cfg.Dir) != "static" {
		pkg = filepath.Clean(cfg.Dir)
	}
	siblings, _ := filepath.Glob(filepath.Join(filepath.Dir(pkg), "buildbot_*", "static", "scripts.js"))
	for _, js := range siblings {
		dir := filepath.Dir(js)
		name := strings.TrimPrefix(filepath.Base(filepath.Dir(dir)), "buildbot_")
		if dir == filepath.Clean(cfg.Dir) || name == "www" || strings.HasPrefix(name, "www_") {
			continue
		}
		p, err := s.newDirFS(dir)
		if err != nil {
			s.log.Warn("buildbot UI plugin not served", "plugin", name, "err", err)
			continue
		}
		s.plugins[name] = p
	}
	return s, nil
}

// Plugins names the plugins found.
func (s *Server) Plugins() []string {
	names := make([]string, 0, len(s.plugins))
	for n := range s.plugins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ServeHTTP serves a path under Prefix: the index at Prefix itself, a
// plugin's file under plugins/NAME/, else a static file.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Security-Policy", s.Policy(""))
	switch {
	case rest == "" || rest == "index.html":
		s.serveIndex(w, r)
	case strings.HasPrefix(rest, "plugins/"):
		name, file, _ := strings.Cut(strings.TrimPrefix(rest, "plugins/"), "/")
		dir, ok := s.plugins[name]
		if !ok {
			http.Error(w, "no such buildbot UI plugin "+name, http.StatusNotFound)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + file
		http.FileServerFS(dir).ServeHTTP(w, r2)
	default:
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + rest
		http.FileServerFS(s.files).ServeHTTP(w, r2)
	}
}

// Serves says whether rest, a path under the UI's place without its
// leading slash, is one of the UI's: its index ("" or "index.html"), one
// of its files, or a file of one of its plugins.
func (s *Server) Serves(rest string) bool {
	if rest == "" || rest == "index.html" {
		return true
	}
	dir := s.files
	if p, ok := strings.CutPrefix(rest, "plugins/"); ok {
		name, file, _ := strings.Cut(p, "/")
		if dir, ok = s.plugins[name]; !ok {
			return false
		}
		rest = file
	}
	if !fs.ValidPath(rest) {
		return false
	}
	f, err := dir.Open(rest)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// FrontendConfig is window.buildbotFrontendConfig for r, as buildbot's
// www service makes it (www/config.py): the title, the UI's URL, the
// login, the user, the plugins, the avatar methods.
func (s *Server) FrontendConfig(r *http.Request) map[string]any {
	info, anyAccess := map[string]any{"anonymous": true}, true
	if s.cfg.User != nil {
		info, anyAccess = s.cfg.User(r)
	}
	avatars := []any{}
	for _, m := range s.cfg.AvatarMethods {
		avatars = append(avatars, map[string]any{"name": m})
	}
	plugins := map[string]any{}
	for name := range s.plugins {
		plugins[name] = map[string]any{}
	}
	versions := []any{}
	for _, v := range s.cfg.Versions {
		versions = append(versions, []any{v[0], v[1]})
	}
	authName := "NoAuth"
	if s.cfg.AuthName != nil {
		authName = s.cfg.AuthName()
	}
	uiURL := s.cfg.BuildbotURL()
	if !s.cfg.AtRoot {
		uiURL += strings.TrimPrefix(Prefix, "/")
	}
	return map[string]any{
		"title":                   s.cfg.Title,
		"titleURL":                s.cfg.TitleURL,
		"buildbotURL":             uiURL,
		"multiMaster":             false,
		"auth":                    map[string]any{"name": authName, "oauth2": false, "fa_icon": "fa-sign-in", "autologin": false},
		"avatar_methods":          avatars,
		"plugins":                 plugins,
		"versions":                versions,
		"user":                    info,
		"user_any_access_allowed": anyAccess,
		"ui_default_config":       map[string]any{},
		"project_widgets":         []any{},
	}
}

// serveIndex serves index.html with the frontend config in its
// placeholder.
func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	js, err := json.Marshal(s.FrontendConfig(r))
	if err != nil {
		s.log.Error("encode the buildbot UI's config", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// JSON in a <script>: no "</script>" nor "<!--" may end it early.
	js = bytes.ReplaceAll(js, []byte("<"), []byte(`\u003c`))
	config := "\n    window.buildbotFrontendConfig = " + string(js) + ";\n"
	script := []byte("<script id=\"bb-config\">" + config + "</script>")
	page := bytes.Replace(s.index, []byte(configPlaceholder), script, 1)
	page = bytes.Replace(page, []byte("<title>Buildbot</title>"), []byte("<title>"+html.EscapeString(s.cfg.Title)+"</title>"), 1)
	w.Header().Set("Content-Security-Policy", s.Policy(config))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(page)
}

// Policy is the Content-Security-Policy of the UI's answers; config is
// the text of the index's inline config script, or "" for the other
// files. It is gbb's policy (web/headers.go) with what buildbot's UI
// needs and nothing more:
//
//   - script-src: the site's own scripts (the UI's modules, its plugins'
//     scripts.js) and the one inline script gbb writes, the frontend
//     config, by its SHA-256; no other inline script, no eval;
//   - style-src 'unsafe-inline': index.html carries its theme in a
//     <style>, and the UI's libraries (emotion, react-tooltip, the
//     virtualised tables' resize detector) add <style> elements whose
//     text changes with every release of the UI, so no hash list could
//     follow them. Styles cannot run code;
//   - img-src: the site, data: URIs (bootstrap's icons in the UI's CSS),
//     blob: URLs (the favicon the UI draws with a build's result), and
//     gravatar when avatar_methods has it (/avatar redirects
//     there);
//   - connect-src 'self': the API, and /ws, which browsers count as
//     'self' on the page's own host (CSP level 3);
//   - the rest as gbb's pages: no frames, plugins, <base>, forms to
//     other sites.
func (s *Server) Policy(config string) string {
	script := "script-src 'self'"
	if config != "" {
		sum := sha256.Sum256([]byte(config))
		script += " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	img := "img-src 'self' data: blob:"
	if slices.Contains(s.cfg.AvatarMethods, "gravatar") {
		img += " " + gravatar
	}
	return "default-src 'none'; " + script + "; style-src 'self' 'unsafe-inline'; " + img + "; " +
		"connect-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
}

// Rewrite passes the requests the UI makes relative to its own URL (its
// API, live streams, login and avatars: Prefix + "api/v2/...", "ws",
// "sse/...", "auth/login", "avatar") on to next at the site's root, where
// gbb serves them.
func Rewrite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, Prefix); ok && passedOn(rest) {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/" + rest
			r2.URL.RawPath = ""
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

func passedOn(rest string) bool {
	return rest == "ws" || rest == "avatar" ||
		strings.HasPrefix(rest, "api/") || strings.HasPrefix(rest, "sse/") || strings.HasPrefix(rest, "auth/")
}

// dirFS is the files of one directory, as the UI serves them: through
// os.Root, so that no path and no symlink leads out of the directory (a
// link to /etc/passwd, or to the master's basedir, is not followed); files
// only (a directory is not found, so no listing); and none of the
// master's own files, whatever path leads to them inside it (the
// directory may hold the basedir, or a hard link to its store).
type dirFS struct {
	dir   string // as configured, for messages
	real  string // absolute, symlinks resolved
	guard *masterfiles.Guard
	log   *slog.Logger
}

func (s *Server) newDirFS(dir string) (*dirFS, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(real)
	if err != nil {
		return nil, err
	}
	root.Close()
	return &dirFS{dir: dir, real: real, guard: s.cfg.MasterFiles, log: s.log}, nil
}

// Open opens name in a Root of its own, closed when Open returns (an
// opened file outlives its Root): the directory holds no descriptor
// while nothing is served.
func (d *dirFS) Open(name string) (fs.File, error) {
	root, err := os.OpenRoot(d.real)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.FS().Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		// A path or link out of the directory, or an unreadable file.
		d.log.Warn("buildbot UI: refused a file", "dir", d.dir, "path", name, "err", err)
		return nil, fs.ErrPermission
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		return nil, fs.ErrNotExist
	}
	// A file with other names may be one of the master's own files (a
	// key, a secret, a config replaced since the guard looked at it)
	// under a name inside the directory: an installed UI has no hard
	// links, so none is served.
	if n := links(fi); n > 1 {
		f.Close()
		d.log.Warn("buildbot UI: refused a file with hard links", "dir", d.dir, "path", name, "links", n)
		return nil, fs.ErrPermission
	}
	if d.guard != nil {
		rel, err := masterfiles.Resolve(root, name)
		if err == nil {
			err = d.guard.Served(name, filepath.Join(d.real, rel), fi)
		}
		if err != nil {
			f.Close()
			d.log.Warn("buildbot UI: refused a file", "dir", d.dir, "path", name, "err", err)
			return nil, fs.ErrPermission
		}
	}
	return f, nil
}
