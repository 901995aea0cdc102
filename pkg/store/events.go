package store

import (
	"strconv"
	"strings"
)

// Publisher receives an event for every change the store commits;
// *events.Bus satisfies it. Key is buildbot's routing key joined with "/"
// ("builds/12/finished") and record the changed record after the write (a
// Build, Step, Log, Worker, BuildRequest, Buildset, Change, Builder, Master,
// or the Properties just set on a build). Publish must not block, and must
// not write to the store: it runs while the store holds back the next write.
type Publisher interface {
	Publish(key string, record any)
}

// RemotePublisher is a Publisher that tells the events of other masters
// sharing a PostgreSQL store (PublishRemote) from this master's own
// (Publish): the metrics count only this master's, so that the sum over
// masters counts each build once.
type RemotePublisher interface {
	Publisher
	PublishRemote(key string, record any)
}

// emit publishes a record under every key buildbot gives its kind of
// resource, each ending with the event ev.
type emit struct{ p Publisher }

// key joins path elements, ids in decimal.
func key(parts ...any) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('/')
		}
		switch v := p.(type) {
		case string:
			b.WriteString(v)
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		case int:
			b.WriteString(strconv.Itoa(v))
		}
	}
	return b.String()
}

func (e emit) master(ev string, m Master) {
	e.p.Publish(key("masters", m.ID, ev), m)
}

func (e emit) builder(ev string, b Builder) {
	e.p.Publish(key("builders", b.ID, ev), b)
}

func (e emit) worker(ev string, w Worker) {
	e.p.Publish(key("workers", w.ID, ev), w)
}

func (e emit) buildset(ev string, bs Buildset) {
	e.p.Publish(key("buildsets", bs.ID, ev), bs)
}

func (e emit) buildRequest(ev string, br BuildRequest) {
	e.p.Publish(key("buildsets", br.BuildsetID, "builders", br.BuilderID, "buildrequests", br.ID, ev), br)
	e.p.Publish(key("buildrequests", br.ID, ev), br)
	e.p.Publish(key("builders", br.BuilderID, "buildrequests", br.ID, ev), br)
}

func (e emit) build(ev string, b Build) {
	e.p.Publish(key("builders", b.BuilderID, "builds", b.Number, ev), b)
	e.p.Publish(key("builds", b.ID, ev), b)
	e.p.Publish(key("workers", b.WorkerID, "builds", b.ID, ev), b)
}

// buildProperties publishes the properties just set on build id, as
// buildbot's ('builds', id, 'properties', 'update').
func (e emit) buildProperties(id int64, p Properties) {
	e.p.Publish(key("builds", id, "properties", "update"), p)
}

func (e emit) step(ev string, s Step) {
	e.p.Publish(key("builds", s.BuildID, "steps", s.ID, ev), s)
	e.p.Publish(key("steps", s.ID, ev), s)
}

func (e emit) log(ev string, l Log) {
	e.p.Publish(key("logs", l.ID, ev), l)
	e.p.Publish(key("steps", l.StepID, "logs", l.Slug, ev), l)
}

func (e emit) change(c Change) {
	e.p.Publish(key("changes", c.ID, "new"), c)
}
