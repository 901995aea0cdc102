package build

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// redactor replaces the values of the secrets rendered so far with <NAME>,
// as buildbot redacts a build's secrets in its logs. It is shared by every
// build of an engine: a value once rendered stays redacted everywhere.
type redactor struct {
	mu     sync.Mutex
	values map[string]string // guarded by mu; value → secret name
	rep    *strings.Replacer // guarded by mu; nil when values is empty
}

// add makes value (and each line of a value of several lines, as a log
// shows them one by one) redacted as <name>.
func (r *redactor) add(name, value string) {
	if value == "" {
		return
	}
	vals := []string{value}
	if strings.Contains(value, "\n") {
		for _, l := range strings.Split(value, "\n") {
			if l = strings.TrimSuffix(l, "\r"); strings.TrimSpace(l) != "" {
				vals = append(vals, l)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil {
		r.values = map[string]string{}
	}
	changed := false
	for _, v := range vals {
		if _, ok := r.values[v]; !ok {
			r.values[v] = name
			changed = true
		}
	}
	if !changed {
		return
	}
	// Longest first: strings.Replacer tries its pairs in order, so a
	// secret holding another is replaced whole.
	keys := make([]string, 0, len(r.values))
	for v := range r.values {
		keys = append(keys, v)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b)) })
	pairs := make([]string, 0, 2*len(keys))
	for _, v := range keys {
		pairs = append(pairs, v, "<"+r.values[v]+">")
	}
	r.rep = strings.NewReplacer(pairs...)
}

// redact returns s with every secret value replaced.
func (r *redactor) redact(s string) string {
	r.mu.Lock()
	rep := r.rep
	r.mu.Unlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// redactValue returns v, a decoded JSON value, with its strings redacted.
func (r *redactor) redactValue(v any) any {
	switch v := v.(type) {
	case string:
		return r.redact(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = r.redactValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[r.redact(k)] = r.redactValue(e)
		}
		return out
	}
	return v
}

// redactProperty returns p with the secrets in its value redacted.
func (r *redactor) redactProperty(p store.Property) store.Property {
	r.mu.Lock()
	none := r.rep == nil
	r.mu.Unlock()
	if none {
		return p
	}
	d := json.NewDecoder(bytes.NewReader(p.Value))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return p
	}
	if b, err := json.Marshal(r.redactValue(v)); err == nil {
		p.Value = b
	}
	return p
}

// redactPropertyNamed returns p with the secrets in its value redacted and
// their names in p.Secrets, so that a build rendering it can put their
// values back (see store.Property.Secrets).
func (r *redactor) redactPropertyNamed(p store.Property) store.Property {
	r.mu.Lock()
	var names []string
	for v, name := range r.values {
		if bytes.Contains(p.Value, []byte(v)) || jsonContains(p.Value, v) {
			names = append(names, name)
		}
	}
	r.mu.Unlock()
	p = r.redactProperty(p)
	slices.Sort(names)
	p.Secrets = slices.Compact(append(p.Secrets, names...))
	if len(p.Secrets) == 0 {
		p.Secrets = nil
	}
	return p
}

// jsonContains says whether s, JSON-encoded as a string's content, is in
// the JSON value data.
func jsonContains(data []byte, s string) bool {
	b, err := json.Marshal(s)
	if err != nil || len(b) < 2 {
		return false
	}
	return bytes.Contains(data, b[1:len(b)-1])
}

// redactingStore is the engine's store: what a build writes that a user
// sees (log lines, step names, state strings, properties) has the secrets rendered so
// far redacted. Log lines come whole from logWriter, so a secret a command
// prints across several output chunks is redacted too.
type redactingStore struct {
	Store
	r *redactor
}

func (s redactingStore) StartNewStep(buildID int64, name string, at time.Time) (store.Step, error) {
	return s.Store.StartNewStep(buildID, s.r.redact(name), at)
}

func (s redactingStore) EndStep(id int64, state string, results int, at time.Time) error {
	return s.Store.EndStep(id, s.r.redact(state), results, at)
}

func (s redactingStore) EndBuild(id int64, state string, results int, at time.Time) error {
	return s.Store.EndBuild(id, s.r.redact(state), results, at)
}

func (s redactingStore) AppendLog(logID int64, lines string) (int64, error) {
	return s.Store.AppendLog(logID, s.r.redact(lines))
}

func (s redactingStore) SetStepStateString(id int64, str string) error {
	return s.Store.SetStepStateString(id, s.r.redact(str))
}

func (s redactingStore) SetBuildStateString(id int64, str string) error {
	return s.Store.SetBuildStateString(id, s.r.redact(str))
}

func (s redactingStore) SetBuildProperty(id int64, name string, p store.Property) error {
	// Named: a later step rendering the property gets the secret's value
	// back (revealSecrets), not the text <NAME>.
	return s.Store.SetBuildProperty(id, name, s.r.redactPropertyNamed(p))
}

// setProperty sets a build property from a step; a value that cannot be
// stored is logged.
func (b *build) setProperty(name string, v any, source string) {
	p, err := scheduler.NewProperty(v, source)
	if err != nil {
		b.log.Error("set property", "property", name, "err", err)
		return
	}
	b.check(b.e.st.SetBuildProperty(b.id, name, p))
}

// workerProperties returns the config properties of a worker.
func (e *Engine) workerProperties(name string) map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wprops[name]
}

// propertyValue decodes a stored property's value as TOML would have given
// it: whole numbers as int64, others as float64, so that 3 renders "3".
func propertyValue(p store.Property) any {
	d := json.NewDecoder(bytes.NewReader(p.Value))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil
	}
	return numbers(v)
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i, e := range v {
			v[i] = numbers(e)
		}
	case map[string]any:
		for k, e := range v {
			v[k] = numbers(e)
		}
	}
	return v
}
