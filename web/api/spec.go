package api

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
)

// endpoint is a GET route of the data API with its resource type, so that
// /application.spec describes the routes the router has, not a list kept
// by hand.
type endpoint struct {
	res   *resource
	serve http.HandlerFunc
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.serve(w, r) }

var (
	// propertiesRes is buildbot's properties: one object of name →
	// [value, source].
	propertiesRes = &resource{plural: "properties", fields: map[string]kind{}}
	// specRes is buildbot's spec, the entries of /application.spec.
	specRes = &resource{plural: "specs", fields: map[string]kind{
		"path": kindString, "plural": kindString, "type": kindString, "type_spec": kindObject,
	}}
)

// kindNames are buildbot's names of the field types (data/types.py).
var kindNames = map[kind]string{
	kindInt: "integer", kindBool: "boolean", kindString: "string", kindList: "list", kindObject: "jsonobject",
}

// singular is buildbot's entity type name of a resource: its plural
// without the s ("properties" → "property").
func (res *resource) singular() string {
	if p, ok := strings.CutSuffix(res.plural, "ies"); ok {
		return p + "y"
	}
	if p, ok := strings.CutSuffix(res.plural, "es"); ok && strings.HasSuffix(p, "ch") {
		return p + "e"
	}
	return strings.TrimSuffix(res.plural, "s")
}

// typeSpec is buildbot's Entity.getSpec of res.
func (res *resource) typeSpec() map[string]any {
	fields := []any{}
	for _, name := range slices.Sorted(maps.Keys(res.fields)) {
		k := kindNames[res.fields[name]]
		fields = append(fields, map[string]any{"name": name, "type": k, "type_spec": map[string]any{"name": k}})
	}
	return map[string]any{"type": res.singular(), "fields": fields}
}

// specNames are buildbot's names of the path parameters that gbb names
// otherwise, as its pathPatterns have them: a parameter that takes an id
// or a name ({builder}: 3 or "runtests") is both of buildbot's patterns.
var specNames = map[string][]string{
	"builder":   {"n:builderid", "i:buildername"},
	"worker":    {"n:workerid", "i:name"},
	"step":      {"n:step_number", "i:step_name"},
	"number":    {"n:build_number"},
	"scheduler": {"i:schedulername"},
	"slug":      {"i:log_slug"},
	"project":   {"n:projectid", "i:projectname"},
}

// specPaths is a chi pattern of the API as buildbot's path patterns:
// "builders/n:builderid/builds" and "builders/i:buildername/builds" for
// "/builders/{builder}/builds"; a parameter specNames does not know is
// n:NAME when it is an id, else i:NAME.
func specPaths(pattern string) []string {
	paths := []string{""}
	for _, p := range strings.Split(strings.Trim(pattern, "/"), "/") {
		alts := []string{p}
		if name, ok := strings.CutPrefix(p, "{"); ok {
			name = strings.TrimSuffix(name, "}")
			switch {
			case specNames[name] != nil:
				alts = specNames[name]
			case strings.HasSuffix(name, "id"):
				alts = []string{"n:" + name}
			default:
				alts = []string{"i:" + name}
			}
		}
		var next []string
		for _, prefix := range paths {
			for _, a := range alts {
				if prefix != "" {
					a = prefix + "/" + a
				}
				next = append(next, a)
			}
		}
		paths = next
	}
	return paths
}

// applicationSpec serves /application.spec, as buildbot's data connector's
// allEndpoints: one entry per GET route of router (the API's own, mounted at
// /api/v2) that serves a resource type, sorted by path.
func (s *Server) applicationSpec(router chi.Routes) func(r *http.Request, q *query) ([]map[string]any, error) {
	return func(r *http.Request, q *query) ([]map[string]any, error) {
		var objs []map[string]any
		err := chi.Walk(router, func(method, route string, h http.Handler, _ ...func(http.Handler) http.Handler) error {
			ep, ok := h.(*endpoint)
			if method != http.MethodGet || !ok {
				return nil
			}
			for _, path := range specPaths(route) {
				objs = append(objs, map[string]any{
					"path":      path,
					"plural":    ep.res.plural,
					"type":      ep.res.singular(),
					"type_spec": ep.res.typeSpec(),
				})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walk the API's routes: %w", err)
		}
		slices.SortFunc(objs, func(a, b map[string]any) int { return cmp.Compare(a["path"].(string), b["path"].(string)) })
		return objs, nil
	}
}
