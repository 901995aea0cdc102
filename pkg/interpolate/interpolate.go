package interpolate

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Template is a parsed Interpolate string. It is immutable and safe for
// concurrent use.
type Template struct {
	src   string
	parts []part
}

// part is a literal (sub == nil) or a substitution.
type part struct {
	lit string
	sub *subst
}

// A selector is what a substitution looks its value up in.
type selector uint8

const (
	selProp selector = iota
	selSrc
	selSecret
	selKw
	selWorker
)

var selectors = map[string]selector{
	"prop":   selProp,
	"src":    selSrc,
	"secret": selSecret,
	"kw":     selKw,
	"worker": selWorker,
}

// srcAttrs are the source stamp attributes %(src:CODEBASE:ATTR)s takes.
var srcAttrs = []string{"branch", "revision", "repository", "project", "codebase"}

// subst is one %(...)s.
type subst struct {
	sel      selector
	codebase string // src only
	name     string // the property, secret, keyword or worker info name; src: the attribute
	op       byte   // 0 (none), '-', '~', '+', '?' or '#' (for #?)
	a, b     *Template
}

// syntaxError is a Parse error at a column of the string parsed.
type syntaxError struct {
	col int // 1-based, in runes
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("column %d: %s", e.col, e.msg) }

// Parse parses s with buildbot's Interpolate syntax, described in the
// package documentation. Its errors say what is wrong and at which column
// of s. A string without % is a constant template.
func Parse(s string) (*Template, error) {
	if !strings.Contains(s, "%") {
		t := &Template{src: s}
		if s != "" {
			t.parts = []part{{lit: s}}
		}
		return t, nil
	}
	p := &parser{top: s}
	return p.template(s, 0)
}

// String returns the source of t.
func (t *Template) String() string { return t.src }

// IsConstant reports whether t has no substitution: it renders the same
// (with %% as %) whatever the Context.
func (t *Template) IsConstant() bool {
	for _, p := range t.parts {
		if p.sub != nil {
			return false
		}
	}
	return true
}

type parser struct {
	top string // the string given to Parse, for columns
}

func (p *parser) errorf(off int, format string, args ...any) error {
	return &syntaxError{col: utf8.RuneCountInString(p.top[:off]) + 1, msg: fmt.Sprintf(format, args...)}
}

// template parses s, which is at byte offset base of p.top.
func (p *parser) template(s string, base int) (*Template, error) {
	t := &Template{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '%')
		if j < 0 {
			lit.WriteString(s[i:])
			break
		}
		lit.WriteString(s[i : i+j])
		i += j
		if i+1 == len(s) {
			return nil, p.errorf(base+i, `"%%" at the end: write "%%%%" for a literal %%`)
		}
		switch c := s[i+1]; c {
		case '%':
			lit.WriteByte('%')
			i += 2
			continue
		case '(':
		default:
			r, _ := utf8.DecodeRuneInString(s[i+1:])
			return nil, p.errorf(base+i, `"%%" followed by %q: want "%%(" or "%%%%" (for a literal %%)`, r)
		}
		// As Python's % operator, the key runs to the ")" that balances
		// the "(".
		depth, k := 1, i+2
		for ; k < len(s) && depth > 0; k++ {
			switch s[k] {
			case '(':
				depth++
			case ')':
				depth--
			}
		}
		if depth > 0 {
			return nil, p.errorf(base+i, `unterminated "%%(": no matching ")"`)
		}
		key := s[i+2 : k-1]
		if k == len(s) || s[k] != 's' {
			got := "the end"
			if k < len(s) {
				r, _ := utf8.DecodeRuneInString(s[k:])
				got = fmt.Sprintf("%q", r)
			}
			return nil, p.errorf(base+k, `missing "s" after "%%(%s)": got %s`, key, got)
		}
		sub, err := p.subst(key, base+i+2)
		if err != nil {
			return nil, err
		}
		flush()
		t.parts = append(t.parts, part{sub: sub})
		i = k + 1
	}
	flush()
	return t, nil
}

// subst parses the key of a %(KEY)s, at byte offset base of p.top.
func (p *parser) subst(key string, base int) (*subst, error) {
	name, arg, ok := strings.Cut(key, ":")
	if !ok {
		return nil, p.errorf(base, `%q has no selector: want prop:, src:, secret:, kw: or worker: before the name`, key)
	}
	sel, ok := selectors[name]
	if !ok {
		return nil, p.errorf(base, `unknown selector %q: want prop, src, secret, kw or worker`, name)
	}
	s := &subst{sel: sel}
	off := base + len(name) + 1
	var repl string
	var hasRepl bool
	switch sel {
	case selSrc:
		var rest string
		s.codebase, rest, ok = strings.Cut(arg, ":")
		if !ok {
			return nil, p.errorf(base, `"src:%s" needs a codebase and an attribute: %%(src:CODEBASE:ATTR)s, CODEBASE often empty as in %%(src::revision)s`, arg)
		}
		if !isIdentifier(s.codebase) {
			return nil, p.errorf(off, "codebase %q must be letters, digits, _, . or -", s.codebase)
		}
		off += len(s.codebase) + 1
		s.name, repl, hasRepl = strings.Cut(rest, ":")
		if !slices.Contains(srcAttrs, s.name) {
			return nil, p.errorf(off, "unknown source stamp attribute %q: want %s", s.name, strings.Join(srcAttrs, ", "))
		}
	default:
		s.name, repl, hasRepl = strings.Cut(arg, ":")
		what := map[selector]string{selProp: "property", selSecret: "secret", selKw: "keyword", selWorker: "worker info"}[sel]
		if s.name == "" {
			return nil, p.errorf(off, "empty %s name", what)
		}
		// buildbot checks the names of properties and keywords only.
		if (sel == selProp || sel == selKw) && !isIdentifier(s.name) {
			return nil, p.errorf(off, "%s name %q must be letters, digits, _, . or -", what, s.name)
		}
	}
	if !hasRepl {
		return s, nil
	}
	off += len(s.name) + 1 // at repl
	if repl == "" {
		return nil, p.errorf(off-1, `":" at the end: want ":-", ":~", ":+", ":?" or ":#?" after the name`)
	}
	var err error
	switch c := repl[0]; c {
	case '-', '~', '+':
		s.op = c
		s.a, err = p.template(repl[1:], off+1)
	case '?':
		s.op = '?'
		s.a, s.b, err = p.ternary(repl[1:], off+1, ":?")
	case '#':
		if !strings.HasPrefix(repl, "#?") {
			return nil, p.errorf(off, `":#" must be followed by "?": ":#?|YES|NO"`)
		}
		s.op = '#'
		s.a, s.b, err = p.ternary(repl[2:], off+2, ":#?")
	default:
		r, _ := utf8.DecodeRuneInString(repl)
		return nil, p.errorf(off, `unknown operator ":%c": want ":-", ":~", ":+", ":?" or ":#?"`, r)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ternary parses the DYESDNO after :? or :#?, with D any delimiter but
// "(", split at the first D outside parentheses as buildbot's
// _splitBalancedParen. s is at byte offset base of p.top.
func (p *parser) ternary(s string, base int, op string) (yes, no *Template, err error) {
	if s == "" {
		return nil, nil, p.errorf(base, `%q needs a delimiter and two alternatives, as in "%s|YES|NO"`, op, op)
	}
	d, size := utf8.DecodeRuneInString(s)
	if d == '(' {
		return nil, nil, p.errorf(base, `"(" cannot be the delimiter of %q`, op)
	}
	delim, rest := s[:size], s[size:]
	depth := 0
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return nil, nil, p.errorf(base+size+i, `unbalanced ")" in %q`, op+s)
			}
		}
		if depth == 0 && strings.HasPrefix(rest[i:], delim) {
			if yes, err = p.template(rest[:i], base+size); err != nil {
				return nil, nil, err
			}
			j := i + size
			if no, err = p.template(rest[j:], base+size+j); err != nil {
				return nil, nil, err
			}
			return yes, no, nil
		}
	}
	return nil, nil, p.errorf(base, "%q has no second %q: want %s%cYES%cNO", op+s, d, op, d, d)
}

// isIdentifier reports whether s matches buildbot's identifier_re,
// ^[\w._-]*$.
func isIdentifier(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '.' && r != '-' {
			return false
		}
	}
	return true
}

// Context is what a rendering looks values up in. A nil func or map means
// "not available": nothing is set there, and for Secret, asking for a
// value fails the render.
type Context struct {
	// Property returns a build property's value and whether it is set.
	Property func(name string) (value any, ok bool)
	// Source returns an attribute (branch, revision, repository, project
	// or codebase) of the source stamp of a codebase, and whether that
	// codebase has a source stamp with the attribute.
	Source func(codebase, attr string) (string, bool)
	// Secret returns a secret's value; an error (such as an unknown
	// secret) fails the render.
	Secret func(name string) (string, error)
	// Keyword holds the values of %(kw:NAME)s.
	Keyword map[string]any
	// Worker returns an item of the worker's info and whether it is set.
	Worker func(name string) (string, bool)
}

// Render parses s and renders it; see [Parse] and [Template.Render].
func Render(s string, c Context) (string, []string, error) {
	t, err := Parse(s)
	if err != nil {
		return "", nil, err
	}
	return t.Render(c)
}

// Render renders t with the values of c, formatted as Python's str (see
// the package documentation). It also returns the values of the secrets it
// substituted, each once and none empty, so that the caller can redact
// them. The error, when a secret cannot be had, names the secret; the
// output is then "".
func (t *Template) Render(c Context) (out string, secrets []string, err error) {
	if len(t.parts) == 1 && t.parts[0].sub == nil {
		return t.parts[0].lit, nil, nil
	}
	r := &renderer{c: c}
	var b strings.Builder
	if err := r.template(&b, t); err != nil {
		return "", nil, err
	}
	return b.String(), r.secrets, nil
}

type renderer struct {
	c       Context
	secrets []string
}

func (r *renderer) template(b *strings.Builder, t *Template) error {
	for _, p := range t.parts {
		if p.sub == nil {
			b.WriteString(p.lit)
			continue
		}
		if err := r.subst(b, p.sub); err != nil {
			return err
		}
	}
	return nil
}

// subst renders s as buildbot's _Lookup: set is "index in value", and the
// value is fetched only when needed (a secret's only then).
func (r *renderer) subst(b *strings.Builder, s *subst) error {
	set := r.isSet(s)
	if !set {
		switch s.op {
		case '-', '~':
			return r.template(b, s.a)
		case '?', '#':
			return r.template(b, s.b)
		}
		return nil // no default, or :+
	}
	switch s.op {
	case '+', '?':
		return r.template(b, s.a)
	}
	v, err := r.value(s)
	if err != nil {
		return err
	}
	switch s.op {
	case '~':
		if !truthy(v) {
			return r.template(b, s.a)
		}
	case '#':
		if truthy(v) {
			return r.template(b, s.a)
		}
		return r.template(b, s.b)
	}
	if v != nil { // a nil value renders as "" (buildbot's elideNoneAs)
		b.WriteString(str(v))
	}
	return nil
}

func (r *renderer) isSet(s *subst) bool {
	c := r.c
	switch s.sel {
	case selProp:
		if c.Property == nil {
			return false
		}
		_, ok := c.Property(s.name)
		return ok
	case selSrc:
		if c.Source == nil {
			return false
		}
		_, ok := c.Source(s.codebase, s.name)
		return ok
	case selSecret:
		return true // buildbot's _SecretIndexer contains every name
	case selKw:
		_, ok := c.Keyword[s.name]
		return ok
	case selWorker:
		if c.Worker == nil {
			return false
		}
		_, ok := c.Worker(s.name)
		return ok
	}
	return false
}

// value returns the value of s, which is set.
func (r *renderer) value(s *subst) (any, error) {
	c := r.c
	switch s.sel {
	case selProp:
		v, _ := c.Property(s.name)
		return v, nil
	case selSrc:
		v, _ := c.Source(s.codebase, s.name)
		return v, nil
	case selSecret:
		if c.Secret == nil {
			return nil, fmt.Errorf("secret %q: no secrets provider", s.name)
		}
		v, err := c.Secret(s.name)
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.name, err)
		}
		if v != "" && !slices.Contains(r.secrets, v) {
			r.secrets = append(r.secrets, v)
		}
		return v, nil
	case selKw:
		return c.Keyword[s.name], nil
	case selWorker:
		v, _ := c.Worker(s.name)
		return v, nil
	}
	return nil, nil
}
