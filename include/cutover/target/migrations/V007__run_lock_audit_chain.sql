-- V007: one run per target at a time, and a hash chain over the audit log.
--
-- Runs (cutover.runs): migration.run_lock is the target's lease, one row at most, naming the run that
-- holds the target; migration.run records the holder's process (host, pid, the PostgreSQL backend of
-- its last task) and its heartbeat, from which a later run or `cutover runs` tells a live run from a
-- killed one. A run's state is one of running, success, failed, rolled_back.
--
-- Audit log (cutover.audit): every row stores the id of the row before it (prev_id), that row's hash
-- (prev_hash) and its own hash = sha256(prev_hash || canonical content), computed by a BEFORE INSERT
-- trigger under a transaction advisory lock, so concurrent inserts chain one after the other and ids
-- are consecutive in chain order. A deleted, altered or reordered row breaks the chain, which
-- `cutover audit verify` recomputes outside the database. What it does not stop: the schema owner
-- may still disable the triggers and rewrite the whole chain consistently; only a head hash recorded
-- elsewhere (each run's evidence) catches that.

-- runs ---------------------------------------------------------------------------------------------
ALTER TABLE migration.run
    ADD COLUMN holder_host    text,
    ADD COLUMN holder_pid     integer,
    ADD COLUMN holder_backend integer,
    ADD COLUMN heartbeat_at   timestamptz,
    ADD CONSTRAINT run_state_known CHECK (state IN ('running', 'success', 'failed', 'rolled_back'));
COMMENT ON COLUMN migration.run.holder_host IS 'Host name of the process that last held the target''s lease for this run.';
COMMENT ON COLUMN migration.run.holder_pid IS 'Process id (on holder_host) of the task that last held the lease.';
COMMENT ON COLUMN migration.run.holder_backend IS 'PostgreSQL backend pid of the connection that last held the lease.';
COMMENT ON COLUMN migration.run.heartbeat_at IS 'When a task of the run last refreshed the lease; stale and unheld means killed.';

CREATE TABLE migration.run_lock (
    target   text        PRIMARY KEY DEFAULT 'target' CONSTRAINT run_lock_one_row CHECK (target = 'target'),
    run_id   text        NOT NULL REFERENCES migration.run (run_id) DEFERRABLE INITIALLY IMMEDIATE,
    taken_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_lock_run_id_idx ON migration.run_lock (run_id);
COMMENT ON TABLE migration.run_lock IS
    'The target''s lease: the run that holds it (cutover.runs). One row at most; no row means no run holds the target.';

-- audit chain --------------------------------------------------------------------------------------
ALTER TABLE migration.audit_log
    ADD COLUMN prev_id   bigint,
    ADD COLUMN prev_hash char(64),
    ADD COLUMN hash      char(64),
    ADD CONSTRAINT audit_log_hash_hex CHECK (hash ~ '^[0-9a-f]{64}$' AND prev_hash ~ '^[0-9a-f]{64}$');
COMMENT ON COLUMN migration.audit_log.prev_id IS 'The id of the entry this one chains to (NULL for the first).';
COMMENT ON COLUMN migration.audit_log.prev_hash IS 'The hash of entry prev_id (64 zeros for the first).';
COMMENT ON COLUMN migration.audit_log.hash IS
    'sha256 (hex) of prev_hash || migration.audit_content(...): recomputed by cutover audit verify.';

-- The canonical content of an entry: every field length-prefixed (N for NULL), the time in UTC with
-- microseconds, the detail as jsonb's own text. cutover.audit.content() computes the same in Python.
CREATE FUNCTION migration.audit_content(
    id bigint, prev_id bigint, at timestamptz, actor text, action text, run_id text, detail jsonb
) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT string_agg(CASE WHEN f IS NULL THEN 'N' ELSE length(f) || ':' || f END, '|' ORDER BY n)
      FROM unnest(ARRAY[id::text, prev_id::text,
                        to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                        actor, action, run_id, detail::text]) WITH ORDINALITY AS t(f, n)
$$;

CREATE FUNCTION migration.audit_chain() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    last record;
BEGIN
    -- One writer at a time until commit: the next insert reads this row as the last one.
    PERFORM pg_advisory_xact_lock(hashtextextended('cutover.audit_log.chain', 0));
    SELECT a.id, a.hash INTO last FROM migration.audit_log AS a ORDER BY a.id DESC LIMIT 1;
    NEW.id := coalesce(last.id, 0) + 1;
    NEW.prev_id := last.id;
    NEW.prev_hash := coalesce(last.hash, repeat('0', 64));
    NEW.hash := encode(sha256(convert_to(NEW.prev_hash || migration.audit_content(
        NEW.id, NEW.prev_id, NEW.at, NEW.actor, NEW.action, NEW.run_id, NEW.detail), 'UTF8')), 'hex');
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION migration.audit_chain() IS
    'Chains each new audit entry to the last one (id, prev_id, prev_hash, hash), under a transaction advisory lock.';

-- Existing entries get their hashes here, in id order: the one rewrite of the log (migration.schema_version
-- records when it ran).
ALTER TABLE migration.audit_log DISABLE TRIGGER audit_log_append_only;
DO $$
DECLARE
    r record;
    p_id bigint;
    p_hash text := repeat('0', 64);
    h text;
BEGIN
    FOR r IN SELECT * FROM migration.audit_log ORDER BY id LOOP
        h := encode(sha256(convert_to(p_hash || migration.audit_content(
            r.id, p_id, r.at, r.actor, r.action, r.run_id, r.detail), 'UTF8')), 'hex');
        UPDATE migration.audit_log SET prev_id = p_id, prev_hash = p_hash, hash = h WHERE id = r.id;
        p_id := r.id;
        p_hash := h;
    END LOOP;
END
$$;
ALTER TABLE migration.audit_log ENABLE TRIGGER audit_log_append_only;
ALTER TABLE migration.audit_log ALTER COLUMN prev_hash SET NOT NULL, ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX audit_log_prev_id_key ON migration.audit_log (prev_id);

CREATE TRIGGER audit_log_chain BEFORE INSERT ON migration.audit_log
    FOR EACH ROW EXECUTE FUNCTION migration.audit_chain();

