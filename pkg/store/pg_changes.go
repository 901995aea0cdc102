package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// AddChange is [DB.AddChange].
func (p *PG) AddChange(c Change) (Change, error) {
	var out Change
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		cs, err := pgAddChanges(ctx, tx, []Change{c})
		if err == nil {
			out = cs[0]
		}
		return err
	}, func(e emit) { e.change(out) })
	if err != nil {
		return Change{}, fmt.Errorf("add change: %w", err)
	}
	return out, nil
}

// AddChangesAndState is [DB.AddChangesAndState].
func (p *PG) AddChangesAndState(changes []Change, objectName, key string, value json.RawMessage) ([]Change, error) {
	if err := checkStateKey(objectName, key, value); err != nil {
		return nil, fmt.Errorf("add changes: %w", err)
	}
	var out []Change
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		if out, err = pgAddChanges(ctx, tx, changes); err != nil {
			return err
		}
		return pgSetState(ctx, tx, objectName, key, value)
	}, func(e emit) {
		for _, c := range out {
			e.change(c)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("add changes for %s: %w", objectName, err)
	}
	return out, nil
}

// AddChanges is [DB.AddChanges].
func (p *PG) AddChanges(changes []Change) ([]Change, error) {
	var out []Change
	err := p.update(func(ctx context.Context, tx pgx.Tx) (err error) {
		out, err = pgAddChanges(ctx, tx, changes)
		return err
	}, func(e emit) {
		for _, c := range out {
			e.change(c)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("add changes: %w", err)
	}
	return out, nil
}

// pgAddChanges stores changes, in order, as addChanges. The masters add
// changes one transaction at a time (a lock taken first, before the ids):
// so change ids follow the order their transactions commit in, as on
// bbolt, and each change's parent, the latest change of its source, is
// the one committed last before it. Changes come at the pace of commits
// and webhooks; the lock costs nothing beside the builds.
func pgAddChanges(ctx context.Context, tx pgx.Tx, changes []Change) ([]Change, error) {
	if len(changes) == 0 {
		return []Change{}, nil
	}
	for i := range changes {
		c := changes[i]
		c.When = at(c.When)
		if err := c.valid(); err != nil {
			return nil, err
		}
	}
	if err := pgXactLock(ctx, tx, "changes"); err != nil {
		return nil, err
	}
	ids, err := nextIDs(ctx, tx, "changes", len(changes))
	if err != nil {
		return nil, err
	}
	out := make([]Change, 0, len(changes))
	for i, c := range changes {
		c.ID = ids[i]
		c.When = at(c.When)
		c.Files = slices.Clone(c.Files)
		c.Properties = maps.Clone(c.Properties)
		c.cleanSource()
		ss, err := pgFindSourceStamp(ctx, tx, c.sourceStamp(), time.Now().UTC())
		if err != nil {
			return nil, err
		}
		c.SourceStampID = ss.ID
		var parent int64
		err = tx.QueryRow(ctx, `SELECT id FROM changes WHERE codebase = $1 AND branch = $2 AND repository = $3 AND project = $4
			ORDER BY id DESC LIMIT 1`, c.Codebase, c.Branch, c.Repository, c.Project).Scan(&parent)
		switch {
		case err == nil:
			c.ParentChangeIDs = []int64{parent}
		case errors.Is(err, pgx.ErrNoRows):
			c.ParentChangeIDs = nil
		default:
			return nil, err
		}
		if err := pgPutChange(ctx, tx, c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// pgFindSourceStamp is [findSourceStamp] on PostgreSQL: the sourcestamp
// stored with ss's content, or ss stored with a new id created at
// created; either way with one more reference. Two masters storing the
// same content at once store it once (the unique hash), and both count
// on it.
func pgFindSourceStamp(ctx context.Context, tx pgTx, ss SourceStamp, created time.Time) (SourceStamp, error) {
	hash := ssHash(ss)
	for {
		var data []byte
		err := tx.QueryRow(ctx, "UPDATE sourcestamps SET refs = refs + 1 WHERE hash = $1 RETURNING data", hash).Scan(&data)
		if err == nil {
			var found SourceStamp
			return found, json.Unmarshal(data, &found)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return SourceStamp{}, err
		}
		ids, err := nextIDs(ctx, tx, "sourcestamps", 1)
		if err != nil {
			return SourceStamp{}, err
		}
		n := ss
		n.ID, n.CreatedAt = ids[0], created
		tag, err := tx.Exec(ctx, `INSERT INTO sourcestamps (id, hash, refs, data) VALUES ($1, $2, 1, $3)
			ON CONFLICT (hash) DO NOTHING`, n.ID, hash, pgJSON(n))
		if err != nil {
			return SourceStamp{}, err
		}
		if tag.RowsAffected() == 1 {
			return n, nil
		}
		// Another master stored that content meanwhile: count on its.
	}
}

// Change is [DB.Change].
func (p *PG) Change(id int64) (Change, error) {
	c, err := pgOne[Change](p, "changes", id)
	if err != nil {
		return Change{}, fmt.Errorf("get change: %w", err)
	}
	return c, nil
}

// pgWhere builds a WHERE clause from conditions, each with one argument
// written as $? and numbered here.
type pgWhere struct {
	conds []string
	args  []any
}

func (w *pgWhere) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.conds = append(w.conds, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(w.args))))
}

// is adds the condition cond when yes, else NOT cond: written out, not a
// parameter, so that the planner may use the partial indexes (WHERE NOT
// complete) even in a prepared statement's generic plan.
func (w *pgWhere) is(cond string, yes bool) {
	if !yes {
		cond = "NOT " + cond
	}
	w.conds = append(w.conds, cond)
}

func (w *pgWhere) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// page is the ORDER BY, OFFSET and LIMIT of a listing by id.
func pgPage(desc bool, offset, limit int) string {
	s := " ORDER BY id"
	if desc {
		s += " DESC"
	}
	if offset > 0 {
		s += " OFFSET " + strconv.Itoa(offset)
	}
	if limit > 0 {
		s += " LIMIT " + strconv.Itoa(limit)
	}
	return s
}

func changeWhere(f ChangeFilter) *pgWhere {
	w := &pgWhere{}
	if !utf8.ValidString(f.Branch + f.Repository + f.Project) {
		// No change's source reads back so (see jsonString), and
		// PostgreSQL refuses a text that is not UTF-8.
		w.conds = append(w.conds, "false")
		return w
	}
	if f.Branch != "" {
		w.add("branch = $?", f.Branch)
	}
	if f.Repository != "" {
		w.add("repository = $?", f.Repository)
	}
	if f.Project != "" {
		w.add("project = $?", f.Project)
	}
	return w
}

// Changes is [DB.Changes].
func (p *PG) Changes(f ChangeFilter) ([]Change, error) {
	w := changeWhere(f)
	cs, err := pgListOf[Change](p, "SELECT data FROM changes"+w.String()+pgPage(f.Desc, f.Offset, f.Limit), w.args...)
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	return cs, nil
}

// CountChanges is [DB.CountChanges].
func (p *PG) CountChanges(f ChangeFilter) (int, error) {
	w := changeWhere(f)
	n, err := p.count("SELECT count(*) FROM changes"+w.String(), w.args...)
	if err != nil {
		return 0, fmt.Errorf("count changes: %w", err)
	}
	return n, nil
}

// count runs a query of one count.
func (p *PG) count(sql string, args ...any) (int, error) {
	ctx, cancel := p.opCtx()
	defer cancel()
	var n int64
	err := p.pool.QueryRow(ctx, sql, args...).Scan(&n)
	return int(n), err
}

// GetState is [DB.GetState].
func (p *PG) GetState(objectName, key string) (json.RawMessage, bool, error) {
	if pgBadText(objectName) || pgBadText(key) {
		return nil, false, nil // SetState refuses such a name
	}
	ctx, cancel := p.opCtx()
	defer cancel()
	var value []byte
	err := p.pool.QueryRow(ctx, "SELECT value FROM object_state WHERE object_name = $1 AND key = $2", objectName, key).Scan(&value)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("get state %s %s: %w", objectName, key, err)
	}
	return json.RawMessage(value), true, nil
}

// SetState is [DB.SetState].
func (p *PG) SetState(objectName, key string, value json.RawMessage) error {
	if err := checkStateKey(objectName, key, value); err != nil {
		return fmt.Errorf("set state: %w", err)
	}
	err := p.update(func(ctx context.Context, tx pgx.Tx) error {
		return pgSetState(ctx, tx, objectName, key, value)
	}, nil)
	if err != nil {
		return fmt.Errorf("set state %s %s: %w", objectName, key, err)
	}
	return nil
}

func pgSetState(ctx context.Context, tx pgTx, objectName, key string, value json.RawMessage) error {
	if pgBadText(objectName) || pgBadText(key) {
		return fmt.Errorf("state %q %q: PostgreSQL takes only UTF-8 without NUL bytes in names", objectName, key)
	}
	_, err := tx.Exec(ctx, `INSERT INTO object_state (object_name, key, value) VALUES ($1, $2, $3)
		ON CONFLICT (object_name, key) DO UPDATE SET value = $3`, objectName, key, []byte(value))
	return err
}

// pgBadText says whether s cannot be a PostgreSQL text: not UTF-8, or
// holding a NUL byte.
func pgBadText(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsRune(s, 0)
}

// pgCheckChanges is checkChanges, checkChangeParents and checkSourceStamps
// on PostgreSQL: each change's row and record agree, its sourcestamp names
// its source and its parent is the change of its source just before it;
// each sourcestamp is stored under its content's hash and counts the
// changes and buildsets naming it.
func pgCheckChanges(ctx context.Context, tx pgx.Tx) []error {
	var errs []error
	sss := map[int64]SourceStamp{}
	refs := map[int64]int64{}
	rows, err := tx.Query(ctx, "SELECT id, hash, refs, data FROM sourcestamps ORDER BY id")
	if err != nil {
		return []error{fmt.Errorf("check sourcestamps: %w", err)}
	}
	for rows.Next() {
		var id, n int64
		var hash, data []byte
		if err := rows.Scan(&id, &hash, &n, &data); err != nil {
			errs = append(errs, err)
			break
		}
		var ss SourceStamp
		if err := json.Unmarshal(data, &ss); err != nil {
			errs = append(errs, fmt.Errorf("sourcestamp %d: %w", id, err))
			continue
		}
		if ss.ID != id {
			errs = append(errs, fmt.Errorf("sourcestamp %d: stored with id %d", id, ss.ID))
		}
		if string(ssHash(ss)) != string(hash) {
			errs = append(errs, fmt.Errorf("sourcestamp %d: stored under another content's hash", id))
		}
		sss[id], refs[id] = ss, n
	}
	rows.Close()
	named := map[int64]int64{}
	source := map[int64]string{} // change id → its source, of the changes walked so far
	changes, err := pgList[Change](ctx, tx, "SELECT data FROM changes ORDER BY id")
	errs = append(errs, err)
	for _, c := range changes {
		named[c.SourceStampID]++
		ss, ok := sss[c.SourceStampID]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("change %d: sourcestamp %d: %w", c.ID, c.SourceStampID, ErrNotFound))
		case ss.Revision != c.Revision || ss.Branch != c.Branch || ss.Repository != c.Repository ||
			ss.Project != c.Project || ss.Codebase != c.Codebase:
			errs = append(errs, fmt.Errorf("change %d: sourcestamp %d names another source", c.ID, ss.ID))
		}
		src := string(sourceKey(&c))
		for _, parent := range c.ParentChangeIDs {
			if psrc, ok := source[parent]; !ok || psrc != src {
				errs = append(errs, fmt.Errorf("change %d: parent %d is no earlier change of its source", c.ID, parent))
			}
		}
		source[c.ID] = src
	}
	var mismatched []int64
	err = pgScanIDs(ctx, tx, &mismatched, `SELECT id FROM changes WHERE id <> (data->>'ID')::bigint
		OR branch <> coalesce(data->>'Branch', '') OR repository <> coalesce(data->>'Repository', '')
		OR project <> coalesce(data->>'Project', '') OR codebase <> coalesce(data->>'Codebase', '')
		OR sourcestamp_id <> coalesce((data->>'SourceStampID')::bigint, 0)`)
	errs = append(errs, err)
	for _, id := range mismatched {
		errs = append(errs, fmt.Errorf("change %d: its columns are not its record's", id))
	}
	bss, err := pgList[Buildset](ctx, tx, "SELECT data FROM buildsets ORDER BY id")
	errs = append(errs, err)
	for _, bs := range bss {
		for _, ss := range bs.SourceStamps {
			named[ss.ID]++
		}
	}
	for id, n := range named {
		if _, ok := sss[id]; !ok {
			errs = append(errs, fmt.Errorf("sourcestamp %d: named %d times, missing", id, n))
		} else if refs[id] != n {
			errs = append(errs, fmt.Errorf("sourcestamp %d: %d references counted, %d made", id, refs[id], n))
		}
	}
	for id, n := range refs {
		if _, ok := named[id]; !ok {
			errs = append(errs, fmt.Errorf("sourcestamp %d: %d references counted, none made", id, n))
		}
	}
	return errs
}

// pgScanIDs appends to ids the ids a query returns.
func pgScanIDs(ctx context.Context, tx pgTx, ids *[]int64, sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	*ids = append(*ids, got...)
	return err
}
