-- V012: the remediation loop, so that a rejected chart is not left behind.
--
-- A root reject (a reject that is its own root cause, V011) is a legacy defect a person can act on:
-- correct the legacy value (an overlay the next run's mapping applies, cutover.remediation) or accept
-- that the row is not carried. One row per root reject ever seen, tracked across runs:
--
--   open       rejected, nobody has acted yet (opened_run: the run that first rejected it)
--   corrected  a correction is recorded (decided_by, columns); the next pt_remediate run carries it
--   accepted   a named person accepted that it is not carried (decided_by, note: a code)
--   closed     the row is migrated or merged now (closed_run: the run that carried it)
--
-- Codes, column names, legacy ids and people only: the corrected values live in the staging store,
-- sealed, never here.
CREATE TABLE migration.remediation (
    legacy_system text NOT NULL,
    legacy_table  text NOT NULL,
    legacy_id     text NOT NULL,
    reason_code   text NOT NULL,
    status        text NOT NULL DEFAULT 'open',
    opened_run    text,
    decided_by    text,
    decided_at    timestamptz,
    columns       text[],
    note          text,
    closed_run    text,
    closed_at     timestamptz,
    PRIMARY KEY (legacy_system, legacy_table, legacy_id),
    CONSTRAINT remediation_status_known CHECK (status IN ('open', 'corrected', 'accepted', 'closed')),
    CONSTRAINT remediation_reason_format CHECK (reason_code ~ '^[a-z][a-z0-9_.]{0,63}$'),
    -- a note is a code, like a reason: a guard against a value typed into it
    CONSTRAINT remediation_note_format CHECK (note ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT remediation_decided_by_person CHECK (
        status NOT IN ('corrected', 'accepted') OR (decided_by IS NOT NULL AND decided_at IS NOT NULL)),
    CONSTRAINT remediation_corrected_columns CHECK (status <> 'corrected' OR cardinality(columns) > 0),
    CONSTRAINT remediation_accepted_note CHECK (status <> 'accepted' OR note IS NOT NULL),
    CONSTRAINT remediation_closed_run CHECK ((status = 'closed') = (closed_run IS NOT NULL))
);
CREATE INDEX remediation_status_idx ON migration.remediation (status);

COMMENT ON TABLE migration.remediation IS
    'Root rejects tracked across runs until corrected and carried (closed) or accepted as not carried.';
COMMENT ON COLUMN migration.remediation.columns IS 'Legacy columns a correction changes (names only).';
COMMENT ON COLUMN migration.remediation.note IS 'Why a row is accepted as not carried: a lower-case code.';
