-- V010: the sealed evidence of a run.
--
-- Every DAG run seals its evidence folder (cutover.evidence): a manifest.sha256 over every file,
-- published to the staging store. A run's row records the SHA-256 of each manifest it sealed (a
-- re-run of write_evidence seals a new version and never rewrites the first), so the database and
-- the evidence folder vouch for each other: `cutover evidence verify RUN_ID` compares them.
ALTER TABLE migration.run ADD COLUMN evidence jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD CONSTRAINT run_evidence_is_array CHECK (jsonb_typeof(evidence) = 'array');
COMMENT ON COLUMN migration.run.evidence IS
    'The run''s sealed evidence versions, oldest first: {version, path, manifest_sha256, sealed_at}.';
