package ui

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
)

// ansiStyle is the graphic rendition an ANSI SGR sequence sets up.
type ansiStyle struct {
	fg, bg                         ansiColor
	bold, faint, italic, underline bool
}

// ansiColor is no colour (0), one of the 16 named colours (1..16, as
// classes ansi-fg-N/ansi-bg-N with N = c-1), a 256-colour palette entry or
// an RGB colour (as an inline style, from rgb).
type ansiColor struct {
	kind uint8 // 0 none, 1 named, 2 rgb
	n    uint8 // named colour 0..15
	rgb  uint32
}

func (st ansiStyle) span() string {
	var class []string
	var style []string
	if st.bold {
		class = append(class, "ansi-bold")
	}
	if st.faint {
		class = append(class, "ansi-faint")
	}
	if st.italic {
		class = append(class, "ansi-italic")
	}
	if st.underline {
		class = append(class, "ansi-underline")
	}
	for _, c := range []struct {
		col       ansiColor
		cls, prop string
	}{{st.fg, "ansi-fg-", "color"}, {st.bg, "ansi-bg-", "background-color"}} {
		switch c.col.kind {
		case 1:
			class = append(class, c.cls+strconv.Itoa(int(c.col.n)))
		case 2:
			style = append(style, fmt.Sprintf("%s:#%06x", c.prop, c.col.rgb))
		}
	}
	if len(class) == 0 && len(style) == 0 {
		return ""
	}
	out := "<span"
	if len(class) > 0 {
		out += ` class="` + strings.Join(class, " ") + `"`
	}
	if len(style) > 0 {
		out += ` style="` + strings.Join(style, ";") + `"`
	}
	return out + ">"
}

// palette256 is colour n ≥ 16 of xterm's 256-colour palette.
func palette256(n int) ansiColor {
	if n < 16 {
		return ansiColor{kind: 1, n: uint8(n)}
	}
	if n >= 232 {
		g := uint32(8 + 10*(n-232))
		return ansiColor{kind: 2, rgb: g<<16 | g<<8 | g}
	}
	levels := [6]uint32{0, 95, 135, 175, 215, 255}
	n -= 16
	return ansiColor{kind: 2, rgb: levels[n/36]<<16 | levels[n/6%6]<<8 | levels[n%6]}
}

// sgr applies the parameters of an SGR sequence (ESC [ params m).
func (st *ansiStyle) sgr(params string) {
	var ps []int
	for f := range strings.FieldsFuncSeq(params, func(r rune) bool { return r == ';' || r == ':' }) {
		n, err := strconv.Atoi(f)
		if err != nil {
			n = -1
		}
		ps = append(ps, n)
	}
	if len(ps) == 0 {
		ps = []int{0}
	}
	for i := 0; i < len(ps); i++ {
		switch p := ps[i]; {
		case p == 0:
			*st = ansiStyle{}
		case p == 1:
			st.bold = true
		case p == 2:
			st.faint = true
		case p == 3:
			st.italic = true
		case p == 4:
			st.underline = true
		case p == 22:
			st.bold, st.faint = false, false
		case p == 23:
			st.italic = false
		case p == 24:
			st.underline = false
		case p >= 30 && p <= 37:
			st.fg = ansiColor{kind: 1, n: uint8(p - 30)}
		case p == 39:
			st.fg = ansiColor{}
		case p >= 40 && p <= 47:
			st.bg = ansiColor{kind: 1, n: uint8(p - 40)}
		case p == 49:
			st.bg = ansiColor{}
		case p >= 90 && p <= 97:
			st.fg = ansiColor{kind: 1, n: uint8(p - 90 + 8)}
		case p >= 100 && p <= 107:
			st.bg = ansiColor{kind: 1, n: uint8(p - 100 + 8)}
		case p == 38 || p == 48:
			var c ansiColor
			switch {
			case i+2 < len(ps) && ps[i+1] == 5:
				if n := ps[i+2]; n >= 0 && n < 256 {
					c = palette256(n)
				}
				i += 2
			case i+4 < len(ps) && ps[i+1] == 2:
				r, g, b := ps[i+2], ps[i+3], ps[i+4]
				if r >= 0 && r < 256 && g >= 0 && g < 256 && b >= 0 && b < 256 {
					c = ansiColor{kind: 2, rgb: uint32(r)<<16 | uint32(g)<<8 | uint32(b)}
				}
				i += 4
			default:
				i = len(ps) // malformed: ignore the rest
				continue
			}
			if p == 38 {
				st.fg = c
			} else {
				st.bg = c
			}
		}
	}
}

// ansiHTML renders one line of terminal output as HTML: SGR colours and
// attributes become spans, every other escape sequence and control
// character is dropped, and a carriage return keeps only what follows it,
// as a terminal would show a progress bar. st carries the style from line
// to line.
func ansiHTML(st *ansiStyle, line string) template.HTML {
	var out strings.Builder
	open := st.span()
	out.WriteString(open)
	text := func(s string) {
		template.HTMLEscape(&out, []byte(s))
	}
	restyle := func() {
		if open != "" {
			out.WriteString("</span>")
		}
		open = st.span()
		out.WriteString(open)
	}
	line = strings.TrimRight(line, "\r\n")
	start := 0
	for i := 0; i < len(line); {
		c := line[i]
		if c >= 0x20 && c != 0x7f || c == '\t' {
			i++
			continue
		}
		text(line[start:i])
		switch {
		case c == '\r':
			out.Reset()
			open = st.span()
			out.WriteString(open)
			i++
		case c == 0x1b && i+1 < len(line) && line[i+1] == '[':
			j := i + 2
			for j < len(line) && line[j] >= 0x20 && line[j] <= 0x3f {
				j++
			}
			if j < len(line) && line[j] >= 0x40 && line[j] <= 0x7e {
				if line[j] == 'm' {
					st.sgr(line[i+2 : j])
					restyle()
				}
				j++
			}
			i = j
		case c == 0x1b && i+1 < len(line) && line[i+1] == ']':
			// OSC, ended by BEL or ESC \.
			j := i + 2
			for j < len(line) && line[j] != 0x07 && !(line[j] == 0x1b && j+1 < len(line) && line[j+1] == '\\') {
				j++
			}
			if j < len(line) && line[j] == 0x1b {
				j++
			}
			i = min(j+1, len(line))
		case c == 0x1b:
			// ESC, intermediates, a final byte: a charset choice, a
			// keypad mode and the like.
			j := i + 1
			for j < len(line) && line[j] >= 0x20 && line[j] <= 0x2f {
				j++
			}
			i = min(j+1, len(line))
		default:
			i++
		}
		start = i
	}
	text(line[start:])
	if open != "" {
		out.WriteString("</span>")
	}
	return template.HTML(out.String())
}
