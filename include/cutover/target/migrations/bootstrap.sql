-- The runner's own bookkeeping, run by cutover.target.migrate before every versioned migration,
-- inside the same transaction and under the same advisory lock.
--
-- Why it is not V000: the runner must record V001 in migration.schema_version before V002 (which
-- builds the rest of the migration schema) exists, so the history table has to come first, and
-- "version 0" already means "an empty database" in current_version(). Idempotent by design
-- (IF NOT EXISTS) and frozen: change migration.schema_version only through a versioned migration.

CREATE SCHEMA IF NOT EXISTS migration;

CREATE TABLE IF NOT EXISTS migration.schema_version (
    version    integer     PRIMARY KEY CHECK (version > 0),
    name       text        NOT NULL,
    checksum   char(64)    NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text        NOT NULL DEFAULT current_user
);

COMMENT ON SCHEMA migration IS
    'Cutover''s migration ledger: schema history, runs, batches, crosswalk, rejects, flags, audit log. Ids, codes and counts only, never patient values.';
COMMENT ON TABLE migration.schema_version IS
    'One row per applied versioned migration (include/cutover/target/migrations/V*.sql); written only by cutover.target.migrate.';
COMMENT ON COLUMN migration.schema_version.checksum IS
    'sha256 (hex) of the migration file''s UTF-8 text with line endings normalised to LF; a changed file is refused.';
