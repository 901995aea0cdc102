package ui

import (
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRootOf(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/": "./", "/builders": "./", "/builders/3": "../", "/builders/3/": "../../",
		"/builders/1/builds/2/steps/0/logs/stdio": "../../../../../../../",
	} {
		if got := rootOf(path); got != want {
			t.Errorf("rootOf(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestANSI256CSS: static/ansi256.css holds a class for each palette
// entry from 16 on, with xterm's colours. GBB_UPDATE_ANSI_CSS=1 rewrites
// it.
func TestANSI256CSS(t *testing.T) {
	t.Parallel()
	want := ansi256CSS()
	if os.Getenv("GBB_UPDATE_ANSI_CSS") != "" {
		if err := os.WriteFile("static/ansi256.css", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := fs.ReadFile(staticFS, "ansi256.css")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("static/ansi256.css is stale: run GBB_UPDATE_ANSI_CSS=1 go test -run TestANSI256CSS ./web/ui/ (twice)")
	}
	for _, line := range []string{".ansi-fg-196 { color: #ff0000; } .ansi-bg-196 { background: #ff0000; }", ".ansi-fg-232 { color: #080808; }", ".ansi-fg-255 { color: #eeeeee; }"} {
		if !strings.Contains(want, line) {
			t.Errorf("ansi256.css lacks %q", line)
		}
	}
}

func TestANSI(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"plain", "hello <world> & co\n", "hello &lt;world&gt; &amp; co"},
		{"red", "\x1b[31mred\x1b[0m plain", `<span class="ansi-fg-1">red</span> plain`},
		{"bold green", "\x1b[1;32mok\x1b[m", `<span class="ansi-bold ansi-fg-2">ok</span>`},
		{"bright and background", "\x1b[91;44mx", `<span class="ansi-fg-9 ansi-bg-4">x</span>`},
		{"bright background", "\x1b[103mx\x1b[49my", `<span class="ansi-bg-11">x</span>y`},
		{"256 named", "\x1b[38;5;3mx", `<span class="ansi-fg-3">x</span>`},
		{"256 cube", "\x1b[38;5;196mx", `<span class="ansi-fg-196">x</span>`},
		{"256 grey", "\x1b[48;5;232mx", `<span class="ansi-bg-232">x</span>`},
		// RGB: the nearest palette entry, never an inline style (the CSP).
		{"truecolor near black", "\x1b[38;2;1;2;3mx", `<span class="ansi-fg-16">x</span>`},
		{"truecolor red", "\x1b[38;2;250;10;5mx", `<span class="ansi-fg-196">x</span>`},
		{"truecolor grey", "\x1b[48;2;128;130;129mx", `<span class="ansi-bg-244">x</span>`},
		{"truecolor cube", "\x1b[38;2;95;135;175mx", `<span class="ansi-fg-67">x</span>`},
		{"attributes off", "\x1b[1;3;4ma\x1b[22;23;24mb", `<span class="ansi-bold ansi-italic ansi-underline">a</span>b`},
		{"default fg", "\x1b[32ma\x1b[39mb", `<span class="ansi-fg-2">a</span>b`},
		{"other CSI dropped", "a\x1b[2Kb\x1b[1Ac", "abc"},
		{"OSC dropped", "\x1b]0;title\x07text\x1b]8;;http://x\x1b\\link", "textlink"},
		{"other escapes dropped", "a\x1b(Bb\x1b=c", "abc"},
		{"control characters dropped", "a\x00b\x08c\td", "abc\td"},
		{"carriage return", "10%\r50%\r100% done\r\n", "100% done"},
		{"malformed extended colour", "\x1b[38;9mx", "x"},
		{"unterminated escape", "x\x1b[31", "x"},
		{"escaped inside span", "\x1b[31m<b>", `<span class="ansi-fg-1">&lt;b&gt;</span>`},
	}
	for _, tt := range tests {
		var st ansiStyle
		if got := string(ansiHTML(&st, tt.in)); got != tt.want {
			t.Errorf("%s: ansiHTML(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
	// The style carries from one line to the next.
	var st ansiStyle
	ansiHTML(&st, "\x1b[33mstart")
	if got, want := string(ansiHTML(&st, "still yellow\x1b[0m")), `<span class="ansi-fg-3">still yellow</span>`; got != want {
		t.Errorf("second line = %q, want %q", got, want)
	}
}

// TestFmtDuration: durations under a tenth of a second show milliseconds
// (never "0.0s"), under a minute a tenth of a second; a minute and more as time.Duration prints them, to the second.
func TestFmtDuration(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-3 * time.Second, "0s"},
		{300 * time.Microsecond, "<1ms"},
		{time.Millisecond, "1ms"},
		{40 * time.Millisecond, "40ms"},
		{49 * time.Millisecond, "49ms"},
		{99 * time.Millisecond, "99ms"},
		{99600 * time.Microsecond, "0.1s"},
		{300 * time.Millisecond, "0.3s"},
		{12340 * time.Millisecond, "12.3s"},
		{12350 * time.Millisecond, "12.4s"},
		{59940 * time.Millisecond, "59.9s"},
		{59960 * time.Millisecond, "1m0s"},
		{time.Minute, "1m0s"},
		{65400 * time.Millisecond, "1m5s"},
		{2*time.Hour + 3*time.Second, "2h0m3s"},
	} {
		if got := fmtDuration(c.d); got != c.want {
			t.Errorf("fmtDuration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := duration(start, true, start.Add(300*time.Millisecond)); got != "0.3s" {
		t.Errorf("a 0.3 s build reads %q, want 0.3s", got)
	}
	if got := duration(start, true, start.Add(40*time.Millisecond)); got != "40ms" {
		t.Errorf("a 40 ms build reads %q, want 40ms", got)
	}
}
