package store

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgMigrations are the schema's versions: pgMigrations[i] takes a
// database from version i to i+1. Released entries never change; a new
// schema is a new entry.
var pgMigrations = []string{
	pgSchemaBase + pgSchemaCore + pgSchemaBuilds,
}

// pgSchemaBase is what the store itself needs, beside the records.
const pgSchemaBase = `
CREATE TABLE pg_events (
	id bigserial PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT now(),
	payload bytea NOT NULL
);
CREATE INDEX pg_events_at ON pg_events (at);
`

// pgMigrateLock is the advisory lock key that serializes migrations of
// masters starting together.
const pgMigrateLock = 0x67626201

// migrate brings the database's schema to the latest version, each
// version in a transaction of its own. A database of a newer schema than
// this gbb knows is refused.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", pgMigrateLock); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", pgMigrateLock)
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS gbb_schema (version integer NOT NULL)"); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	v, err := schemaVersionPG(ctx, conn)
	if err != nil {
		return err
	}
	if v > len(pgMigrations) {
		return fmt.Errorf("the database's schema is version %d, newer than this gbb knows (%d): upgrade gbb", v, len(pgMigrations))
	}
	for ; v < len(pgMigrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, pgMigrations[v]); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DELETE FROM gbb_schema"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO gbb_schema (version) VALUES ($1)", v+1)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate the schema to version %d: %w", v+1, err)
		}
		log.Info("store schema migrated", "version", v+1)
	}
	return nil
}

func schemaVersionPG(ctx context.Context, conn *pgxpool.Conn) (int, error) {
	var v int
	err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM gbb_schema").Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}
