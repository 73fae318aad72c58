-- V002: the migration ledger, schema `migration`.
--
-- The schema itself and migration.schema_version come from bootstrap.sql (the runner needs its history
-- table before it can record V001). Everything here holds ids, codes and counts, never patient values.
--
-- One outcome per legacy row: a legacy row is either in crosswalk (migrated or merged) or in reject,
-- never both. Each table's primary key makes the row unique within it; statement-level triggers with
-- transition tables (one set-based check per statement, cheap for COPY and bulk upserts) refuse a row
-- whose key already sits in the other table. To move a row from one outcome to the other (a re-run
-- after a fix), delete it from the old table and insert into the new one in the same transaction.
-- What the trigger cannot see: two transactions writing the same legacy key to the two tables at the
-- same moment. The loader rules that out, since a legacy row belongs to exactly one batch and a batch
-- is written in one transaction; migration.outcome would show such a key twice.

-- Deterministic ids, the same as cutover.ids.legacy_uuid: a version-8 uuid from the first 16 bytes of
-- sha256('system/table/legacy_id'), so set-based SQL merges and Python compute the same id.
CREATE FUNCTION migration.legacy_uuid(legacy_system text, legacy_table text, legacy_id text) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT encode(
               set_byte(set_byte(d, 6, (get_byte(d, 6) & 15) | 128), 8, (get_byte(d, 8) & 63) | 128),
               'hex')::uuid
      FROM (SELECT substring(sha256(convert_to(legacy_system || '/' || legacy_table || '/' || legacy_id, 'UTF8'))
                             FROM 1 FOR 16) AS d) AS s
$$;
CREATE FUNCTION migration.legacy_uuid(legacy_system text, legacy_table text, legacy_id bigint) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT migration.legacy_uuid(legacy_system, legacy_table, legacy_id::text) $$;
COMMENT ON FUNCTION migration.legacy_uuid(text, text, text) IS
    'Deterministic target id of a legacy row; equals cutover.ids.legacy_uuid(system, table, legacy_id).';
COMMENT ON FUNCTION migration.legacy_uuid(text, text, bigint) IS
    'Deterministic target id of a legacy row with an integer key.';

-- run ---------------------------------------------------------------------------------------------
CREATE TABLE migration.run (
    run_id       text        PRIMARY KEY,
    dag_id       text        NOT NULL,
    mode         text,
    state        text        NOT NULL,
    conf         jsonb,
    triggered_by text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CONSTRAINT run_finished_after_start CHECK (finished_at >= started_at)
);
COMMENT ON TABLE migration.run IS 'One row per pipeline run (an Airflow DAG run): trial, full or a phased wave.';
COMMENT ON COLUMN migration.run.run_id IS 'The Airflow run id; every ledger row carries it.';
COMMENT ON COLUMN migration.run.conf IS 'The run''s parameters (ids, modes, thresholds; never patient values).';

-- batch -------------------------------------------------------------------------------------------
CREATE TABLE migration.batch (
    run_id        text        NOT NULL REFERENCES migration.run (run_id) DEFERRABLE INITIALLY IMMEDIATE,
    legacy_table  text        NOT NULL,
    batch_no      integer     NOT NULL,
    state         text        NOT NULL,
    rows_in       integer,
    migrated      integer,
    merged        integer,
    rejected      integer,
    staged_object text,
    sha256        char(64),
    started_at    timestamptz DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (run_id, legacy_table, batch_no),
    CONSTRAINT batch_state_known     CHECK (state IN ('started', 'staged', 'loaded', 'failed')),
    CONSTRAINT batch_batch_no_nonneg CHECK (batch_no >= 0),
    CONSTRAINT batch_counts_nonneg   CHECK (rows_in >= 0 AND migrated >= 0 AND merged >= 0 AND rejected >= 0),
    CONSTRAINT batch_sha256_hex      CHECK (sha256 ~ '^[0-9a-f]{64}$')
);
COMMENT ON TABLE migration.batch IS 'The batch ledger: a killed run resumes from the first batch not in state loaded.';
COMMENT ON COLUMN migration.batch.staged_object IS 'Object-store key of the batch''s staged Parquet file.';
COMMENT ON COLUMN migration.batch.sha256 IS 'sha256 (hex) of the staged object, checked before loading.';

-- crosswalk ---------------------------------------------------------------------------------------
CREATE TABLE migration.crosswalk (
    legacy_system text NOT NULL,
    legacy_table  text NOT NULL,
    legacy_id     text NOT NULL,
    new_table     text NOT NULL,
    new_id        uuid NOT NULL,
    outcome       text NOT NULL,
    merged_into   uuid,
    run_id        text,
    PRIMARY KEY (legacy_system, legacy_table, legacy_id),
    CONSTRAINT crosswalk_outcome_known CHECK (outcome IN ('migrated', 'merged')),
    CONSTRAINT crosswalk_merged_into_iff_merged CHECK ((outcome = 'merged') = (merged_into IS NOT NULL))
);
CREATE INDEX crosswalk_new_idx ON migration.crosswalk (new_table, new_id);
CREATE INDEX crosswalk_merged_into_idx ON migration.crosswalk (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX crosswalk_run_id_idx ON migration.crosswalk (run_id);
COMMENT ON TABLE migration.crosswalk IS 'Legacy key -> new key for every migrated or merged legacy row.';
COMMENT ON COLUMN migration.crosswalk.new_id IS 'The row''s own deterministic id (migration.legacy_uuid); for a merged row it is not in pt.';
COMMENT ON COLUMN migration.crosswalk.merged_into IS 'For outcome = merged: the id of the surviving pt row that now carries this legacy row.';

-- reject ------------------------------------------------------------------------------------------
CREATE TABLE migration.reject (
    legacy_system text NOT NULL,
    legacy_table  text NOT NULL,
    legacy_id     text NOT NULL,
    reason_code   text NOT NULL,
    stage         text NOT NULL,
    detail        text,
    run_id        text,
    PRIMARY KEY (legacy_system, legacy_table, legacy_id),
    -- Machine-readable codes only: a guard against a value leaking into the reason.
    CONSTRAINT reject_reason_code_format CHECK (reason_code ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT reject_stage_known        CHECK (stage IN ('extract', 'map', 'validate', 'load'))
);
CREATE INDEX reject_run_id_idx ON migration.reject (run_id);
COMMENT ON TABLE migration.reject IS 'Legacy rows that were not migrated, with a machine-readable reason.';
COMMENT ON COLUMN migration.reject.reason_code IS 'Lower-case code such as date_impossible, orphan, score_out_of_range.';
COMMENT ON COLUMN migration.reject.detail IS 'Non-PHI detail (column name, parent table, constraint name); never a patient value.';

-- one outcome per legacy row ----------------------------------------------------------------------
CREATE FUNCTION migration.assert_single_outcome() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    hit record;
BEGIN
    IF TG_TABLE_NAME = 'crosswalk' THEN
        SELECT n.legacy_system, n.legacy_table, n.legacy_id INTO hit
          FROM new_rows AS n
          JOIN migration.reject AS r USING (legacy_system, legacy_table, legacy_id)
         LIMIT 1;
    ELSE
        SELECT n.legacy_system, n.legacy_table, n.legacy_id INTO hit
          FROM new_rows AS n
          JOIN migration.crosswalk AS c USING (legacy_system, legacy_table, legacy_id)
         LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'legacy row %.% id % already has an outcome in the other ledger table (migration.%)',
                        hit.legacy_system, hit.legacy_table, hit.legacy_id,
                        CASE TG_TABLE_NAME WHEN 'crosswalk' THEN 'reject' ELSE 'crosswalk' END
            USING ERRCODE = 'unique_violation', SCHEMA = 'migration', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'single_outcome';
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION migration.assert_single_outcome() IS
    'Statement-level check that no legacy row is both in migration.crosswalk and migration.reject.';

-- Transition tables allow one event per trigger, hence an INSERT and an UPDATE trigger on each table.
CREATE TRIGGER crosswalk_single_outcome_ins AFTER INSERT ON migration.crosswalk
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION migration.assert_single_outcome();
CREATE TRIGGER crosswalk_single_outcome_upd AFTER UPDATE ON migration.crosswalk
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION migration.assert_single_outcome();
CREATE TRIGGER reject_single_outcome_ins AFTER INSERT ON migration.reject
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION migration.assert_single_outcome();
CREATE TRIGGER reject_single_outcome_upd AFTER UPDATE ON migration.reject
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION migration.assert_single_outcome();

-- outcome -----------------------------------------------------------------------------------------
CREATE VIEW migration.outcome AS
SELECT legacy_system, legacy_table, legacy_id, outcome,
       coalesce(merged_into, new_id) AS new_id, NULL::text AS reason_code, run_id
  FROM migration.crosswalk
UNION ALL
SELECT legacy_system, legacy_table, legacy_id, 'rejected' AS outcome,
       NULL::uuid AS new_id, reason_code, run_id
  FROM migration.reject;
COMMENT ON VIEW migration.outcome IS
    'Exactly one row per legacy row: migrated, merged or rejected. new_id is the pt row that carries it (the survivor for merged rows).';

-- flag --------------------------------------------------------------------------------------------
CREATE TABLE migration.flag (
    legacy_system text NOT NULL,
    legacy_table  text NOT NULL,
    legacy_id     text NOT NULL,
    flag_code     text NOT NULL,
    run_id        text,
    PRIMARY KEY (legacy_system, legacy_table, legacy_id, flag_code),
    CONSTRAINT flag_code_format CHECK (flag_code ~ '^[a-z][a-z0-9_.]{0,63}$')
);
CREATE INDEX flag_run_id_idx ON migration.flag (run_id);
COMMENT ON TABLE migration.flag IS
    'Findings that do not stop a row (units_exceed_minutes, visit_after_discharge, note_without_appointment, ...).';

-- audit_log ---------------------------------------------------------------------------------------
-- An identity column rather than bigserial: the standard form, and GENERATED ALWAYS refuses caller-chosen ids.
CREATE TABLE migration.audit_log (
    id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text        NOT NULL,
    action text        NOT NULL,
    run_id text,
    detail jsonb
);
CREATE INDEX audit_log_run_id_idx ON migration.audit_log (run_id);
COMMENT ON TABLE migration.audit_log IS 'Append-only audit trail (45 CFR 164.312(b)): who did what, when; ids and counts only.';

CREATE FUNCTION migration.refuse_audit_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'migration.audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON migration.audit_log
    FOR EACH ROW EXECUTE FUNCTION migration.refuse_audit_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON migration.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION migration.refuse_audit_change();

-- validation_failure ------------------------------------------------------------------------------
CREATE TABLE migration.validation_failure (
    run_id     text NOT NULL,
    table_name text NOT NULL,
    legacy_id  text NOT NULL,
    new_id     uuid,
    kind       text NOT NULL,
    PRIMARY KEY (run_id, table_name, legacy_id, kind)
);
COMMENT ON TABLE migration.validation_failure IS
    'Reconciliation mismatches of a run: a legacy row missing, extra or different in the target.';
COMMENT ON COLUMN migration.validation_failure.kind IS 'Mismatch kind, e.g. missing, extra, checksum.';
