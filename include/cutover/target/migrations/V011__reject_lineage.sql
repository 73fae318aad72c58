-- V011: reject lineage, every reject down to its root cause.
--
-- A reject is often not a defect of its own row: a charge is rejected parent_rejected because its visit
-- was, the visit because its episode was, the episode because its patient has an impossible birth
-- date. The loader decides each cascade where it resolves a reference, and records with it:
--
--   parent_table, parent_legacy_id  the reference that decided the reject: the rejected parent of a
--                                   parent_rejected row, the parent an orphan names and the ledger lacks,
--                                   the parent of another patient (patient_mismatch); for ref_missing
--                                   the table only (the row names no parent)
--   root_table, root_legacy_id,     the first reject down the parent_rejected chain that is not itself
--   root_reason                     parent_rejected: for a cascade its parent's root (recorded with the
--                                   parent, which loads first), for any other reject the row itself
--
-- Codes and legacy ids only, as everywhere in the ledger: never a value. Rows rejected before this
-- version get their root where it is the row itself; an older parent_rejected row names neither its
-- parent nor its root (NULL: not recorded), as does a reject written by anything but the loader.

ALTER TABLE migration.reject
    ADD COLUMN parent_table     text,
    ADD COLUMN parent_legacy_id text,
    ADD COLUMN root_table       text,
    ADD COLUMN root_legacy_id   text,
    ADD COLUMN root_reason      text;

UPDATE migration.reject
   SET root_table = legacy_table, root_legacy_id = legacy_id, root_reason = reason_code
 WHERE reason_code <> 'parent_rejected';

ALTER TABLE migration.reject
    -- the same guard as the reason code's: a code, never a value
    ADD CONSTRAINT reject_root_reason_format CHECK (root_reason ~ '^[a-z][a-z0-9_.]{0,63}$'),
    ADD CONSTRAINT reject_parent_id_has_table CHECK (parent_legacy_id IS NULL OR parent_table IS NOT NULL),
    ADD CONSTRAINT reject_root_whole CHECK (
        (root_table IS NULL) = (root_legacy_id IS NULL) AND (root_table IS NULL) = (root_reason IS NULL)),
    -- a root is where a chain ends: never a cascade of its own
    ADD CONSTRAINT reject_root_not_cascade CHECK (root_reason <> 'parent_rejected'),
    -- a cascade names the parent it follows; every other reject is its own root
    ADD CONSTRAINT reject_cascade_has_parent CHECK (
        reason_code <> 'parent_rejected' OR root_table IS NULL
        OR (parent_table IS NOT NULL AND parent_legacy_id IS NOT NULL)),
    ADD CONSTRAINT reject_root_is_self CHECK (
        reason_code = 'parent_rejected' OR root_table IS NULL
        OR (root_table = legacy_table AND root_legacy_id = legacy_id AND root_reason = reason_code));

-- "which rows did this reject pull along", for the report and a worklist: by root, not by a scan
CREATE INDEX reject_root_idx ON migration.reject (legacy_system, root_table, root_legacy_id)
    WHERE root_table IS NOT NULL;

COMMENT ON COLUMN migration.reject.parent_table IS
    'Legacy table of the parent whose reference decided the reject (parent_rejected, orphan, ref_missing, patient_mismatch).';
COMMENT ON COLUMN migration.reject.parent_legacy_id IS
    'Legacy id of that parent: rejected (parent_rejected), absent from the ledger (orphan) or another patient''s; NULL for ref_missing.';
COMMENT ON COLUMN migration.reject.root_table IS
    'Legacy table of the root cause: the first reject down the parent_rejected chain that is not a cascade (the row itself if it is none). NULL: not recorded.';
COMMENT ON COLUMN migration.reject.root_legacy_id IS 'Legacy id of the root cause.';
COMMENT ON COLUMN migration.reject.root_reason IS 'The root cause''s own reason code.';
