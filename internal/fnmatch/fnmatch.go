package fnmatch

import (
	"fmt"
	"regexp"
	"strings"
)

// Match reports whether name matches pattern, as Python's
// fnmatch.fnmatchcase(name, pattern): case-sensitive, no escapes, and a
// "[" with no closing "]" stands for itself.
func Match(pattern, name string) bool {
	return Compile(pattern).MatchString(name)
}

// Compile returns the regexp that matches what pattern matches. Every
// pattern compiles.
func Compile(pattern string) *regexp.Regexp {
	return regexp.MustCompile(translate(pattern))
}

// translate follows CPython 3.11's fnmatch.translate, in RE2's syntax.
func translate(pat string) string {
	p := []rune(pat)
	var b strings.Builder
	b.WriteString(`\A(?s:`)
	n := len(p)
	starred := false // the last thing written is a "*"
	for i := 0; i < n; {
		c := p[i]
		i++
		switch c {
		case '*':
			if !starred {
				b.WriteString(`.*`)
			}
			starred = true
			continue
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i
			if j < n && p[j] == '!' {
				j++
			}
			if j < n && p[j] == ']' {
				j++
			}
			for j < n && p[j] != ']' {
				j++
			}
			if j >= n {
				b.WriteString(`\[`)
				break
			}
			b.WriteString(class(p[i:j]))
			i = j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
		starred = false
	}
	b.WriteString(`)\z`)
	return b.String()
}

// neverRE matches no character.
const neverRE = `[^\x00-\x{10FFFF}]`

// class translates the inside of a "[...]" (stuff, "!" included), as
// fnmatch.translate: a "-" between two characters is a range, and one at
// either end a literal; a range whose ends are reversed is dropped, with
// both its ends.
func class(stuff []rune) string {
	// chunks are runs of literal characters; between two chunks is a
	// range from the last of the first to the first of the second.
	var chunks [][]rune
	if !containsRune(stuff, '-') {
		chunks = [][]rune{stuff}
	} else {
		i, j := 0, len(stuff)
		k := 1
		if stuff[0] == '!' {
			k = 2
		}
		for {
			k = indexRune(stuff, '-', k, j)
			if k < 0 {
				break
			}
			chunks = append(chunks, stuff[i:k])
			i = k + 1
			k += 3
		}
		if chunk := stuff[i:j]; len(chunk) > 0 {
			chunks = append(chunks, chunk)
		} else {
			last := len(chunks) - 1
			chunks[last] = append(append([]rune{}, chunks[last]...), '-')
		}
		for k := len(chunks) - 1; k > 0; k-- {
			prev, cur := chunks[k-1], chunks[k]
			if prev[len(prev)-1] > cur[0] {
				merged := append(append([]rune{}, prev[:len(prev)-1]...), cur[1:]...)
				chunks[k-1] = merged
				chunks = append(chunks[:k], chunks[k+1:]...)
			}
		}
	}
	negate := false
	if len(chunks[0]) > 0 && chunks[0][0] == '!' {
		negate = true
		chunks[0] = chunks[0][1:]
	}
	if len(chunks) == 1 && len(chunks[0]) == 0 {
		if negate {
			return `.` // "[!]" matches any character
		}
		return neverRE // "[]" can only arise from a dropped range
	}
	var b strings.Builder
	b.WriteString("[")
	if negate {
		b.WriteString("^")
	}
	for ci, chunk := range chunks {
		for ri, r := range chunk {
			if ci > 0 && ri == 0 {
				b.WriteString("-") // the range from the previous chunk's last
			}
			fmt.Fprintf(&b, `\x{%x}`, r)
		}
	}
	b.WriteString("]")
	return b.String()
}

func containsRune(s []rune, r rune) bool { return indexRune(s, r, 0, len(s)) >= 0 }

// indexRune returns the index of r in s[from:to], or -1.
func indexRune(s []rune, r rune, from, to int) int {
	for i := from; i < to && i < len(s); i++ {
		if s[i] == r {
			return i
		}
	}
	return -1
}
