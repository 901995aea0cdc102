package api

import (
	"cmp"
	"encoding/json"
	"strconv"
	"time"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// The resource types, with buildbot 3.7's field names.
var (
	builderRes = &resource{plural: "builders", fields: map[string]kind{
		"builderid": kindInt, "description": kindString, "masterids": kindList, "name": kindString, "tags": kindList,
		// buildbot 4's, which its UI reads: gbb has no projects, nor
		// formatted descriptions.
		"description_format": kindString, "description_html": kindString, "projectid": kindInt,
	}}
	buildRes = &resource{plural: "builds", fields: map[string]kind{
		"builderid": kindInt, "buildid": kindInt, "buildrequestid": kindInt, "complete": kindBool,
		"complete_at": kindInt, "masterid": kindInt, "number": kindInt, "properties": kindObject,
		"results": kindInt, "started_at": kindInt, "state_string": kindString, "workerid": kindInt,
		"locks_duration_s": kindInt, // buildbot 4's
	}}
	stepRes = &resource{plural: "steps", fields: map[string]kind{
		"buildid": kindInt, "complete": kindBool, "complete_at": kindInt, "hidden": kindBool,
		"name": kindString, "number": kindInt, "results": kindInt, "started_at": kindInt,
		"state_string": kindString, "stepid": kindInt, "urls": kindList,
		"locks_acquired_at": kindInt, // buildbot 4's
	}}
	logRes = &resource{plural: "logs", fields: map[string]kind{
		"complete": kindBool, "logid": kindInt, "name": kindString, "num_lines": kindInt,
		"slug": kindString, "stepid": kindInt, "type": kindString,
	}}
	logchunkRes = &resource{plural: "logchunks", fields: map[string]kind{
		"content": kindString, "firstline": kindInt, "logid": kindInt,
	}}
	workerRes = &resource{plural: "workers", fields: map[string]kind{
		"configured_on": kindList, "connected_to": kindList, "graceful": kindBool, "name": kindString,
		"paused": kindBool, "workerid": kindInt, "workerinfo": kindObject,
		"pause_reason": kindString, // buildbot 4's
	}}
	buildrequestRes = &resource{plural: "buildrequests", fields: map[string]kind{
		"builderid": kindInt, "buildrequestid": kindInt, "buildsetid": kindInt, "claimed": kindBool,
		"claimed_at": kindInt, "claimed_by_masterid": kindInt, "complete": kindBool, "complete_at": kindInt,
		"priority": kindInt, "properties": kindObject, "results": kindInt, "submitted_at": kindInt,
		"waited_for": kindBool,
	}}
	buildsetRes = &resource{plural: "buildsets", fields: map[string]kind{
		"bsid": kindInt, "complete": kindBool, "complete_at": kindInt, "external_idstring": kindString,
		"parent_buildid": kindInt, "parent_relationship": kindString, "reason": kindString,
		"results": kindInt, "sourcestamps": kindList, "submitted_at": kindInt,
		"rebuilt_buildid": kindInt, // buildbot 4's
	}}
	sourcestampRes = &resource{plural: "sourcestamps", fields: map[string]kind{
		"branch": kindString, "codebase": kindString, "created_at": kindInt, "patch": kindObject,
		"project": kindString, "repository": kindString, "revision": kindString, "ssid": kindInt,
	}}
	forceschedulerRes = &resource{plural: "forceschedulers", fields: map[string]kind{
		"all_fields": kindList, "builder_names": kindList, "button_name": kindString, "enabled": kindBool,
		"label": kindString, "name": kindString,
	}}
	masterRes = &resource{plural: "masters", fields: map[string]kind{
		"active": kindBool, "last_active": kindInt, "masterid": kindInt, "name": kindString,
		"worker_tls_not_after": kindInt, "leader": kindBool,
	}}
)

// unixTime is t in unix seconds, or null when unset.
func unixTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

// results is a result code, or null while incomplete.
func results(complete bool, r int) any {
	if !complete {
		return nil
	}
	return int64(r)
}

// nullString is s, or null when empty.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullID is id, or null when zero.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func builderObj(b store.Builder) map[string]any {
	tags := make([]any, 0, len(b.Tags))
	for _, t := range b.Tags {
		tags = append(tags, t)
	}
	masters := make([]any, 0, len(b.MasterIDs))
	for _, id := range b.MasterIDs {
		masters = append(masters, id)
	}
	return map[string]any{
		"builderid":          b.ID,
		"description":        nullString(b.Description),
		"description_format": nil,
		"description_html":   nil,
		"masterids":          masters,
		"name":               b.Name,
		"projectid":          nil,
		"tags":               tags,
	}
}

// buildObj is b, with the properties that props names ("*" for all), as
// buildbot gives them only when asked.
func buildObj(b store.Build, props []string) map[string]any {
	return map[string]any{
		"builderid":      b.BuilderID,
		"buildid":        b.ID,
		"buildrequestid": b.BuildRequestID,
		"complete":       b.Complete,
		"complete_at":    unixTime(b.CompleteAt),
		// gbb does not measure the wait for locks.
		"locks_duration_s": int64(0),
		"masterid":         b.MasterID,
		"number":           b.Number,
		"properties":       propertiesObj(b.Properties, props),
		"results":          results(b.Complete, b.Results),
		"started_at":       unixTime(b.StartedAt),
		"state_string":     b.StateString,
		"workerid":         b.WorkerID,
	}
}

// propertiesObj renders the properties that names selects as buildbot's
// {"name": [value, "source"]}.
func propertiesObj(p store.Properties, names []string) map[string]any {
	out := map[string]any{}
	for _, n := range names {
		if n == "*" {
			for name, prop := range p {
				out[name] = propertyValue(prop)
			}
			break
		}
		if prop, ok := p[n]; ok {
			out[n] = propertyValue(prop)
		}
	}
	return out
}

func propertyValue(p store.Property) []any {
	var v any
	if len(p.Value) > 0 && json.Valid(p.Value) {
		v = p.Value
	}
	return []any{v, p.Source}
}

func stepObj(s store.Step) map[string]any {
	urls := make([]any, 0, len(s.URLs))
	for _, u := range s.URLs {
		urls = append(urls, map[string]any{"name": u.Name, "url": u.URL})
	}
	return map[string]any{
		"buildid":     s.BuildID,
		"complete":    s.Complete,
		"complete_at": unixTime(s.CompleteAt),
		"hidden":      s.Hidden,
		// gbb takes a step's locks before it starts it.
		"locks_acquired_at": unixTime(s.StartedAt),
		"name":              s.Name,
		"number":            int64(s.Number),
		"results":           results(s.Complete, s.Results),
		"started_at":        unixTime(s.StartedAt),
		"state_string":      s.StateString,
		"stepid":            s.ID,
		"urls":              urls,
	}
}

func logObj(l store.Log) map[string]any {
	return map[string]any{
		"complete":  l.Complete,
		"logid":     l.ID,
		"name":      l.Name,
		"num_lines": l.NumLines,
		"slug":      l.Slug,
		"stepid":    l.StepID,
		"type":      l.Type,
	}
}

func workerObj(w store.Worker) map[string]any {
	configured := make([]any, 0, len(w.ConfiguredOn))
	for _, bm := range w.ConfiguredOn {
		configured = append(configured, map[string]any{"builderid": bm.BuilderID, "masterid": bm.MasterID})
	}
	connected := make([]any, 0, len(w.ConnectedTo))
	for _, id := range w.ConnectedTo {
		connected = append(connected, map[string]any{"masterid": id})
	}
	info := make(map[string]any, len(w.Info))
	for k, v := range w.Info {
		info[k] = v
	}
	return map[string]any{
		"configured_on": configured,
		"connected_to":  connected,
		"graceful":      w.Graceful,
		"name":          w.Name,
		"pause_reason":  nil,
		"paused":        w.Paused,
		"workerid":      w.ID,
		"workerinfo":    info,
	}
}

func buildrequestObj(br store.BuildRequest) map[string]any {
	return map[string]any{
		"builderid":           br.BuilderID,
		"buildrequestid":      br.ID,
		"buildsetid":          br.BuildsetID,
		"claimed":             br.Claimed,
		"claimed_at":          unixTime(br.ClaimedAt),
		"claimed_by_masterid": nullID(br.ClaimedByMasterID),
		"complete":            br.Complete,
		"complete_at":         unixTime(br.CompleteAt),
		"priority":            int64(br.Priority),
		"properties":          nil,
		"results":             results(br.Complete, br.Results),
		"submitted_at":        unixTime(br.SubmittedAt),
		"waited_for":          br.WaitedFor,
	}
}

func sourcestampObj(ss store.SourceStamp) map[string]any {
	return map[string]any{
		"branch":     nullString(ss.Branch),
		"codebase":   ss.Codebase,
		"created_at": unixTime(ss.CreatedAt),
		"patch":      nil,
		"project":    ss.Project,
		"repository": ss.Repository,
		"revision":   nullString(ss.Revision),
		"ssid":       ss.ID,
	}
}

func buildsetObj(bs store.Buildset) map[string]any {
	sss := make([]any, 0, len(bs.SourceStamps))
	for _, ss := range bs.SourceStamps {
		sss = append(sss, sourcestampObj(ss))
	}
	return map[string]any{
		"bsid":                bs.ID,
		"complete":            bs.Complete,
		"complete_at":         unixTime(bs.CompleteAt),
		"external_idstring":   nullString(bs.ExternalID),
		"parent_buildid":      nullID(bs.ParentBuildID),
		"parent_relationship": nil,
		"reason":              bs.Reason,
		"rebuilt_buildid":     nullID(bs.RebuiltBuildID),
		"results":             results(bs.Complete, bs.Results),
		"sourcestamps":        sss,
		"submitted_at":        unixTime(bs.SubmittedAt),
	}
}

func masterObj(m store.Master) map[string]any {
	return map[string]any{
		"active":      m.Active,
		"last_active": unixTime(m.LastSeen),
		"masterid":    m.ID,
		"name":        m.Name,
	}
}

// masterResObj is a master as /masters gives it: buildbot's fields (as a
// scheduler's master has them), and gbb's worker_tls_not_after, when the
// worker port's TLS certificate ends (null: plaintext). The handlers add
// gbb's leader: whether it is the master that runs the schedulers, change
// sources and reporters of the masters sharing the store (not in events).
func masterResObj(m store.Master) map[string]any {
	o := masterObj(m)
	o["worker_tls_not_after"] = unixTime(m.WorkerCertNotAfter)
	return o
}

func forceschedulerObj(fi scheduler.ForceInfo) map[string]any {
	names := make([]any, 0, len(fi.BuilderNames))
	for _, n := range fi.BuilderNames {
		names = append(names, n)
	}
	label, button := fi.Label, fi.ButtonName
	if label == "" {
		label = fi.Name
	}
	if button == "" {
		button = fi.Name
	}
	fields := defaultForceFields(cmp.Or(fi.Reason, "force build"))
	if fi.Codebases != nil {
		fields = append(fields[:1], codebaseFields(fi.Codebases)...)
	}
	for _, p := range fi.Params {
		if p.Type == "username" {
			// It is the default "Your name" field, configured.
			fields[0].(map[string]any)["fields"].([]any)[0] = paramField(p)
			continue
		}
		fields = append(fields, paramField(p))
	}
	return map[string]any{
		"all_fields":    fields,
		"builder_names": names,
		"button_name":   button,
		"enabled":       !fi.Disabled,
		"label":         label,
		"name":          fi.Name,
	}
}

// defaultForceFields is buildbot's ForceScheduler parameter layout for the
// default parameters: the username and reason, then the source stamp.
func defaultForceFields(reason string) []any {
	return []any{
		nestedField(1, textField("username", "Your name:", "", 30, "username"), textField("reason", "reason", reason, 20, "text")),
		nestedField(2,
			textField("branch", "Branch:", "", 10, "text"),
			textField("project", "Project:", "", 10, "text"),
			textField("repository", "Repository:", "", 10, "text"),
			textField("revision", "Revision:", "", 10, "text"),
		),
	}
}

func textField(name, label, def string, size int, typ string) map[string]any {
	f := map[string]any{
		"autopopulate": nil,
		"default":      def,
		"fullName":     name,
		"hide":         false,
		"label":        label,
		"maxsize":      nil,
		"multiple":     false,
		"name":         name,
		"regex":        nil,
		"required":     false,
		"size":         int64(size),
		"tablabel":     label,
		"tooltip":      "",
		"type":         typ,
	}
	if typ == "username" {
		f["need_email"] = true
	}
	return f
}

// paramField is a custom force parameter as buildbot's parameter of its
// type: StringParameter ("text"), TextParameter ("textarea"), IntParameter
// ("int"), BooleanParameter ("bool") or ChoiceStringParameter ("list").
func paramField(p scheduler.ForceParam) map[string]any {
	label := cmp.Or(p.Label, p.Name)
	def := p.Default
	var f map[string]any
	switch p.Type {
	case "text":
		f = textField(p.Name, label, "", 10, "textarea")
		f["cols"], f["rows"] = int64(80), int64(20)
	case "int":
		f = textField(p.Name, label, "", 10, "int")
		if def == nil {
			def = int64(0)
		}
	case "bool":
		f = textField(p.Name, label, "", 0, "bool")
		delete(f, "size")
		if def == nil {
			def = false
		}
	case "choice":
		f = textField(p.Name, label, "", 0, "list")
		delete(f, "size")
		choices := make([]any, len(p.Choices))
		for i, c := range p.Choices {
			choices[i] = c
		}
		f["choices"], f["strict"] = choices, true
	case "fixed":
		// buildbot's FixedParameter: hidden, its default is the value.
		f = textField(p.Name, label, "", 10, "fixed")
		f["hide"] = true
	case "username":
		f = textField(p.Name, label, "", 30, "username")
		f["need_email"] = p.NeedEmail
	case "multiple_choice", "worker_choice":
		// ChoiceStringParameter with multiple=True; WorkerChoiceParameter,
		// not strict, its choices "-any-" and the builders' workers.
		f = textField(p.Name, label, "", 0, "list")
		delete(f, "size")
		choices := make([]any, len(p.Choices))
		for i, c := range p.Choices {
			choices[i] = c
		}
		f["choices"], f["strict"] = choices, p.Type == "multiple_choice"
		f["multiple"] = p.Type == "multiple_choice"
		if p.Type == "multiple_choice" {
			ds, _ := def.([]string)
			l := make([]any, len(ds))
			for i, d := range ds {
				l[i] = d
			}
			def = l
		}
	default: // string
		f = textField(p.Name, label, "", 10, "text")
	}
	if def == nil {
		def = ""
	}
	f["default"] = def
	f["required"] = p.Required
	if p.Regex != "" {
		f["regex"] = p.Regex
	}
	return f
}

func nestedField(columns int, fields ...map[string]any) map[string]any {
	fs := make([]any, len(fields))
	for i, f := range fields {
		fs[i] = f
	}
	return map[string]any{
		"autopopulate": nil,
		"columns":      int64(columns),
		"default":      "",
		"fields":       fs,
		"fullName":     nil,
		"hide":         false,
		"label":        "",
		"layout":       "vertical",
		"maxsize":      nil,
		"multiple":     false,
		"name":         "",
		"regex":        nil,
		"required":     false,
		"tablabel":     "",
		"tooltip":      "",
		"type":         "nested",
	}
}

// resultWords are buildbot's names of the result codes.
var resultWords = []string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}

// resultWord names a result; an incomplete build is "running".
func ResultWord(complete bool, r int) string {
	if !complete {
		return "running"
	}
	if r >= 0 && r < len(resultWords) {
		return resultWords[r]
	}
	return "result " + strconv.Itoa(r)
}

// EventMessage is an event's record as the REST API shows it.
func (s *Server) EventMessage(rec any) any {
	switch v := rec.(type) {
	case store.Build:
		return buildObj(v, nil)
	case store.Step:
		return stepObj(v)
	case store.Log:
		return logObj(v)
	case store.Worker:
		return workerObj(v)
	case store.BuildRequest:
		return buildrequestObj(v)
	case store.Buildset:
		return buildsetObj(v)
	case store.Builder:
		return builderObj(v)
	case store.Master:
		return masterResObj(v)
	case store.Properties:
		return propertiesObj(v, []string{"*"})
	case store.Change:
		ss, err := s.cfg.Store.SourceStamp(v.SourceStampID)
		if err != nil {
			// The change's own fields are its sourcestamp's.
			ss = store.SourceStamp{ID: v.SourceStampID, Codebase: v.Codebase, Branch: v.Branch,
				Revision: v.Revision, Repository: v.Repository, Project: v.Project}
		}
		return changeObj(v, ss)
	}
	return rec
}
