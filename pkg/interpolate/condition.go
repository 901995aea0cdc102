package interpolate

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Condition is a parsed do_step_if or hide_step_if expression (see the
// package documentation). It is immutable and safe for concurrent use.
type Condition struct {
	src  string
	root *cond
}

// cond is a node of a Condition.
type cond struct {
	op   string // "&&", "||", "!", "==", "!=", "=~", "!~", "" (an operand alone) or "const"
	l, r *cond  // &&, || and ! (l only)
	a, b *Template
	re   *regexp.Regexp // =~ and !~ with a constant b: compiled once
	val  bool           // const
}

// ConstCondition returns the condition that is always b: what a TOML
// boolean do_step_if or hide_step_if means.
func ConstCondition(b bool) *Condition {
	return &Condition{src: strconv.FormatBool(b), root: &cond{op: "const", val: b}}
}

// String returns the source of c.
func (c *Condition) String() string { return c.src }

// ParseCondition parses s as a condition. Its errors say what is wrong and
// at which column of s.
func ParseCondition(s string) (*Condition, error) {
	p := &condParser{src: s}
	if err := p.lex(); err != nil {
		return nil, err
	}
	if len(p.toks) == 0 {
		return nil, p.errorf(len(s), "empty condition")
	}
	root, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.errorf(t.off, "unexpected %s", t)
	}
	return &Condition{src: s, root: root}, nil
}

// Eval evaluates c with the values of ctx. An error is a failed rendering
// (an unavailable secret) or a regular expression, rendered at evaluation,
// that does not compile.
func (c *Condition) Eval(ctx Context) (bool, error) {
	return c.root.eval(ctx)
}

func (n *cond) eval(ctx Context) (bool, error) {
	switch n.op {
	case "const":
		return n.val, nil
	case "!":
		v, err := n.l.eval(ctx)
		return !v, err
	case "&&", "||":
		v, err := n.l.eval(ctx)
		if err != nil || v == (n.op == "||") {
			return v, err
		}
		return n.r.eval(ctx)
	}
	a, _, err := n.a.Render(ctx)
	if err != nil {
		return false, err
	}
	if n.op == "" {
		switch a {
		case "", "False", "false", "0", "None":
			return false, nil
		}
		return true, nil
	}
	b, _, err := n.b.Render(ctx)
	if err != nil {
		return false, err
	}
	switch n.op {
	case "==":
		return a == b, nil
	case "!=":
		return a != b, nil
	}
	re := n.re
	if re == nil {
		if re, err = regexp.Compile(b); err != nil {
			return false, fmt.Errorf("regular expression %q: %s", b, reError(err))
		}
	}
	return re.MatchString(a) == (n.op == "=~"), nil
}

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokWord
	tokLParen
	tokRParen
	tokNot
	tokAnd
	tokOr
	tokCmp
)

type token struct {
	kind tokKind
	text string // an operator, or an operand's template with quotes removed
	off  int    // byte offset in the source
	tmpl *Template
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of condition"
	case tokWord:
		return fmt.Sprintf("operand %q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

type condParser struct {
	src  string
	toks []token
	pos  int
}

func (p *condParser) errorf(off int, format string, args ...any) error {
	return &syntaxError{col: utf8.RuneCountInString(p.src[:off]) + 1, msg: fmt.Sprintf(format, args...)}
}

// wordEnd holds the bytes that end a bare word, outside a %(...)s.
const wordEnd = " \t\r\n()!&|=\"'"

// lex splits p.src into p.toks and parses the operands' templates.
func (p *condParser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		op := ""
		if i+1 < len(s) {
			op = s[i : i+2]
		}
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			p.toks = append(p.toks, token{kind: tokLParen, text: "(", off: i})
			i++
		case c == ')':
			p.toks = append(p.toks, token{kind: tokRParen, text: ")", off: i})
			i++
		case op == "&&":
			p.toks = append(p.toks, token{kind: tokAnd, text: op, off: i})
			i += 2
		case op == "||":
			p.toks = append(p.toks, token{kind: tokOr, text: op, off: i})
			i += 2
		case op == "==" || op == "!=" || op == "=~" || op == "!~":
			p.toks = append(p.toks, token{kind: tokCmp, text: op, off: i})
			i += 2
		case c == '!':
			p.toks = append(p.toks, token{kind: tokNot, text: "!", off: i})
			i++
		case c == '&' || c == '|' || c == '=':
			return p.errorf(i, `%q alone: want "&&", "||", "==", "!=", "=~" or "!~"`, c)
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && j+1 < len(s) && (s[j+1] == c || s[j+1] == '\\') {
					j++
				}
				b.WriteByte(s[j])
			}
			if j == len(s) {
				return p.errorf(i, "unterminated %c", c)
			}
			if err := p.word(b.String(), i, i+1); err != nil {
				return err
			}
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(wordEnd, rune(s[j])) {
				if strings.HasPrefix(s[j:], "%(") {
					// Skip the balanced key and the "s" after it, so
					// that a %(...)s is one word; Parse checks it.
					depth := 0
					for j++; j < len(s); j++ {
						if s[j] == '(' {
							depth++
						} else if s[j] == ')' {
							if depth--; depth == 0 {
								break
							}
						}
					}
					j++
				} else if strings.HasPrefix(s[j:], "%%") {
					j++
				}
				j++
			}
			j = min(j, len(s))
			if err := p.word(s[i:j], i, i); err != nil {
				return err
			}
			i = j
		}
	}
	return nil
}

// word adds the operand text, from the source at off, whose template
// starts at byte offset at of the source.
func (p *condParser) word(text string, off, at int) error {
	t, err := Parse(text)
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			se.col += utf8.RuneCountInString(p.src[:at])
		}
		return err
	}
	p.toks = append(p.toks, token{kind: tokWord, text: text, off: off, tmpl: t})
	return nil
}

func (p *condParser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{kind: tokEOF, off: len(p.src)}
}

func (p *condParser) next() token {
	t := p.peek()
	if p.pos < len(p.toks) {
		p.pos++
	}
	return t
}

func (p *condParser) or() (*cond, error) {
	l, err := p.and()
	for err == nil && p.peek().kind == tokOr {
		p.next()
		var r *cond
		if r, err = p.and(); err == nil {
			l = &cond{op: "||", l: l, r: r}
		}
	}
	return l, err
}

func (p *condParser) and() (*cond, error) {
	l, err := p.unary()
	for err == nil && p.peek().kind == tokAnd {
		p.next()
		var r *cond
		if r, err = p.unary(); err == nil {
			l = &cond{op: "&&", l: l, r: r}
		}
	}
	return l, err
}

func (p *condParser) unary() (*cond, error) {
	if p.peek().kind == tokNot {
		p.next()
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &cond{op: "!", l: n}, nil
	}
	return p.primary()
}

func (p *condParser) primary() (*cond, error) {
	t := p.next()
	switch t.kind {
	case tokLParen:
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tokRParen {
			return nil, p.errorf(c.off, "missing \")\" to close the \"(\" at column %d, got %s", utf8.RuneCountInString(p.src[:t.off])+1, c)
		}
		return n, nil
	case tokWord:
	default:
		return nil, p.errorf(t.off, "expected an operand, \"(\" or \"!\", got %s", t)
	}
	n := &cond{a: t.tmpl}
	if p.peek().kind != tokCmp {
		return n, nil
	}
	op := p.next()
	b := p.next()
	if b.kind != tokWord {
		return nil, p.errorf(b.off, "expected an operand after %q, got %s", op.text, b)
	}
	n.op, n.b = op.text, b.tmpl
	if (n.op == "=~" || n.op == "!~") && b.tmpl.IsConstant() {
		s, _, _ := b.tmpl.Render(Context{})
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, p.errorf(b.off, "bad regular expression %q: %s", s, reError(err))
		}
		n.re = re
	}
	return n, nil
}

// reError returns the message of a regexp.Compile error without its
// "error parsing regexp: " prefix.
func reError(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("%s: `%s`", se.Code, se.Expr)
	}
	return err.Error()
}
