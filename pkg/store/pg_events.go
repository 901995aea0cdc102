package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgChannel is the NOTIFY channel of the store's events.
const pgChannel = "gbb_events"

// pgMaxPayload is the largest NOTIFY payload sent as is; PostgreSQL's limit
// is 8000 bytes. Larger batches go through the pg_events table and the
// notification names their row.
const pgMaxPayload = 7900

// eventBuffer is a Publisher that keeps what it is given, in order.
type eventBuffer []bufferedEvent

type bufferedEvent struct {
	key    string
	record any
}

func (r *eventBuffer) Publish(key string, record any) {
	*r = append(*r, bufferedEvent{key, record})
}

// wireEvent is one event on the wire between masters: the record's kind
// says which type its JSON decodes to.
type wireEvent struct {
	Key    string          `json:"k"`
	Kind   string          `json:"t"`
	Record json.RawMessage `json:"r"`
}

// wireBatch is the events of one transaction.
type wireBatch struct {
	Origin string      `json:"o"`
	Events []wireEvent `json:"e,omitempty"`
	Row    int64       `json:"id,omitempty"` // the batch is in pg_events
}

// kindOf names the type of an event's record.
func kindOf(r any) string {
	switch r.(type) {
	case Master:
		return "master"
	case Builder:
		return "builder"
	case Worker:
		return "worker"
	case Buildset:
		return "buildset"
	case BuildRequest:
		return "buildrequest"
	case Build:
		return "build"
	case Properties:
		return "properties"
	case Step:
		return "step"
	case Log:
		return "log"
	case Change:
		return "change"
	}
	panic(fmt.Sprintf("store: event record of type %T", r))
}

// decodeRecord decodes the JSON of a record of kind.
func decodeRecord(kind string, data []byte) (any, error) {
	switch kind {
	case "master":
		return decodeAs[Master](data)
	case "builder":
		return decodeAs[Builder](data)
	case "worker":
		return decodeAs[Worker](data)
	case "buildset":
		return decodeAs[Buildset](data)
	case "buildrequest":
		return decodeAs[BuildRequest](data)
	case "build":
		return decodeAs[Build](data)
	case "properties":
		return decodeAs[Properties](data)
	case "step":
		return decodeAs[Step](data)
	case "log":
		return decodeAs[Log](data)
	case "change":
		return decodeAs[Change](data)
	}
	return nil, fmt.Errorf("unknown record kind %q", kind)
}

func decodeAs[T any](data []byte) (any, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}

// notify sends rec to the other masters, delivered when tx commits.
func (p *PG) notify(ctx context.Context, tx pgx.Tx, rec eventBuffer) error {
	if len(rec) == 0 {
		return nil
	}
	b := wireBatch{Origin: p.origin, Events: make([]wireEvent, len(rec))}
	for i, e := range rec {
		data, err := pgJSONBytes(e.record)
		if err != nil {
			return err
		}
		b.Events[i] = wireEvent{Key: e.key, Kind: kindOf(e.record), Record: data}
	}
	payload, err := pgJSONBytes(b)
	if err != nil {
		return err
	}
	if len(payload) > pgMaxPayload {
		var id int64
		if err := tx.QueryRow(ctx, "INSERT INTO pg_events (payload) VALUES ($1) RETURNING id", payload).Scan(&id); err != nil {
			return err
		}
		if payload, err = pgJSONBytes(wireBatch{Origin: p.origin, Row: id}); err != nil {
			return err
		}
		// Every master has read a batch within a minute of its commit;
		// an hour's margin covers a listener reconnecting.
		if p.bigSent.Add(1)%128 == 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM pg_events WHERE at < now() - interval '1 hour'"); err != nil {
				return err
			}
		}
	}
	_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", pgChannel, string(payload))
	return err
}

// listen publishes the events other masters send, and hands the control
// messages sent to this master to its handler (see SetControl), until ctx
// ends. It
// reports on ready once it listens (or could not start); afterwards it
// reconnects whenever its connection is lost (events sent meanwhile are
// lost to this master's bus; the store itself loses nothing).
func (p *PG) listen(ctx context.Context, ready chan<- error) {
	defer close(p.listened)
	first := true
	for wait := 100 * time.Millisecond; ctx.Err() == nil; {
		conn, err := pgx.ConnectConfig(ctx, p.pool.Config().ConnConfig.Copy())
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgChannel)
		}
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgControlChannel)
		}
		if first {
			ready <- err
			first = false
			if err != nil {
				if conn != nil {
					conn.Close(context.Background())
				}
				return
			}
		}
		if err == nil {
			wait = 100 * time.Millisecond
			err = p.receive(ctx, conn)
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("lost the connection that receives other masters' events; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// receive publishes the notifications conn receives until it fails.
// Notifications from sessions that may not write the store are ignored
// (see senders).
func (p *PG) receive(ctx context.Context, conn *pgx.Conn) error {
	trusted := senders{conn: conn}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if ok, err := trusted.check(ctx, n.PID); err != nil {
			return err
		} else if !ok {
			p.untrusted(n)
			continue
		}
		if n.Channel == pgControlChannel {
			p.receiveControl(n.Payload)
			continue
		}
		var b wireBatch
		if err := json.Unmarshal([]byte(n.Payload), &b); err != nil {
			p.log.Error("bad event notification", "err", err)
			continue
		}
		if b.Origin == p.origin {
			continue
		}
		if b.Row != 0 {
			var payload []byte
			err := p.pool.QueryRow(ctx, "SELECT payload FROM pg_events WHERE id = $1", b.Row).Scan(&payload)
			if err == nil {
				err = json.Unmarshal(payload, &b)
			}
			if err != nil {
				p.log.Error("read events of another master", "row", b.Row, "err", err)
				continue
			}
		}
		p.publishRemote(b.Events)
	}
}

// publishRemote publishes another master's events on this master's bus,
// between (never during) this master's own publications.
func (p *PG) publishRemote(evs []wireEvent) {
	// A build that started or finished on another master has its outbox
	// entry: this master's reporters (the leader's) hear of it now, after
	// the events, rather than at their next poll.
	if slices.ContainsFunc(evs, func(e wireEvent) bool { return outboxEventKey(e.Key) }) {
		defer p.notifyOutbox()
	}
	recs := make([]bufferedEvent, 0, len(evs))
	for _, e := range evs {
		r, err := decodeRecord(e.Kind, e.Record)
		if err != nil {
			p.log.Error("bad event from another master", "key", e.Key, "err", err)
			continue
		}
		recs = append(recs, bufferedEvent{e.Key, r})
	}
	p.order.wait(p.order.ticket())
	defer p.order.done()
	rp, remote := p.events.(RemotePublisher)
	for _, r := range recs {
		if remote {
			rp.PublishRemote(r.key, r.record)
		} else {
			p.events.Publish(r.key, r.record)
		}
	}
}

// senders tells the database sessions whose notifications the listener
// takes: those whose role may update the masters table, i.e. may write
// the store anyway. NOTIFY needs no privilege, and any role that may
// connect to the database (PUBLIC, by default) could otherwise make a
// master believe another presumed it dead, or stop its builds.
//
// A pid not known either way makes the listener read every session of
// the database at once (one query): the trusted ones are kept, so that a
// master's session is known before its notifications come, even if it
// closes before the listener reaches them (a master stopping); the pid, if
// not among them, is kept as untrusted, so that a flood of notifications
// from one session costs one query, not one each. Each answer is kept for
// sendersFor: a backend's pid is reused only after it ended.
type senders struct {
	conn *pgx.Conn            // the listener's: queried between notifications
	ok   map[uint32]time.Time // trusted pids, when last seen so
	bad  map[uint32]time.Time // untrusted pids, when last seen so
}

const (
	sendersFor = 10 * time.Second
	// sendersMax bounds each map: past it, the map starts afresh.
	sendersMax = 4096
)

// check says whether the session with backend pid may speak to the
// masters. A session gone before the listener first heard of it is not
// trusted. An error is the listener's connection's.
func (s *senders) check(ctx context.Context, pid uint32) (bool, error) {
	now := time.Now()
	if at, ok := s.ok[pid]; ok && now.Sub(at) < sendersFor {
		return true, nil
	}
	if at, ok := s.bad[pid]; ok && now.Sub(at) < sendersFor {
		return false, nil
	}
	rows, err := s.conn.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND has_table_privilege(usesysid, 'masters', 'UPDATE')`)
	if err != nil {
		return false, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return false, err
	}
	if s.ok == nil || len(s.ok)+len(pids) > sendersMax {
		s.ok = map[uint32]time.Time{}
	}
	for _, p := range pids {
		s.ok[uint32(p)] = now
	}
	if _, ok := s.ok[pid]; ok {
		return true, nil
	}
	if s.bad == nil || len(s.bad) >= sendersMax {
		s.bad = map[uint32]time.Time{}
	}
	s.bad[pid] = now
	return false, nil
}

// untrusted logs a notification ignored because of its sender, at most
// once a second (a flood of them must not flood the log).
func (p *PG) untrusted(n *pgconn.Notification) {
	p.ignored++
	if time.Since(p.ignoredLog) < time.Second {
		return
	}
	p.log.Warn("ignored notifications from a database session whose role may not write gbb's tables: revoke CONNECT on the database from PUBLIC (docs/postgresql.md)",
		"channel", n.Channel, "sender_pid", n.PID, "ignored", p.ignored)
	p.ignored, p.ignoredLog = 0, time.Now()
}
