package protocol

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
)

// Secret is a value a worker must not write to its own log, and the name
// it writes instead, as "<name>" (buildbot's Obfuscated arguments, and the
// master's redaction of secrets in step logs, which writes the same).
type Secret struct {
	Value, Name string
}

// Hider hides secret values and the passwords of URLs in the text a
// worker logs. The zero Hider and a nil one hide URL passwords only. It is
// safe for concurrent use.
type Hider struct {
	rep *strings.Replacer // nil when there is no secret
}

// NewHider returns a Hider of secrets. A value of several lines is hidden
// whole and line by line, as the master's logs show it; empty values are
// ignored.
func NewHider(secrets []Secret) *Hider {
	names := map[string]string{}
	for _, s := range secrets {
		if s.Value == "" {
			continue
		}
		names[s.Value] = cmp.Or(names[s.Value], s.Name)
		for l := range strings.SplitSeq(s.Value, "\n") {
			if l = strings.TrimSuffix(l, "\r"); strings.TrimSpace(l) != "" && names[l] == "" {
				names[l] = s.Name
			}
		}
	}
	if len(names) == 0 {
		return &Hider{}
	}
	// Longest first: a value holding another is replaced whole.
	vals := slices.SortedFunc(func(yield func(string) bool) {
		for v := range names {
			if !yield(v) {
				return
			}
		}
	}, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b)) })
	pairs := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		pairs = append(pairs, v, "<"+names[v]+">")
	}
	return &Hider{rep: strings.NewReplacer(pairs...)}
}

// urlPassword matches the password of a URL's user info
// (scheme://user:PASSWORD@host), as git remotes carry them.
var urlPassword = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^/@\s:]*:)[^/@\s]*@`)

// Hide returns s with the secrets and URL passwords hidden.
func (h *Hider) Hide(s string) string {
	if h != nil && h.rep != nil {
		s = h.rep.Replace(s)
	}
	return urlPassword.ReplaceAllString(s, "${1}xxxx@")
}

// HideAll returns a copy of ss, each hidden.
func (h *Hider) HideAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = h.Hide(s)
	}
	return out
}
