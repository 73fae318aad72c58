-- V004: constraints a first load into an empty target sets aside, and their restore.
--
-- A first load (big bang, or the first wave, into empty pt tables) drops the pt tables' foreign keys
-- and non-unique indexes and the crosswalk's secondary indexes before its batches, and puts them back
-- after the last batch: PostgreSQL then checks each foreign key once, set-based, and builds each index
-- in one sorted pass, instead of a probe and a lock per row. Primary keys, CHECK and NOT NULL stay.
-- Each set-aside constraint is a row here until it is restored, so a killed run's constraints are
-- never lost: the next restore (of any run) puts every pending one back.
CREATE TABLE migration.deferred_constraint (
    run_id          text        NOT NULL,
    schema_name     text        NOT NULL,
    table_name      text        NOT NULL,
    name            text        NOT NULL,
    kind            text        NOT NULL,
    definition      text        NOT NULL,
    deferred_at     timestamptz NOT NULL DEFAULT now(),
    restored_at     timestamptz,
    restore_seconds double precision,
    PRIMARY KEY (run_id, schema_name, table_name, name),
    CONSTRAINT deferred_constraint_kind_known CHECK (kind IN ('index', 'foreign_key')),
    CONSTRAINT deferred_constraint_restored CHECK ((restored_at IS NULL) = (restore_seconds IS NULL))
);
COMMENT ON TABLE migration.deferred_constraint IS
    'Foreign keys and indexes a first load set aside (restored_at NULL: still to restore), and their restore time.';
COMMENT ON COLUMN migration.deferred_constraint.definition IS
    'pg_get_indexdef (index) or pg_get_constraintdef (foreign key) as it was before the load.';
