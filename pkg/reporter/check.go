package reporter

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Check makes the sender of every reporter of cfg as the master does, and
// runs each mail template once on a sample build's report (so that a
// field no report has, {{.NoSuchField}}, is found too): what would stop a
// reporter from running is a config error, at checkconfig and at a
// reconfig, which it refuses. The errors are *config.Error, naming the
// file, the reporter's line and the key; nil when there are none.
func Check(cfg *config.Config) error {
	var errs []error
	for i, rc := range cfg.Reporters {
		at := func(key string, err error) {
			k := fmt.Sprintf("reporters[%d]", i)
			if key != "" {
				k += "." + key
			}
			msg := err.Error()
			msg = strings.TrimPrefix(msg, fmt.Sprintf("reporter %s: ", rc.Name))
			msg = strings.TrimPrefix(msg, key+": ")
			errs = append(errs, &config.Error{File: cfg.File, Line: rc.Line, Key: k, Msg: msg})
		}
		if rc.Type == "mail" {
			bad := false
			for _, t := range []struct{ key, text, def string }{{"subject", rc.Subject, defaultMailSubject}, {"body", rc.Body, defaultMailBody}} {
				if _, err := mailTemplate(t.key, t.text, t.def); err != nil {
					at(t.key, err)
					bad = true
				}
			}
			if bad {
				continue
			}
		}
		s, err := newSender(rc, Deps{HTTP: &http.Client{}, Title: cfg.Title})
		if err != nil {
			at("", err)
			continue
		}
		if ms, ok := s.(*mailSender); ok {
			for _, r := range sampleReports() {
				data := ms.mailData(r)
				if err := ms.subject.Execute(io.Discard, data); err != nil {
					at("subject", err)
				}
				if err := ms.body.Execute(io.Discard, data); err != nil {
					at("body", err)
				}
			}
		}
	}
	return joinConfigErrors(errs)
}

// joinConfigErrors joins errs, one per line, so that config.Errors lists
// them; nil when there are none.
func joinConfigErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	// Each template error once, though two sample reports found it.
	var out []error
	seen := map[string]bool{}
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// sampleReports are a build's start and its failed end, with every field
// of a Report filled, for Check to run the mail templates on.
func sampleReports() []*Report {
	start := time.Unix(1700000000, 0).UTC()
	prev := store.Build{ID: 1, Number: 6, Complete: true, Results: store.Success}
	base := func(event string) *Report {
		b := store.Build{ID: 2, Number: 7, BuilderID: 1, StartedAt: start, Results: -1, StateString: "building"}
		r := &Report{
			Event:   event,
			Build:   b,
			Builder: store.Builder{ID: 1, Name: "runtests", Tags: []string{"ci"}},
			Worker:  "worker1",
			URL:     "http://localhost:8010/builders/1/builds/7",
			Buildset: store.Buildset{ID: 1, Reason: "sample", SourceStamps: []store.SourceStamp{
				{Branch: "main", Revision: "0123456789abcdef0123456789abcdef01234567", Repository: "https://git.example.org/widget.git", Project: "widget"}}},
			Changes:   []store.Change{{ID: 1, Author: "Alice <alice@example.org>", Comments: "a change", Revision: "0123456789abcdef0123456789abcdef01234567"}},
			Previous:  &prev,
			Props:     map[string]any{"buildername": "runtests", "branch": "main"},
			Blamelist: []string{"Alice <alice@example.org>"},
			Render:    func(s string) (string, error) { return s, nil },
		}
		return r
	}
	fin := base(Finished)
	fin.Build.Complete, fin.Build.CompleteAt, fin.Build.Results, fin.Build.StateString = true, start.Add(time.Minute), store.Failure, "failed test"
	fin.Steps = []store.Step{{Number: 0, Name: "test", Complete: true, Results: store.Failure, StateString: "failed"}}
	return []*Report{base(Started), fin}
}
