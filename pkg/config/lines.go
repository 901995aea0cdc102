package config

import (
	"strconv"
	"strings"
)

// keyPath names a value in the config: table and key names, and indexes
// into arrays. Its String form is the one error messages use:
// "builders[0].steps[1].command".
type keyPath []pathElem

type pathElem struct {
	name  string // a key, when isKey
	index int    // an array index, when not isKey
	isKey bool
}

func (k keyPath) key(name string) keyPath {
	return append(k[:len(k):len(k)], pathElem{name: name, isKey: true})
}

func (k keyPath) index(i int) keyPath {
	return append(k[:len(k):len(k)], pathElem{index: i})
}

func (k keyPath) String() string {
	var b strings.Builder
	for i, e := range k {
		switch {
		case !e.isKey:
			b.WriteString("[" + strconv.Itoa(e.index) + "]")
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(quoteKey(e.name))
		}
	}
	return b.String()
}

// quoteKey returns name as TOML writes it: bare when it can be.
func quoteKey(name string) string {
	if name == "" {
		return `""`
	}
	for _, r := range name {
		if !isBareKeyChar(r) {
			return strconv.Quote(name)
		}
	}
	return name
}

func isBareKeyChar(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// sourceLines returns the line of every key, table and array element in src,
// by the String of its keyPath, with the indexes of arrays of tables
// resolved. BurntSushi/toml keeps no position for decoded values, so this
// scans the source itself. It expects src to be valid TOML (it is called after
// the decoder accepted it) but never fails: on anything it does not
// understand it moves on.
func sourceLines(src []byte) map[string]int {
	lines, _ := sourcePositions(src)
	return lines
}

// sourcePositions returns sourceLines and the order in which each key was
// first seen in src (0, 1, ...), which a decoded map does not keep.
func sourcePositions(src []byte) (lines, order map[string]int) {
	s := &lineScanner{src: src, line: 1, lines: map[string]int{}, order: map[string]int{}, arrays: map[string]int{}}
	s.document()
	return s.lines, s.order
}

type lineScanner struct {
	src    []byte
	pos    int
	line   int
	lines  map[string]int
	order  map[string]int // the order of first mention of each key in lines
	arrays map[string]int // tables so far in each array of tables, by path
}

func (s *lineScanner) eof() bool { return s.pos >= len(s.src) }

func (s *lineScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *lineScanner) hasPrefix(p string) bool {
	return strings.HasPrefix(string(s.src[s.pos:min(s.pos+len(p), len(s.src))]), p)
}

func (s *lineScanner) next() byte {
	c := s.src[s.pos]
	s.pos++
	if c == '\n' {
		s.line++
	}
	return c
}

// set records line for k unless k already has one: the first mention of a
// table is where it starts.
func (s *lineScanner) set(k keyPath, line int) {
	key := k.String()
	if _, ok := s.lines[key]; !ok {
		s.lines[key] = line
		s.order[key] = len(s.order)
	}
}

func (s *lineScanner) skipSpace() {
	for c := s.peek(); c == ' ' || c == '\t'; c = s.peek() {
		s.next()
	}
}

// skipLine skips to the start of the next line.
func (s *lineScanner) skipLine() {
	for !s.eof() {
		if s.next() == '\n' {
			return
		}
	}
}

// skipBlank skips spaces, newlines and comments.
func (s *lineScanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.next()
		case '#':
			for !s.eof() && s.peek() != '\n' {
				s.next()
			}
		default:
			return
		}
	}
}

func (s *lineScanner) document() {
	var table keyPath
	for {
		s.skipBlank()
		if s.eof() {
			return
		}
		start := s.pos
		if s.peek() == '[' {
			table = s.header()
		} else {
			s.keyValue(table)
		}
		if s.pos == start {
			s.next()
		}
		s.skipLine()
	}
}

// header reads a [table] or [[array]] header and returns its path.
func (s *lineScanner) header() keyPath {
	line := s.line
	s.next()
	array := s.peek() == '['
	if array {
		s.next()
	}
	names := s.dottedKey()
	var k keyPath
	for i, name := range names {
		k = k.key(name)
		s.set(k, line)
		n, isArray := s.arrays[k.String()]
		switch {
		case array && i == len(names)-1:
			s.arrays[k.String()] = n + 1
			k = k.index(n)
			s.set(k, line)
		case isArray:
			k = k.index(n - 1)
		}
	}
	return k
}

// keyValue reads "key = value" in table.
func (s *lineScanner) keyValue(table keyPath) {
	line := s.line
	k := table
	for _, name := range s.dottedKey() {
		k = k.key(name)
		s.set(k, line)
	}
	s.skipSpace()
	if s.peek() == '=' {
		s.next()
	}
	s.value(k)
}

func (s *lineScanner) dottedKey() []string {
	var names []string
	for {
		s.skipSpace()
		names = append(names, s.simpleKey())
		s.skipSpace()
		if s.peek() != '.' {
			return names
		}
		s.next()
	}
}

func (s *lineScanner) simpleKey() string {
	switch s.peek() {
	case '"':
		start := s.pos
		s.next()
		for !s.eof() && s.peek() != '"' && s.peek() != '\n' {
			if s.next() == '\\' && !s.eof() {
				s.next()
			}
		}
		if !s.eof() && s.peek() == '"' {
			s.next()
		}
		raw := string(s.src[start:s.pos])
		if name, err := strconv.Unquote(raw); err == nil {
			return name
		}
		return strings.Trim(raw, `"`)
	case '\'':
		s.next()
		start := s.pos
		for !s.eof() && s.peek() != '\'' && s.peek() != '\n' {
			s.next()
		}
		name := string(s.src[start:s.pos])
		if !s.eof() && s.peek() == '\'' {
			s.next()
		}
		return name
	}
	start := s.pos
	for !s.eof() && !strings.ContainsRune(" \t\r\n=.[]{},#\"'", rune(s.peek())) {
		s.next()
	}
	return string(s.src[start:s.pos])
}

// value reads the value of k, recording the lines of array elements and of
// the keys of inline tables.
func (s *lineScanner) value(k keyPath) {
	s.skipSpace()
	s.set(k, s.line)
	switch {
	case s.hasPrefix(`"""`):
		s.multiline(`"""`, true)
	case s.hasPrefix(`'''`):
		s.multiline(`'''`, false)
	case s.peek() == '"' || s.peek() == '\'':
		s.simpleKey() // the same syntax as a quoted key
	case s.peek() == '[':
		s.next()
		for i := 0; ; {
			s.skipBlank()
			switch s.peek() {
			case 0:
				return
			case ']':
				s.next()
				return
			case ',':
				s.next()
				i++
			default:
				start := s.pos
				s.value(k.index(i))
				if s.pos == start {
					s.next()
				}
			}
		}
	case s.peek() == '{':
		s.next()
		for {
			s.skipBlank()
			switch s.peek() {
			case 0:
				return
			case '}':
				s.next()
				return
			case ',':
				s.next()
			default:
				start := s.pos
				s.keyValue(k)
				if s.pos == start {
					s.next()
				}
			}
		}
	default:
		for !s.eof() && !strings.ContainsRune(" \t\r\n,]}#", rune(s.peek())) {
			s.next()
		}
	}
}

// multiline skips a multi-line string opened by quotes.
func (s *lineScanner) multiline(quotes string, escapes bool) {
	s.pos += len(quotes)
	for !s.eof() {
		if s.hasPrefix(quotes) {
			s.pos += len(quotes)
			// Up to two more quotes are part of the string.
			for range 2 {
				if s.peek() == quotes[0] {
					s.next()
				}
			}
			return
		}
		if s.next() == '\\' && escapes && !s.eof() {
			s.next()
		}
	}
}
