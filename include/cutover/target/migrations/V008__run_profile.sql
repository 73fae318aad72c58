-- V008: the legacy profile a run works under.
--
-- A legacy system is described by a profile (cutover.legacy.profile): its tables and their mapping.
-- A run records the profile's name and the SHA-256 of its files when it begins, so a resume or a
-- delta sync under a different profile (or the same profile edited since) is refused, and an
-- auditor can tell which mapping produced every row of a run.
ALTER TABLE migration.run ADD COLUMN profile_name text,
    ADD COLUMN profile_sha256 char(64),
    ADD CONSTRAINT run_profile_sha256_hex CHECK (profile_sha256 ~ '^[0-9a-f]{64}$');
COMMENT ON COLUMN migration.run.profile_name IS 'The legacy profile the run works under (a built-in name or the profile''s own name).';
COMMENT ON COLUMN migration.run.profile_sha256 IS 'SHA-256 of the profile''s files when the run began (hex).';
