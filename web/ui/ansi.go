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

// ansiColor is no colour (set false) or entry n of xterm's 256-colour
// palette: the 16 named colours (0..15), the 6×6×6 cube (16..231) and the
// greys (232..255). Each is a class, ansi-fg-N or ansi-bg-N (style.css for
// the named ones, ansi256.css for the rest), never an inline style, which
// the Content-Security-Policy (web/headers.go) forbids. An RGB colour
// (ESC[38;2;R;G;Bm) becomes the palette entry nearest to it, as tmux shows
// it on a terminal of 256 colours.
type ansiColor struct {
	set bool
	n   uint8
}

func (st ansiStyle) span() string {
	var class []string
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
	if st.fg.set {
		class = append(class, "ansi-fg-"+strconv.Itoa(int(st.fg.n)))
	}
	if st.bg.set {
		class = append(class, "ansi-bg-"+strconv.Itoa(int(st.bg.n)))
	}
	if len(class) == 0 {
		return ""
	}
	return `<span class="` + strings.Join(class, " ") + `">`
}

// cubeLevels are the intensities of each channel of the 6×6×6 cube.
var cubeLevels = [6]int{0, 95, 135, 175, 215, 255}

// paletteRGB is the RGB of entry n ≥ 16 of xterm's 256-colour palette.
func paletteRGB(n int) (r, g, b int) {
	if n >= 232 {
		v := 8 + 10*(n-232)
		return v, v, v
	}
	n -= 16
	return cubeLevels[n/36], cubeLevels[n/6%6], cubeLevels[n%6]
}

// nearestPalette returns the entry of the cube or the greys (16..255)
// nearest to an RGB colour: the nearest cube colour, or the nearest grey
// when it is closer.
func nearestPalette(r, g, b int) uint8 {
	level := func(v int) int {
		best := 0
		for i, l := range cubeLevels {
			if abs(l-v) < abs(cubeLevels[best]-v) {
				best = i
			}
		}
		return best
	}
	dist := func(n int) int {
		pr, pg, pb := paletteRGB(n)
		return (pr-r)*(pr-r) + (pg-g)*(pg-g) + (pb-b)*(pb-b)
	}
	cube := 16 + 36*level(r) + 6*level(g) + level(b)
	grey := 232 + min(23, max(0, ((r+g+b)/3-3)/10))
	if dist(grey) < dist(cube) {
		return uint8(grey)
	}
	return uint8(cube)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// ansi256CSS is static/ansi256.css: the classes of palette entries
// 16..255 (TestANSI256CSS checks the file against it).
func ansi256CSS() string {
	var b strings.Builder
	b.WriteString("/* xterm's 256-colour palette, entries 16-255, as classes (web/ui/ansi.go; the CSP forbids inline styles). Generated: see TestANSI256CSS. */\n")
	for n := 16; n < 256; n++ {
		r, g, bl := paletteRGB(n)
		fmt.Fprintf(&b, ".ansi-fg-%d { color: #%02x%02x%02x; } .ansi-bg-%d { background: #%02x%02x%02x; }\n", n, r, g, bl, n, r, g, bl)
	}
	return b.String()
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
			st.fg = ansiColor{set: true, n: uint8(p - 30)}
		case p == 39:
			st.fg = ansiColor{}
		case p >= 40 && p <= 47:
			st.bg = ansiColor{set: true, n: uint8(p - 40)}
		case p == 49:
			st.bg = ansiColor{}
		case p >= 90 && p <= 97:
			st.fg = ansiColor{set: true, n: uint8(p - 90 + 8)}
		case p >= 100 && p <= 107:
			st.bg = ansiColor{set: true, n: uint8(p - 100 + 8)}
		case p == 38 || p == 48:
			var c ansiColor
			switch {
			case i+2 < len(ps) && ps[i+1] == 5:
				if n := ps[i+2]; n >= 0 && n < 256 {
					c = ansiColor{set: true, n: uint8(n)}
				}
				i += 2
			case i+4 < len(ps) && ps[i+1] == 2:
				r, g, b := ps[i+2], ps[i+3], ps[i+4]
				if r >= 0 && r < 256 && g >= 0 && g < 256 && b >= 0 && b < 256 {
					c = ansiColor{set: true, n: nearestPalette(r, g, b)}
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
