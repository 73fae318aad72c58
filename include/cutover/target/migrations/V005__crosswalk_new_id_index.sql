-- V005: the crosswalk's reverse lookup (new id -> legacy row) is indexed by the uuid alone.
--
-- new_id is unique across tables (it hashes the legacy table's name), so (new_table, new_id) added
-- nothing to a lookup but a text comparison per entry: after a first load of 1.05M crosswalk rows the
-- rebuild took 1.16 s for (new_table, new_id) and 0.51 s for (new_id). Lookups by new_table and new_id
-- (trace, reconciliation) use this index and check new_table on the row.
DROP INDEX IF EXISTS migration.crosswalk_new_idx;
-- a first load killed while the old index was set aside must not bring it back
DELETE FROM migration.deferred_constraint
 WHERE schema_name = 'migration' AND name = 'crosswalk_new_idx' AND restored_at IS NULL;
CREATE INDEX IF NOT EXISTS crosswalk_new_id_idx ON migration.crosswalk (new_id);
