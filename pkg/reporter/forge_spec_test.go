package reporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/gbb-ci/gbb/pkg/store"
)

// forgeCall is one request a forge server got, after it passed the
// forge's published API description.
type forgeCall struct {
	Method string
	Path   string // escaped, as sent (GitLab's project path keeps its %2F)
	Header http.Header
	Body   map[string]any
	Form   url.Values
}

// forgeServer is a forge on loopback that checks every request against
// the forge's API description in testdata/openapi (method, path and its
// parameters, security scheme, content type and body) and answers with
// answer, or 201 when answer is nil. A request the description refuses
// fails the test.
type forgeServer struct {
	t      *testing.T
	URL    string // the server's root
	router routers.Router
	// extra serves paths the description does not hold (Bitbucket's
	// OAuth token endpoint); it is checked by its test.
	extra map[string]http.HandlerFunc

	mu     sync.Mutex
	calls  []forgeCall                                  // guarded by mu
	answer func(w http.ResponseWriter, r *http.Request) // guarded by mu
}

// newForgeServer serves the description spec (a file of
// testdata/openapi) at basePath of a loopback server.
func newForgeServer(t *testing.T, spec, basePath string) *forgeServer {
	t.Helper()
	fs := &forgeServer{t: t, extra: map[string]http.HandlerFunc{}}
	srv := httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(srv.Close)
	fs.URL = srv.URL

	doc := loadSpec(t, filepath.Join("testdata", "openapi", spec))
	doc.Servers = openapi3.Servers{{URL: srv.URL + basePath}}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not a valid description: %v", spec, err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router for %s: %v", spec, err)
	}
	fs.router = r
	return fs
}

// loadSpec reads an OpenAPI 3 or Swagger 2.0 description as OpenAPI 3.
func loadSpec(t *testing.T, path string) *openapi3.T {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var probe struct {
		Swagger string `json:"swagger"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if probe.Swagger == "" {
		doc, err := openapi3.NewLoader().LoadFromData(data)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return doc
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(data, &doc2); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	doc, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		t.Fatalf("%s: convert to OpenAPI 3: %v", path, err)
	}
	return doc
}

func (fs *forgeServer) setAnswer(f func(w http.ResponseWriter, r *http.Request)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.answer = f
}

// Calls are the requests the server got, in order.
func (fs *forgeServer) Calls() []forgeCall {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]forgeCall(nil), fs.calls...)
}

func (fs *forgeServer) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fs.t.Errorf("read request: %v", err)
		return
	}
	call := forgeCall{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone()}
	if r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		call.Form, _ = url.ParseQuery(string(body))
	} else if len(body) > 0 {
		if err := json.Unmarshal(body, &call.Body); err != nil {
			fs.t.Errorf("%s %s: body is not a JSON object: %v", r.Method, call.Path, err)
		}
	}
	fs.mu.Lock()
	fs.calls = append(fs.calls, call)
	answer := fs.answer
	fs.mu.Unlock()

	if h, ok := fs.extra[r.URL.Path]; ok {
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
		return
	}
	if err := fs.validate(r, body); err != nil {
		fs.t.Errorf("%s %s does not match the published API: %v", r.Method, call.Path, err)
		http.Error(w, `{"message":"refused by the API description"}`, http.StatusBadRequest)
		return
	}
	if answer != nil {
		answer(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{}`)
}

// validate checks r against the description. The route is found on the
// escaped path, so that a parameter holding %2F (GitLab's project path)
// stays one segment, as the forges' routers take it.
func (fs *forgeServer) validate(r *http.Request, body []byte) error {
	probe := r.Clone(r.Context())
	probe.URL = &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.EscapedPath()}
	route, params, err := fs.router.FindRoute(probe)
	if err != nil {
		return fmt.Errorf("no such operation: %w", err)
	}
	for k, v := range params {
		if params[k], err = url.PathUnescape(v); err != nil {
			return fmt.Errorf("path parameter %s: %w", k, err)
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return openapi3filter.ValidateRequest(r.Context(), &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{AuthenticationFunc: checkSecurityScheme},
	})
}

// checkSecurityScheme checks that a request carries the credentials a
// security scheme of the description names, in its form.
func checkSecurityScheme(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	req := in.RequestValidationInput.Request
	s := in.SecurityScheme
	auth := req.Header.Get("Authorization")
	switch {
	case s.Type == "apiKey" && s.In == "header":
		v := req.Header.Get(s.Name)
		if v == "" {
			return fmt.Errorf("no %s header", s.Name)
		}
		// Gitea: "API tokens must be prepended with "token" followed by a space."
		if strings.Contains(s.Description, `prepended with "token"`) && !strings.HasPrefix(v, "token ") {
			return fmt.Errorf("%s header %q does not start with \"token \"", s.Name, v)
		}
		return nil
	case s.Type == "apiKey" && s.In == "query":
		if req.URL.Query().Get(s.Name) == "" {
			return fmt.Errorf("no %s query parameter", s.Name)
		}
		return nil
	case s.Type == "http" && strings.EqualFold(s.Scheme, "basic"):
		if _, _, ok := req.BasicAuth(); !ok {
			return fmt.Errorf("no basic credentials")
		}
		return nil
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"), s.Type == "oauth2":
		if !strings.HasPrefix(auth, "Bearer ") || len(auth) == len("Bearer ") {
			return fmt.Errorf("no bearer token")
		}
		return nil
	}
	return fmt.Errorf("security scheme %s %s is not checked", s.Type, s.Scheme)
}

// testSecrets are the secrets the tests' reports render.
var testSecrets = map[string]string{
	"github_token": "ghp-s3cret-token-value",
	"forge_token":  "forge-s3cret-token",
	"bb_password":  "bb-app-s3cret",
	"bb_client":    "bb-oauth-s3cret",
}

var interpolation = regexp.MustCompile(`%\((prop|secret):([^)]*)\)s`)

// testRender renders %(prop:…)s and %(secret:…)s as the dispatcher's
// Render does, for the tests' reports.
func testRender(props map[string]any) func(string) (string, error) {
	return func(s string) (string, error) {
		var err error
		out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
			g := interpolation.FindStringSubmatch(m)
			if g[1] == "secret" {
				v, ok := testSecrets[g[2]]
				if !ok {
					err = fmt.Errorf("secret %q not found", g[2])
				}
				return v
			}
			return propString(props, g[2])
		})
		return out, err
	}
}

const (
	testSHA  = "8d1b1f2e0c4a6d3e5f7a9b0c1d2e3f4a5b6c7d8e"
	testSHA2 = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
)

// testReport is a report of build 7 of builder runtests about the source
// stamps, with the properties.
func testReport(event string, results int, props map[string]any, stamps ...store.SourceStamp) *Report {
	p := map[string]any{"buildername": "runtests", "buildnumber": float64(7)}
	for k, v := range props {
		p[k] = v
	}
	b := store.Build{ID: 70, Number: 7, Results: -1}
	if event == Finished {
		b.Complete, b.Results = true, results
	}
	return &Report{
		Event:    event,
		Build:    b,
		Builder:  store.Builder{ID: 1, Name: "runtests"},
		URL:      "http://gbb.example.org/#/builders/1/builds/7",
		Buildset: store.Buildset{ID: 3, SourceStamps: stamps},
		Props:    p,
		Render:   testRender(p),
	}
}

// newPlainServer serves h on loopback until the test ends and returns its
// URL.
func newPlainServer(t *testing.T, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
