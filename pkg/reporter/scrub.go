package reporter

import (
	"encoding/base64"
	"encoding/json"
	"html"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"
)

// redacted stands for a secret in recorded and logged text.
const redacted = "<redacted>"

// cutMark ends text that was cut short (an endpoint's answer read in
// part, a message cut to its length): a secret's prefix before it is
// hidden too.
const cutMark = "…"

// maxErrorLen bounds a recorded error, in runes, after scrubbing.
const maxErrorLen = 1000

// minPrefix is the shortest prefix of a secret hidden at a cut end.
const minPrefix = 6

// secretForms are the forms in which an endpoint may echo the secrets:
// each as it is, URL-escaped, and in base64 (standard and URL alphabets,
// padded or not), and each with each user as basic auth ("user:secret")
// and as SMTP's AUTH PLAIN ("\0user\0secret", "user\0user\0secret") in
// base64. Longest first, so that a form is hidden whole before a form
// inside it.
func secretForms(secrets, users []string) []string {
	var plain []string
	for _, s := range secrets {
		if len(s) >= 4 {
			plain = append(plain, s)
		}
	}
	var forms []string
	add := func(v string) {
		if len(v) >= 4 && !slices.Contains(forms, v) {
			forms = append(forms, v)
		}
	}
	encode := func(v string) {
		b := []byte(v)
		add(base64.StdEncoding.EncodeToString(b))
		add(base64.URLEncoding.EncodeToString(b))
		// Inside a longer base64 text v may start at any byte: encode it
		// after 0, 1 and 2 bytes and keep the characters that hold its
		// bits only (not the neighbours').
		for k := range 3 {
			n := k + len(b)
			drop := (8*k + 5) / 6
			end := (8*n + 5) / 6
			if n%3 != 0 {
				end-- // the last character holds bits of what follows
			}
			if end-drop < 8 {
				continue
			}
			in := append(make([]byte, k), b...)
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				add(enc.EncodeToString(in)[drop:end])
			}
		}
	}
	for _, s := range plain {
		add(s)
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		// As a quoted error (%q), a JSON string and HTML text give it.
		add(strings.Trim(strconv.Quote(s), `"`))
		add(strings.Trim(strconv.QuoteToASCII(s), `"`))
		if j, err := json.Marshal(s); err == nil {
			add(strings.Trim(string(j), `"`))
		}
		add(html.EscapeString(s))
		add(template.HTMLEscapeString(s))
		add(template.JSEscapeString(s))
		// A URL given whole by a secret (a chat webhook's, whose path
		// is the credential): an endpoint may echo only its path, a
		// segment of it or its query.
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			add(u.Path)
			add(u.EscapedPath())
			add(u.RawQuery)
			for _, seg := range strings.Split(u.Path, "/") {
				if len(seg) >= minPrefix {
					add(seg)
				}
			}
			for _, vs := range u.Query() {
				for _, v := range vs {
					if len(v) >= minPrefix {
						add(v)
					}
				}
			}
		}
		encode(s)
		for _, u := range users {
			if u == "" {
				continue
			}
			encode(u + ":" + s)
			add(url.QueryEscape(u + ":" + s))
			encode("\x00" + u + "\x00" + s)
			encode(u + "\x00" + u + "\x00" + s)
		}
	}
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return forms
}

// scrubText hides every form of the secrets in s (secretForms), and any
// prefix of at least minPrefix bytes of one that ends where s was cut
// (before a cutMark, or at its end), then cuts it to maxErrorLen runes:
// the cut comes after the scrubbing, so it never leaves part of a secret.
func scrubText(s string, secrets, users []string) string {
	forms := secretForms(secrets, users)
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, redacted)
	}
	s = hideCutPrefixes(s, forms)
	return cutRunes(s, maxErrorLen)
}

// hideCutPrefixes hides a prefix of a form that ends at a cut end of s.
func hideCutPrefixes(s string, forms []string) string {
	if len(forms) == 0 {
		return s
	}
	var ends []int
	for i := 0; ; {
		j := strings.Index(s[i:], cutMark)
		if j < 0 {
			break
		}
		ends = append(ends, i+j)
		i += j + len(cutMark)
	}
	ends = append(ends, len(s))
	// From the last, so earlier positions stay valid.
	for k := len(ends) - 1; k >= 0; k-- {
		end := ends[k]
		for n := min(end, longest(forms)); n >= minPrefix; n-- {
			tail := s[end-n : end]
			if slices.ContainsFunc(forms, func(f string) bool { return len(f) > n && strings.HasPrefix(f, tail) }) {
				s = s[:end-n] + redacted + s[end:]
				break
			}
		}
	}
	return s
}

func longest(forms []string) int {
	n := 0
	for _, f := range forms {
		n = max(n, len(f))
	}
	return n
}

// cutRunes cuts s to n runes, ending it with cutMark when cut.
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + cutMark
}
