package build

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestWarningCounterResumes: a counter whose state goes through a resume
// point (JSON, as the store keeps it) at any byte of the output, then
// takes the rest, ends with the warnings of one that took it all.
func TestWarningCounterResumes(t *testing.T) {
	sc := config.Step{
		WarningPattern: "warning:",
		Suppress:       []config.Suppression{{Regex: "deprecated"}, {File: `^vendor/`, Regex: "."}},
	}
	outs := []protocol.Output{
		{Stream: protocol.Stdout, Data: []byte("a.c:1: warning: one\nb.c:2: warn")},
		{Stream: protocol.Stderr, Data: []byte("vendor/x.c:1: warning: theirs\nc.c:3: warning: deprecated\n\xff.c:4: warn")},
		{Stream: protocol.Header, Data: []byte("warning: a header is no warning\n")},
		{Stream: protocol.Stdout, Data: []byte("ing: two\r\nok\n")},
		{Stream: protocol.Stderr, Data: []byte("ing: not UTF-8")},
	}
	whole := newWarningCounter(sc)
	for _, o := range outs {
		whole.output(o)
	}
	want := whole.end()
	if len(want) != 3 {
		t.Fatalf("warnings without a resume %q, want 3", want)
	}
	for i, o := range outs {
		for cut := 0; cut <= len(o.Data); cut++ {
			w := newWarningCounter(sc)
			for _, p := range outs[:i] {
				w.output(p)
			}
			w.output(protocol.Output{Stream: o.Stream, Data: o.Data[:cut]})
			data, err := json.Marshal(store.ResumePoint{Warnings: w.state()})
			if err != nil {
				t.Fatal(err)
			}
			var p store.ResumePoint
			if err := json.Unmarshal(data, &p); err != nil {
				t.Fatal(err)
			}
			if p.Warnings.Rules != warningRules(sc) {
				t.Fatalf("kept rules %q, want %q", p.Warnings.Rules, warningRules(sc))
			}
			r := resumeWarningCounter(sc, p.Warnings)
			r.output(protocol.Output{Stream: o.Stream, Data: o.Data[cut:]})
			for _, q := range outs[i+1:] {
				r.output(q)
			}
			if got := r.end(); !slices.Equal(got, want) {
				t.Errorf("resumed at byte %d of chunk %d: warnings %q, want %q", cut, i, got, want)
			}
		}
	}
}

// TestWarningRules: a change of warning_pattern or suppress changes the
// rules a resume point's counter state is kept under; a step counting no
// warnings has none.
func TestWarningRules(t *testing.T) {
	base := config.Step{WarningPattern: "warning:", Suppress: []config.Suppression{{Regex: "x"}}}
	if warningRules(config.Step{}) != "" || newWarningCounter(config.Step{}).state() != nil {
		t.Errorf("a step counting no warnings has rules %q", warningRules(config.Step{}))
	}
	for _, other := range []config.Step{
		{WarningPattern: "warn:", Suppress: base.Suppress},
		{WarningPattern: "warning:"},
		{WarningPattern: "warning:", Suppress: []config.Suppression{{File: "a", Regex: "x"}}},
	} {
		if warningRules(other) == warningRules(base) {
			t.Errorf("rules of %+v and %+v are both %q", other, base, warningRules(base))
		}
	}
}
