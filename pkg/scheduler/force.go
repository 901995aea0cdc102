package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"

	"github.com/gbb-ci/gbb/pkg/store"
)

// ErrNoScheduler is returned by Force when no force scheduler has the name.
var ErrNoScheduler = errors.New("scheduler: no such force scheduler")

// ForceRequest is what a user asks a force scheduler for, as buildbot's
// ForceScheduler "force" JSON-RPC parameters.
type ForceRequest struct {
	// BuilderID, when set, builds only that builder; it must be one of the
	// scheduler's. BuilderNames, when set, builds those; both zero means all
	// of the scheduler's builders.
	BuilderID    int64
	BuilderNames []string
	Reason       string // empty means "force build"
	Owner        string // buildbot's "username"/"owner"
	// OwnerFromLogin is set when Owner is the logged-in user: a username
	// param does not check it, as buildbot's.
	OwnerFromLogin bool
	Branch         string
	Revision       string
	Repository     string
	Project        string
	// Properties are the build properties asked for; with codebases, they
	// also carry the fields of the codebases but "", by buildbot's full
	// names (CODEBASE_branch, CODEBASE_revision...), taken out of them.
	Properties map[string]any
	// Priority, when set, is the requests' priority (higher builds first);
	// nil means the scheduler's priority.
	Priority *int
}

// ForceInfo describes a force scheduler for the API and the UI.
type ForceInfo struct {
	Name         string
	Label        string
	ButtonName   string
	BuilderNames []string
	Reason       string       // the reason field's default
	Params       []ForceParam // the custom fields, in config order
	Disabled     bool         // see Set.Enabled
	// Codebases are the codebases of the form, each with its own fields;
	// nil when the scheduler configures none: then the form has one set
	// (branch, revision, repository, project) for codebase "".
	Codebases []ForceCodebase
}

// ForceParam is a custom field of a force scheduler's form, whose value
// becomes the build property Name. Type is one of config.ForceParamTypes;
// Default is a string (string, text, choice, username, worker_choice), an
// int64 (int), a bool (bool), a []string (multiple_choice) or any value
// (fixed); Choices are those of a choice or multiple_choice, and for a
// worker_choice, as ForceSchedulers gives them, "-any-" and the workers of
// the scheduler's builders; Regex, when set, is what a string, text or
// username value must match (Go syntax). See forcekinds.go for the types
// beyond plain values.
type ForceParam struct {
	Name, Label, Type string
	Default           any
	Required          bool
	Choices           []string
	Regex             string
	NeedEmail         bool // username only
}

// ParamError is returned by Force when a request parameter is invalid.
type ParamError struct {
	Field string
	Msg   string
}

func (e *ParamError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// forceScheduler is one configured force scheduler.
type forceScheduler struct {
	priority int
	name     string
	builders []string
	info     ForceInfo
	regexps  map[string]*regexp.Regexp // by param name
}

// defaultLabels are the labels of the params that buildbot gives one of
// their own (UserNameParameter's "Your name:", WorkerChoiceParameter's
// "Worker"); any other param's label is its name.
var defaultLabels = map[string]string{"username": "Your name:", "worker_choice": "Worker"}

func newForceScheduler(sc config.Scheduler) *forceScheduler {
	fs := &forceScheduler{
		priority: sc.Priority,
		name:     sc.Name,
		builders: slices.Clone(sc.BuilderNames),
		regexps:  map[string]*regexp.Regexp{},
		info: ForceInfo{
			Name:         sc.Name,
			Label:        cmp.Or(sc.Label, sc.Name),
			ButtonName:   cmp.Or(sc.ButtonName, sc.Name),
			BuilderNames: slices.Clone(sc.BuilderNames),
			Reason:       cmp.Or(sc.Reason, config.DefaultForceReason),
			Codebases:    forceCodebases(sc),
		},
	}
	for _, p := range sc.Params {
		fs.info.Params = append(fs.info.Params, ForceParam{
			Name:      p.Name,
			Label:     cmp.Or(p.Label, defaultLabels[p.Type], p.Name),
			Type:      cmp.Or(p.Type, "string"),
			Default:   p.Default,
			Required:  p.Required,
			Choices:   slices.Clone(p.Choices),
			Regex:     p.Regex,
			NeedEmail: p.NeedEmail,
		})
		if p.Regex != "" {
			fs.regexps[p.Name] = regexp.MustCompile(p.Regex) // checked by config.Parse
		}
	}
	return fs
}

// properties returns the build properties of a request's values: each
// param's value coerced to its type, or its default when not given. With
// no params declared, every value is taken as is (from source); with some,
// a value that is not a param's is refused, as buildbot's.
func (fs *forceScheduler) properties(values map[string]any, source string) (store.Properties, error) {
	props := store.Properties{}
	if len(fs.info.Params) == 0 {
		for k, v := range values {
			p, err := NewProperty(v, source)
			if err != nil {
				return nil, &ParamError{Field: k, Msg: err.Error()}
			}
			props[k] = p
		}
		return props, nil
	}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if !slices.ContainsFunc(fs.info.Params, func(p ForceParam) bool { return p.Name == k }) {
			return nil, &ParamError{Field: k, Msg: fmt.Sprintf("not a parameter of force scheduler %q", fs.name)}
		}
	}
	for _, p := range fs.info.Params {
		if p.Type == "username" {
			continue // the owner, not a property
		}
		v, err := coerce(p, values[p.Name], fs.regexps[p.Name])
		if err != nil {
			return nil, &ParamError{Field: p.Name, Msg: err.Error()}
		}
		if p.Type == "worker_choice" && v == "" {
			continue // no choice: no property, as buildbot's
		}
		props[p.Name], err = NewProperty(v, source)
		if err != nil {
			return nil, &ParamError{Field: p.Name, Msg: err.Error()}
		}
	}
	return props, nil
}

// coerce returns v, a JSON value or a form's string, as p's type; nil means
// not given: the default.
func coerce(p ForceParam, v any, re *regexp.Regexp) (any, error) {
	if kindOf(p.Type) {
		return coerceKind(p, v, re)
	}
	if s, ok := v.(string); ok && p.Type != "string" && p.Type != "text" {
		v = strings.TrimSpace(s)
		if v == "" {
			v = nil
		}
	}
	if v == nil {
		if p.Required {
			return nil, errors.New("required")
		}
		return p.Default, nil
	}
	switch p.Type {
	case "int":
		switch x := v.(type) {
		case string:
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", x)
			}
			return n, nil
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return nil, fmt.Errorf("%v is not an integer", x)
			}
			return int64(x), nil
		case int:
			return int64(x), nil
		case int64:
			return x, nil
		}
	case "bool":
		switch x := v.(type) {
		case bool:
			return x, nil
		case float64:
			return x != 0, nil
		case string:
			switch strings.ToLower(x) {
			case "true", "on", "1", "yes":
				return true, nil
			case "false", "off", "0", "no":
				return false, nil
			}
			return nil, fmt.Errorf("%q is not a boolean", x)
		}
	case "choice":
		if x, ok := v.(string); ok {
			if !slices.Contains(p.Choices, x) {
				return nil, fmt.Errorf("%q is not one of %q", x, p.Choices)
			}
			return x, nil
		}
	default: // string, text
		var x string
		switch v := v.(type) {
		case string:
			x = v
		case float64, bool, int, int64:
			x = fmt.Sprint(v)
		default:
			return nil, fmt.Errorf("expected a string, got %s", valueKind(v))
		}
		if x == "" && p.Required {
			return nil, errors.New("required")
		}
		if re != nil && x != "" && !re.MatchString(x) {
			return nil, fmt.Errorf("%q does not match %s", x, p.Regex)
		}
		return x, nil
	}
	want := map[string]string{"int": "an integer", "bool": "a boolean", "choice": "one of the choices"}[p.Type]
	if want == "" {
		want = "a " + p.Type
	}
	return nil, fmt.Errorf("expected %s, got %s", want, valueKind(v))
}

// Force adds a buildset for the force scheduler called name, after checking
// req, and wakes the distributor. It returns the buildset id and the build
// request id of each builder.
func (s *Set) Force(ctx context.Context, name string, req ForceRequest) (int64, map[int64]int64, error) {
	s.mu.Lock()
	fs, ok := s.force[name]
	disabled := s.disabled[name]
	s.mu.Unlock()
	if !ok {
		return 0, nil, fmt.Errorf("%w: %q", ErrNoScheduler, name)
	}
	if disabled {
		return 0, nil, fmt.Errorf("force %s: %w", name, ErrDisabled)
	}
	names := fs.builders
	switch {
	case req.BuilderID != 0:
		b, err := s.store.Builder(req.BuilderID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, nil, fmt.Errorf("force %s: %w", name, err)
		}
		if err != nil || !slices.Contains(fs.builders, b.Name) {
			return 0, nil, &ParamError{Field: "builderid", Msg: fmt.Sprintf("builder %d is not a builder of force scheduler %q", req.BuilderID, name)}
		}
		names = []string{b.Name}
	case len(req.BuilderNames) > 0:
		for _, n := range req.BuilderNames {
			if !slices.Contains(fs.builders, n) {
				return 0, nil, &ParamError{Field: "builderNames", Msg: fmt.Sprintf("builder %q is not a builder of force scheduler %q", n, name)}
			}
		}
		names = req.BuilderNames
	}
	ids := make([]int64, 0, len(names))
	for _, n := range names {
		b, err := s.store.BuilderByName(n)
		if err != nil {
			return 0, nil, fmt.Errorf("force %s: builder %q: %w", name, n, err)
		}
		ids = append(ids, b.ID)
	}
	reason := cmp.Or(req.Reason, fs.info.Reason)
	const src = "Force Build Form"
	stamps, values, err := fs.forceStamps(req)
	if err != nil {
		return 0, nil, err
	}
	props, err := fs.properties(values, src)
	if err != nil {
		return 0, nil, err
	}
	if req.Owner, err = fs.owner(req); err != nil {
		return 0, nil, err
	}
	if err := s.checkWorkerChoice(props, names); err != nil {
		return 0, nil, err
	}
	for k, v := range map[string]string{"reason": reason, "owner": req.Owner, "scheduler": name} {
		if v == "" {
			continue
		}
		source := src
		if k == "scheduler" {
			source = "Scheduler"
		}
		props[k], _ = NewProperty(v, source)
	}
	priority := fs.priority
	if req.Priority != nil {
		priority = *req.Priority
	}
	bsid, brids, err := s.store.AddBuildset(store.NewBuildset{
		Reason:        fmt.Sprintf("The web-page 'force' button was pressed by '%s': %s", orUnknown(req.Owner), reason),
		SchedulerName: name,
		SourceStamps:  stamps,
		Properties:    props,
		BuilderIDs:    ids,
		Priority:      priority,
	})
	if err != nil {
		return 0, nil, fmt.Errorf("force %s: %w", name, err)
	}
	s.log.Info("build forced", "scheduler", name, "buildset", bsid, "builders", names, "owner", req.Owner)
	s.wake()
	return bsid, brids, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// NewProperty encodes v as a property value from source.
func NewProperty(v any, source string) (store.Property, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return store.Property{}, fmt.Errorf("encode property: %w", err)
	}
	return store.Property{Value: b, Source: source}, nil
}

// ForceSchedulers describes the force schedulers, in config order.
func (s *Set) ForceSchedulers() []ForceInfo {
	out := s.forceInfos()
	s.fillWorkerChoices(out)
	return out
}

func (s *Set) forceInfos() []ForceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ForceInfo, 0, len(s.forceOrder))
	for _, n := range s.forceOrder {
		info := s.force[n].info
		info.Disabled = s.disabled[n]
		info.BuilderNames = slices.Clone(info.BuilderNames)
		info.Params = slices.Clone(info.Params)
		info.Codebases = slices.Clone(info.Codebases)
		for i := range info.Params {
			info.Params[i].Choices = slices.Clone(info.Params[i].Choices)
		}
		out = append(out, info)
	}
	return out
}
