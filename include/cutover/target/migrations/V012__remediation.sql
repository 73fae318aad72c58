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
--
-- A person's decision on an ambiguous duplicate pair (the review list, duplicate_review.csv) is kept
-- in migration.duplicate_decision: same person (merge) or different people (never merge). A run that
-- maps the pair's patients applies it; a pair already carried is merged or split in the new system.
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

CREATE TABLE migration.duplicate_decision (
    legacy_system text NOT NULL,
    legacy_table  text NOT NULL,
    left_id       text NOT NULL,
    right_id      text NOT NULL,
    decision      text NOT NULL,
    decided_by    text NOT NULL,
    decided_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (legacy_system, legacy_table, left_id, right_id),
    CONSTRAINT duplicate_decision_known CHECK (decision IN ('same', 'different')),
    -- one row per pair, whichever way round it was named (cutover.matching.match.pair_key's order)
    CONSTRAINT duplicate_decision_pair_order CHECK (
        length(left_id) < length(right_id)
        OR (length(left_id) = length(right_id) AND left_id COLLATE "C" < right_id COLLATE "C"))
);
COMMENT ON TABLE migration.duplicate_decision IS
    'A person''s verdict on an ambiguous duplicate pair, applied by every run that maps the pair.';
