package store

import (
	"context"
	"time"
)

// The schema's tables. Each record table keeps the record's JSON in data
// (exactly the bbolt store's JSON, so copy-db moves records unchanged and
// both stores return the same values) and, as columns, what its queries
// filter, join and sort on. The pgPut functions below are the only writers
// of a record row: they keep the columns and data in step. Ids come from
// each table's sequence (tablename_id_seq).
const pgSchemaCore = `
CREATE TABLE masters (
	id bigserial PRIMARY KEY,
	name text NOT NULL UNIQUE,
	data json NOT NULL,
	session text NOT NULL DEFAULT '' -- see pgAppName
);
CREATE TABLE builders (
	id bigserial PRIMARY KEY,
	name text NOT NULL UNIQUE,
	next_number bigint NOT NULL DEFAULT 1, -- the number of its next build
	data json NOT NULL
);
CREATE TABLE workers (
	id bigserial PRIMARY KEY,
	name text NOT NULL UNIQUE,
	data json NOT NULL
);
CREATE TABLE sourcestamps (
	id bigserial PRIMARY KEY,
	hash bytea NOT NULL UNIQUE, -- of the content, as bbolt's sourcestamp_by_hash
	refs bigint NOT NULL DEFAULT 0, -- changes and buildsets naming it
	data json NOT NULL
);
CREATE TABLE changes (
	id bigserial PRIMARY KEY,
	branch text NOT NULL,
	repository text NOT NULL,
	project text NOT NULL,
	codebase text NOT NULL,
	sourcestamp_id bigint NOT NULL REFERENCES sourcestamps (id),
	data json NOT NULL
);
CREATE INDEX changes_latest ON changes (codebase, branch, repository, project, id);
CREATE TABLE object_state (
	object_name text NOT NULL,
	key text NOT NULL,
	value json NOT NULL,
	PRIMARY KEY (object_name, key)
);
CREATE TABLE buildsets (
	id bigserial PRIMARY KEY,
	complete boolean NOT NULL,
	data json NOT NULL
);
CREATE INDEX buildsets_incomplete ON buildsets (id) WHERE NOT complete;
CREATE TABLE buildset_sourcestamps (
	buildset_id bigint NOT NULL REFERENCES buildsets (id) ON DELETE CASCADE,
	sourcestamp_id bigint NOT NULL REFERENCES sourcestamps (id),
	PRIMARY KEY (sourcestamp_id, buildset_id)
);
CREATE TABLE buildrequests (
	id bigserial PRIMARY KEY,
	buildset_id bigint NOT NULL REFERENCES buildsets (id) ON DELETE CASCADE,
	builder_id bigint NOT NULL REFERENCES builders (id),
	priority integer NOT NULL,
	submitted_ns bigint NOT NULL, -- Unix nanoseconds: the pending order is bbolt's, to the nanosecond
	claimed_by bigint, -- NULL: not claimed; no reference, as bbolt takes any master id
	complete boolean NOT NULL,
	data json NOT NULL
);
CREATE INDEX buildrequests_buildset ON buildrequests (buildset_id, id);
CREATE INDEX buildrequests_builder ON buildrequests (builder_id, id);
CREATE INDEX buildrequests_incomplete ON buildrequests (id) WHERE NOT complete;
CREATE INDEX buildrequests_pending ON buildrequests (builder_id, priority DESC, submitted_ns, id) WHERE NOT complete AND claimed_by IS NULL;
CREATE INDEX buildrequests_claimed ON buildrequests (claimed_by, id) WHERE NOT complete AND claimed_by IS NOT NULL;
`

const pgSchemaBuilds = `
CREATE TABLE builds (
	id bigserial PRIMARY KEY,
	builder_id bigint NOT NULL REFERENCES builders (id),
	number bigint NOT NULL,
	buildrequest_id bigint NOT NULL, -- 0 for none; no reference: requests outlive builds and back
	worker_id bigint NOT NULL,
	master_id bigint NOT NULL,
	started_at timestamptz NOT NULL,
	complete boolean NOT NULL,
	complete_at timestamptz, -- NULL while running
	data json NOT NULL,
	UNIQUE (builder_id, number)
);
CREATE INDEX builds_builder ON builds (builder_id, id);
CREATE INDEX builds_request ON builds (buildrequest_id, id);
CREATE INDEX builds_worker ON builds (worker_id, id);
CREATE INDEX builds_incomplete ON builds (master_id, id) WHERE NOT complete;
CREATE INDEX builds_complete_at ON builds (complete_at) WHERE complete;
CREATE TABLE steps (
	id bigserial PRIMARY KEY,
	build_id bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	number integer NOT NULL,
	name text NOT NULL,
	data json NOT NULL,
	UNIQUE (build_id, number),
	UNIQUE (build_id, name)
);
CREATE TABLE logs (
	id bigserial PRIMARY KEY,
	step_id bigint NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
	slug text NOT NULL,
	type text NOT NULL, -- 'd' once the janitor deleted its lines
	num_lines bigint NOT NULL,
	data json NOT NULL,
	UNIQUE (step_id, slug)
);
CREATE TABLE logchunks (
	log_id bigint NOT NULL REFERENCES logs (id) ON DELETE CASCADE,
	first_line bigint NOT NULL,
	num_lines integer NOT NULL,
	data bytea NOT NULL, -- zstd, as bbolt's logchunk values after their header
	PRIMARY KEY (log_id, first_line)
);
CREATE TABLE build_resume (
	build_id bigint PRIMARY KEY REFERENCES builds (id) ON DELETE CASCADE,
	master_id bigint NOT NULL,
	data json NOT NULL
);
CREATE TABLE outbox (
	seq bigserial PRIMARY KEY, -- in commit order: see pgOutboxLock
	event text NOT NULL,
	build_id bigint NOT NULL, -- 0 for a worker's event
	data json NOT NULL
);
-- A build finished twice (ended again after AbandonBuild) has two
-- Finished entries: OutboxFinishedSeq gives the latest.
CREATE INDEX outbox_finished ON outbox (build_id, seq) WHERE event = 'finished';
CREATE TABLE outbox_cursor (
	reporter text PRIMARY KEY,
	seq bigint NOT NULL
);
CREATE TABLE deliveries (
	build_id bigint NOT NULL,
	seq bigint NOT NULL,
	reporter text NOT NULL,
	failed boolean NOT NULL,
	data json NOT NULL,
	PRIMARY KEY (build_id, seq, reporter)
);
CREATE INDEX deliveries_failed ON deliveries (build_id) WHERE failed;
`

// pgTime is t for a timestamptz column: NULL when zero.
func pgTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func pgPutMaster(ctx context.Context, tx pgTx, m Master) error {
	_, err := tx.Exec(ctx, `INSERT INTO masters (id, name, data) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET name = $2, data = $3`, m.ID, m.Name, pgJSON(m))
	return err
}

func pgPutBuilder(ctx context.Context, tx pgTx, b Builder) error {
	_, err := tx.Exec(ctx, `INSERT INTO builders (id, name, data) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET name = $2, data = $3`, b.ID, b.Name, pgJSON(b))
	return err
}

func pgPutWorker(ctx context.Context, tx pgTx, w Worker) error {
	_, err := tx.Exec(ctx, `INSERT INTO workers (id, name, data) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET name = $2, data = $3`, w.ID, w.Name, pgJSON(w))
	return err
}

func pgPutChange(ctx context.Context, tx pgTx, c Change) error {
	_, err := tx.Exec(ctx, `INSERT INTO changes (id, branch, repository, project, codebase, sourcestamp_id, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET branch = $2, repository = $3, project = $4, codebase = $5, sourcestamp_id = $6, data = $7`,
		c.ID, c.Branch, c.Repository, c.Project, c.Codebase, c.SourceStampID, pgJSON(c))
	return err
}

func pgPutBuildset(ctx context.Context, tx pgTx, bs Buildset) error {
	_, err := tx.Exec(ctx, `INSERT INTO buildsets (id, complete, data) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET complete = $2, data = $3`, bs.ID, bs.Complete, pgJSON(bs))
	return err
}

func pgPutRequest(ctx context.Context, tx pgTx, br BuildRequest) error {
	var claimedBy any
	if br.Claimed {
		claimedBy = br.ClaimedByMasterID
	}
	_, err := tx.Exec(ctx, `INSERT INTO buildrequests (id, buildset_id, builder_id, priority, submitted_ns, claimed_by, complete, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET buildset_id = $2, builder_id = $3, priority = $4, submitted_ns = $5,
			claimed_by = $6, complete = $7, data = $8`,
		br.ID, br.BuildsetID, br.BuilderID, br.Priority, br.SubmittedAt.UnixNano(), claimedBy, br.Complete, pgJSON(br))
	return err
}

func pgPutBuild(ctx context.Context, tx pgTx, b Build) error {
	var completeAt any
	if b.Complete {
		completeAt = b.CompleteAt
	}
	_, err := tx.Exec(ctx, `INSERT INTO builds (id, builder_id, number, buildrequest_id, worker_id, master_id, started_at, complete, complete_at, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET builder_id = $2, number = $3, buildrequest_id = $4, worker_id = $5, master_id = $6,
			started_at = $7, complete = $8, complete_at = $9, data = $10`,
		b.ID, b.BuilderID, b.Number, b.BuildRequestID, b.WorkerID, b.MasterID, b.StartedAt, b.Complete, completeAt, pgJSON(b))
	return err
}

func pgPutStep(ctx context.Context, tx pgTx, s Step) error {
	_, err := tx.Exec(ctx, `INSERT INTO steps (id, build_id, number, name, data) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET build_id = $2, number = $3, name = $4, data = $5`,
		s.ID, s.BuildID, s.Number, s.Name, pgJSON(s))
	return err
}

func pgPutLog(ctx context.Context, tx pgTx, l Log) error {
	_, err := tx.Exec(ctx, `INSERT INTO logs (id, step_id, slug, type, num_lines, data) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET step_id = $2, slug = $3, type = $4, num_lines = $5, data = $6`,
		l.ID, l.StepID, l.Slug, l.Type, l.NumLines, pgJSON(l))
	return err
}

func pgPutResumePoint(ctx context.Context, tx pgTx, p ResumePoint) error {
	_, err := tx.Exec(ctx, `INSERT INTO build_resume (build_id, master_id, data) VALUES ($1, $2, $3)
		ON CONFLICT (build_id) DO UPDATE SET master_id = $2, data = $3`, p.BuildID, p.MasterID, pgJSON(p))
	return err
}

func pgPutDelivery(ctx context.Context, tx pgTx, d Delivery) error {
	_, err := tx.Exec(ctx, `INSERT INTO deliveries (build_id, seq, reporter, failed, data) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (build_id, seq, reporter) DO UPDATE SET failed = $4, data = $5`,
		d.BuildID, d.Seq, d.Reporter, d.State == DeliveryFailed, pgJSON(d))
	return err
}
