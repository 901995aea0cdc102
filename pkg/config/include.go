package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// A config is read in two passes. The first (this file, factories.go and
// matrix.go) works on the decoded TOML: it merges the include files into
// the master's, puts the factories' steps into the builders that name them
// and expands the builders' matrices. The second (parse.go) decodes the
// result into a Config. Each value of the result keeps where it came from
// (an origin: a file and a key path in it), so that the second pass names
// the file, line and key a user wrote.

// source is one TOML file read for the config.
type source struct {
	file  string         // as given to Parse, or the include's path
	lines map[string]int // sourcePositions' lines
	order map[string]int // sourcePositions' order
}

// origin is where a value of the expanded config was written.
type origin struct {
	src  *source
	path keyPath
}

// expansion is the first pass's result and its bookkeeping.
type expansion struct {
	master *source
	dir    string // the master's directory: relative include patterns start there
	raw    map[string]any
	// remap maps a key path of raw (its String) to where that subtree
	// was written, when not at the same path of the master file.
	remap map[string]origin
	// files are the sources read, the master first, then the included
	// files in the order they were merged.
	files []*source
	errs  []*Error
	// chosenAt is matrix's note of where it chose the worker_names of the
	// builders it returns, by their index among them.
	chosenAt map[int]origin
	// patterns are the include patterns with a wildcard, absolute, in the
	// order they were read (see Config.IncludePatterns).
	patterns []string
	// nameFiles are the files of the names the second pass has seen, by
	// kind and name, for the messages about duplicates.
	nameFiles map[string]string
}

// locate returns the file, key path in it and line of the value at k in
// the expanded config (the line of k's nearest parent with one).
func (x *expansion) locate(k keyPath) (file string, key keyPath, line int) {
	o := x.originOf(k)
	src, key := o.src, o.path
	for n := len(key); n > 0; n-- {
		if l, ok := src.lines[key[:n].String()]; ok {
			return src.file, key, l
		}
	}
	return src.file, key, 0
}

// originOf returns the file and key path in it where the value at k of
// the expanded config was written: that of k's nearest parent in remap,
// else k in the master file.
func (x *expansion) originOf(k keyPath) origin {
	for n := len(k); n > 0; n-- {
		if o, ok := x.remap[k[:n].String()]; ok {
			return origin{src: o.src, path: slices.Concat(o.path, k[n:])}
		}
	}
	return origin{src: x.master, path: k}
}

// errorAt records a problem of the first pass with key k, at the line of
// at (k or a value inside it).
func (x *expansion) errorAt(at, k keyPath, format string, args ...any) {
	file, _, line := x.locate(at)
	_, key, _ := x.locate(k)
	x.errs = append(x.errs, &Error{File: file, Line: line, Key: key.String(), Msg: fmt.Sprintf(format, args...)})
}

// place says where the value at k was written, as "FILE:LINE".
func (x *expansion) place(k keyPath) string {
	file, _, line := x.locate(k)
	return file + ":" + strconv.Itoa(line)
}

// decodeSource decodes one TOML file; a syntax error is returned as an
// *Error naming it.
func decodeSource(file string, data []byte) (*source, map[string]any, *Error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		}
		return nil, nil, &Error{File: file, Msg: err.Error()}
	}
	lines, order := sourcePositions(data)
	return &source{file: file, lines: lines, order: order}, raw, nil
}

// expand runs the first pass on the master file's data. A syntax error in
// any file ends it at once; other problems are in x.errs.
func expand(file string, data []byte) (*expansion, error) {
	src, raw, perr := decodeSource(file, data)
	if perr != nil {
		return nil, joinErrors([]*Error{perr})
	}
	x := &expansion{master: src, dir: filepath.Dir(file), raw: raw, remap: map[string]origin{}, files: []*source{src}, nameFiles: map[string]string{}}
	abs, _ := filepath.Abs(file)
	seen := map[string]string{abs: file}
	if err := x.includes(src, raw, seen); err != nil {
		return nil, err
	}
	x.factories()
	x.matrices()
	return x, nil
}

// includes reads the files named by the include key of raw (the decoded
// src), merging each into x.raw after the file that names it and before
// the next: depth first, in the order the patterns are given, the files of
// one pattern sorted by name. seen holds the files read so far, by
// absolute path, with the name they were read as; reading one twice (an
// include cycle is one way) is an error.
func (x *expansion) includes(src *source, raw map[string]any, seen map[string]string) error {
	v, ok := raw["include"]
	if !ok {
		return nil
	}
	delete(raw, "include")
	at := func(k keyPath) origin { return origin{src: src, path: k} }
	incKey := keyPath{}.key("include")
	errorAt := func(k keyPath, format string, args ...any) {
		o := at(k)
		_, key, line := (&expansion{master: o.src}).locate(o.path)
		x.errs = append(x.errs, &Error{File: src.file, Line: line, Key: key.String(), Msg: fmt.Sprintf(format, args...)})
	}
	list, ok := v.([]any)
	if !ok {
		if s, isStr := v.(string); isStr {
			list = []any{s}
		} else {
			errorAt(incKey, "expected an array of file names or patterns, got %s", typeName(v))
			return nil
		}
	}
	for i, e := range list {
		k := incKey.index(i)
		pattern, ok := e.(string)
		if !ok {
			errorAt(k, "expected a string, got %s", typeName(e))
			continue
		}
		if pattern == "" {
			errorAt(k, "must not be empty")
			continue
		}
		p := pattern
		if !filepath.IsAbs(p) {
			p = filepath.Join(x.dir, p)
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			errorAt(k, "bad pattern %q: %v", pattern, err)
			continue
		}
		if hasMeta(pattern) {
			if abs, err := filepath.Abs(p); err == nil {
				p = abs
			}
			x.patterns = append(x.patterns, p)
		}
		if len(matches) == 0 {
			what := "no such file"
			if hasMeta(pattern) {
				what = "the pattern matches no file"
			}
			errorAt(k, "%q: %s (every include must name at least one file, so that a typo cannot drop builders)", pattern, what)
			continue
		}
		slices.Sort(matches)
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				if !hasMeta(pattern) {
					errorAt(k, "%q is a directory (include its files: %q)", m, filepath.Join(pattern, "*.toml"))
				}
				continue
			} else if err == nil && !fi.Mode().IsRegular() {
				// Not even opened: opening a device may do something.
				errorAt(k, "%q: not a regular file", m)
				continue
			}
			abs, _ := filepath.Abs(m)
			if first, dup := seen[abs]; dup {
				errorAt(k, "%q is read twice (it is %s, already read): an include cycle, or two patterns naming one file", m, first)
				continue
			}
			seen[abs] = m
			data, err := readSmallFile(m, maxIncludeSize)
			if err != nil {
				errorAt(k, "%q: %v", m, err)
				continue
			}
			isrc, iraw, perr := decodeSource(m, data)
			if perr != nil {
				return joinErrors([]*Error{perr})
			}
			x.files = append(x.files, isrc)
			inner := iraw["include"]
			delete(iraw, "include")
			x.merge(x.raw, iraw, nil, isrc)
			if inner != nil {
				if err := x.includes(isrc, map[string]any{"include": inner}, seen); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// maxIncludeSize is the largest file include reads: a config, not a
// device or a pipe (refused without reading, see readSmallFile).
const maxIncludeSize = 16 << 20

// hasMeta reports whether pattern has a wildcard filepath.Glob expands.
func hasMeta(pattern string) bool { return strings.ContainsAny(pattern, `*?[\`) }

// merge merges src, the table at path of the file s, into dst, the table
// at the same path of the expanded config: arrays of tables at the top
// level ([[builders]], [[workers]]...) are appended to, tables are merged
// key by key, and any other key set in both is an error naming both
// places.
func (x *expansion) merge(dst, src map[string]any, path keyPath, s *source) {
	for _, name := range slices.Sorted(maps.Keys(src)) {
		k := path.key(name)
		sv := src[name]
		dv, exists := dst[name]
		if !exists {
			dst[name] = sv
			x.remap[k.String()] = origin{src: s, path: k}
			continue
		}
		if len(path) == 0 {
			if da, ok := tableArray(dv); ok {
				if sa, ok := tableArray(sv); ok {
					for i := range sa {
						x.remap[k.index(len(da)+i).String()] = origin{src: s, path: k.index(i)}
					}
					dst[name] = append(da, sa...)
					continue
				}
			}
		}
		dm, dok := dv.(map[string]any)
		sm, sok := sv.(map[string]any)
		if dok && sok {
			x.merge(dm, sm, k, s)
			continue
		}
		first := x.place(k)
		x.errs = append(x.errs, &Error{File: s.file, Line: s.lines[k.String()], Key: k.String(),
			Msg: fmt.Sprintf("set twice: first at %s, again here (only arrays of tables such as [[builders]] add up across included files)", first)})
	}
}

// tableArray returns v as an array of tables, if it is one.
func tableArray(v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, len(v))
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out[i] = m
		}
		return out, true
	}
	return nil, false
}

// includedFiles returns the absolute paths of the files the include keys
// read, in the order they were merged.
func (x *expansion) includedFiles() []string {
	var out []string
	for _, s := range x.files[1:] {
		p, err := filepath.Abs(s.file)
		if err != nil {
			p = s.file
		}
		out = append(out, p)
	}
	return out
}

// rekeyBuilders moves the remap entries of builders[i] (and below) to the
// new indexes newIndex(i) returns: each old builder may become several.
func (x *expansion) rekeyBuilders(n int, newIndex func(i int) []int) {
	bk := keyPath{}.key("builders")
	// Every builder gets an entry of its own, so that moving it keeps
	// where it was written: the master file, or the included file whose
	// builders array became the config's (the remap entry of "builders"
	// itself, when the master has none).
	for i := range n {
		k := bk.index(i)
		if _, ok := x.remap[k.String()]; !ok {
			x.remap[k.String()] = x.originOf(k)
		}
	}
	out := map[string]origin{}
	prefix := bk.String() + "["
	for key, o := range x.remap {
		rest, ok := strings.CutPrefix(key, prefix)
		if !ok {
			out[key] = o
			continue
		}
		num, tail, _ := strings.Cut(rest, "]")
		i, err := strconv.Atoi(num)
		if err != nil {
			out[key] = o
			continue
		}
		for _, j := range newIndex(i) {
			out[prefix+strconv.Itoa(j)+"]"+tail] = o
		}
	}
	x.remap = out
}

// sortErrors orders errs by file (the master first, then the included
// files in the order they were read) and line, dropping repeats: a problem
// in a factory's step or a matrix builder is found once per builder made
// of it, but written once.
func (x *expansion) sortErrors(errs []*Error) []*Error {
	rank := map[string]int{}
	for i, s := range x.files {
		if _, ok := rank[s.file]; !ok {
			rank[s.file] = i
		}
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(rank[a.File], rank[b.File]), cmp.Compare(a.Line, b.Line))
	})
	seen := map[Error]bool{}
	out := errs[:0]
	for _, e := range errs {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	return out
}

// origins returns the files of the values of the expanded config that
// came from included files, by key path, for messages after loading.
func (x *expansion) origins() map[string]string {
	var out map[string]string
	for k, o := range x.remap {
		if o.src != x.master {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = o.src.file
		}
	}
	return out
}

// fileOf returns the file the value at the key path path (such as
// "workers[3]" or "www.auth") was written in.
func (c *Config) fileOf(path string) string {
	for path != "" {
		if f, ok := c.Origins[path]; ok {
			return f
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return c.File
}
