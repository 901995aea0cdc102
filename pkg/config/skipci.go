package config

import "regexp"

// DefaultSkipCI are the patterns a change scheduler's skip_ci takes when
// it is not set: buildbot's GitHub hook's default skips, "[ci skip]" and
// "[skip ci]" with any spaces inside the brackets.
var DefaultSkipCI = []string{`\[ *skip *ci *\]`, `\[ *ci *skip *\]`}

// skipCI reads the skip_ci key of t into s: regexps (Go syntax, searched
// unanchored in the commit message as Python's re.search).
func (d *decoder) skipCI(t *table, s *Scheduler) {
	pats, ok := t.strings("skip_ci")
	if !ok {
		return
	}
	k := t.path.key("skip_ci")
	for i, p := range pats {
		if _, err := regexp.Compile(p); err != nil {
			t.d.errorAt(k.index(i), k, "bad pattern %q: %v", p, err)
			return
		}
	}
	s.SkipCI = pats
}

// SkipCIPatterns returns the patterns that make s skip a change: its
// skip_ci, or DefaultSkipCI when it is not set.
func (s Scheduler) SkipCIPatterns() []string {
	if s.SkipCI == nil {
		return DefaultSkipCI
	}
	return s.SkipCI
}
