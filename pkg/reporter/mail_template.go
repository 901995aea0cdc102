package reporter

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// MailData is what a mail reporter's subject and body templates see (Go
// text/template: {{.Builder}}, {{range .Steps}}…{{end}}). The subject is
// kept on one line.
type MailData struct {
	Event   string // "started" or "finished"
	Title   string // the master's title; "" when none is set
	Builder string // the builder's name
	Number  int64  // the build's number
	URL     string // the build's page
	Worker  string // the worker's name
	// Result is the build's result as buildbot names it: success,
	// warnings, failure, skipped, exception, retry, cancelled ("not
	// finished" for a started build).
	Result string
	// PreviousResult is the previous build's result; "" when none.
	PreviousResult string
	// StatusDetected is buildbot's status_detected: "failed build", "new
	// failure" (modes change and problem), "problem in the build",
	// "passing build", "restored build" (mode change), "build exception",
	// "cancelled build" ….
	StatusDetected string
	// Summary is buildbot's summary: "Build succeeded!", "BUILD FAILED:
	// failed test" ….
	Summary string
	// State is the build's state string ("failed test", "build
	// successful"), or Result when it has none ("started" for a started
	// build).
	State    string
	Reason   string // the buildset's reason
	Revision string // got_revision, else the source stamp's revision, else "(unknown)"
	Branch   string // the branch property, else the source stamp's branch
	// Projects are the source stamps' projects, comma separated; the
	// title (or "Buildbot") when none has one.
	Projects  string
	Blamelist []string // the changes' authors
	Steps     []MailStep
	Changes   []store.Change
	// SourceStamps are buildbot's "Build Source Stamp: [branch B] REV"
	// lines, one per source stamp.
	SourceStamps string
	Props        map[string]any // the build's properties
	Mode         []string       // the reporter's modes
}

// MailStep is a step as MailData has it.
type MailStep struct {
	Number int
	Name   string
	Result string // as MailData.Result
	State  string // its state string
	URLs   []store.StepURL
}

// mailFuncs are the functions the templates have besides text/template's.
var mailFuncs = template.FuncMap{
	"join":  strings.Join,
	"upper": strings.ToUpper,
}

// defaultMailSubject reads like buildbot 3.7's default subject.
const defaultMailSubject = `{{if eq .Result "failure"}}☠{{else if eq .Result "success"}}☺{{else}}☝{{end}} ` +
	`Buildbot{{with .Title}} ({{.}}){{end}}: {{.Builder}} - {{.State}} ({{if .Branch}}{{.Branch}}{{else}}{{.Revision}}{{end}})`

// defaultMailBody reads like buildbot 3.7's default plain body.
const defaultMailBody = `{{if eq .Event "started" -}}
Build #{{.Number}} has started on builder {{.Builder}} while building {{.Projects}}.
{{- else -}}
A {{.StatusDetected}} has been detected on builder {{.Builder}} while building {{.Projects}}.
{{- end}}

Full details are available at:
    {{.URL}}

Build state: {{.State}}
Revision: {{.Revision}}
Worker: {{.Worker}}
Build Reason: {{.Reason}}
Blamelist: {{join .Blamelist ", "}}

Steps:
{{range .Steps}}
- {{.Number}}: {{.Name}} ( {{.Result}} ){{range .URLs}}
    {{.Name}}: {{.URL}}{{end}}
{{else}}
- (no steps)
{{end}}
`

// mailData makes the templates' data for a build report.
func (s *mailSender) mailData(r *Report) MailData {
	d := MailData{
		Event:     r.Event,
		Title:     s.title,
		Builder:   r.Builder.Name,
		Number:    r.Build.Number,
		URL:       r.URL,
		Worker:    r.Worker,
		Reason:    r.Buildset.Reason,
		Blamelist: r.Blamelist,
		Changes:   r.Changes,
		Props:     r.Props,
		Mode:      s.cfg.Mode,
		Result:    "not finished",
		State:     r.Build.StateString,
	}
	if d.Worker == "" {
		d.Worker = "<unknown>"
	}
	// A property the templates name that this build has not is empty,
	// as in buildbot's templates (missingkey=error would fail the mail,
	// text/template's default would print "<no value>").
	cloned := false
	for _, name := range s.props {
		if _, ok := d.Props[name]; !ok {
			if !cloned {
				d.Props, cloned = maps.Clone(r.Props), true
				if d.Props == nil {
					d.Props = map[string]any{}
				}
			}
			d.Props[name] = ""
		}
	}
	prop := func(name string) string {
		if v, ok := r.Props[name]; ok && v != nil {
			return fmt.Sprint(v)
		}
		return ""
	}
	if r.Event == Finished {
		d.Result = resultName(r.Build.Results)
		var prev *int
		if r.Previous != nil && r.Previous.Complete {
			d.PreviousResult = resultName(r.Previous.Results)
			prev = &r.Previous.Results
		}
		d.StatusDetected = statusDetected(s.cfg.Mode, r.Build.Results, prev)
		d.Summary = summary(r.Build)
	}
	if d.State == "" {
		d.State = d.Result
		if r.Event == Started {
			d.State = "started"
		}
	}
	projects := []string{}
	var stamps strings.Builder
	for _, ss := range r.Buildset.SourceStamps {
		if ss.Project != "" && !slices.Contains(projects, ss.Project) {
			projects = append(projects, ss.Project)
		}
		if d.Revision == "" {
			d.Revision = ss.Revision
		}
		if d.Branch == "" {
			d.Branch = ss.Branch
		}
		stamps.WriteString("Build Source Stamp")
		if ss.Codebase != "" {
			fmt.Fprintf(&stamps, " '%s'", ss.Codebase)
		}
		stamps.WriteString(": ")
		if ss.Branch != "" {
			fmt.Fprintf(&stamps, "[branch %s] ", ss.Branch)
		}
		if ss.Revision != "" {
			stamps.WriteString(ss.Revision)
		} else {
			stamps.WriteString("HEAD")
		}
		stamps.WriteString("\n")
	}
	d.SourceStamps = stamps.String()
	d.Projects = strings.Join(projects, ", ")
	if d.Projects == "" {
		d.Projects = s.title
		if d.Projects == "" {
			d.Projects = "Buildbot"
		}
	}
	if v := prop("got_revision"); v != "" {
		d.Revision = v
	}
	if d.Revision == "" {
		d.Revision = "(unknown)"
	}
	if v := prop("branch"); v != "" {
		d.Branch = v
	}
	if d.Reason == "" {
		d.Reason = prop("reason")
	}
	if d.Reason == "" {
		d.Reason = "(unknown)"
	}
	for _, st := range r.Steps {
		if st.Hidden {
			continue
		}
		res := "not finished"
		if st.Complete {
			res = resultName(st.Results)
		}
		d.Steps = append(d.Steps, MailStep{Number: st.Number, Name: st.Name, Result: res, State: st.StateString, URLs: st.URLs})
	}
	return d
}

// statusDetected is buildbot's get_detected_status_text.
func statusDetected(mode []string, results int, previous *int) string {
	has := func(m string) bool { return slices.Contains(mode, m) }
	switch results {
	case store.Failure:
		if (has("change") || has("problem")) && previous != nil && *previous != store.Failure {
			return "new failure"
		}
		return "failed build"
	case store.Warnings:
		return "problem in the build"
	case store.Success:
		if has("change") && previous != nil && *previous != results {
			return "restored build"
		}
		return "passing build"
	case store.Exception:
		return "build exception"
	}
	return resultName(results) + " build"
}

// summary is buildbot's get_message_summary_text.
func summary(b store.Build) string {
	t := ""
	if b.StateString != "" {
		t = ": " + b.StateString
	}
	switch b.Results {
	case store.Success:
		return "Build succeeded!"
	case store.Warnings:
		return "Build Had Warnings" + t
	case store.Cancelled:
		return "Build was cancelled"
	}
	return "BUILD FAILED" + t
}

// missingMail is buildbot's missing-worker mail (MessageFormatterMissingWorker's
// plain template), with a link to the worker's page.
func missingMail(title string, m *MissingWorker) (subject, body string) {
	subject = "Buildbot " + title + " worker " + m.Name + " missing"
	if title == "" {
		subject = "Buildbot worker " + m.Name + " missing"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The Buildbot worker named %s went away.\n\n", m.Name)
	if m.LastSeen.IsZero() {
		b.WriteString("It has not connected since the master started.\n\n")
	} else {
		fmt.Fprintf(&b, "It last disconnected at %s.\n\n", m.LastSeen.UTC().Format(time.RFC1123))
	}
	if m.Timeout > 0 {
		fmt.Fprintf(&b, "It has been away for more than its missing_timeout (%s).\n\n", m.Timeout)
	}
	if admin := m.Info["admin"]; admin != "" {
		fmt.Fprintf(&b, "The admin on record (as reported by WORKER:info/admin) was %s.\n\n", admin)
	}
	if m.URL != "" {
		fmt.Fprintf(&b, "Its page:\n    %s\n", m.URL)
	}
	return subject, b.String()
}

// templateProps are the names p of {{.Props.p}}, {{$.Props.p}} and
// {{index .Props "p"}} in t and the templates it defines.
func templateProps(t *template.Template) []string {
	var names []string
	add := func(p string) {
		if !slices.Contains(names, p) {
			names = append(names, p)
		}
	}
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			if len(n.Args) == 3 {
				if id, ok := n.Args[0].(*parse.IdentifierNode); ok && id.Ident == "index" {
					if f, ok := n.Args[1].(*parse.FieldNode); ok && slices.Equal(f.Ident, []string{"Props"}) {
						if s, ok := n.Args[2].(*parse.StringNode); ok {
							add(s.Text)
						}
					}
				}
			}
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.FieldNode:
			if len(n.Ident) >= 2 && n.Ident[0] == "Props" {
				add(n.Ident[1])
			}
		case *parse.VariableNode:
			if len(n.Ident) >= 3 && n.Ident[0] == "$" && n.Ident[1] == "Props" {
				add(n.Ident[2])
			}
		}
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walk(tt.Tree.Root)
		}
	}
	return names
}
