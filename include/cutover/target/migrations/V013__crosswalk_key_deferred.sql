-- V013: a first load sets the crosswalk's key and the ledger's single-outcome triggers aside too.
--
-- Loading 1.08M crosswalk rows by COPY (10,000-patient clinic, one statement, load average 1-3 on 2
-- cores): 0.8-0.9 s into the bare table, 3.6-4.5 s with its primary key (three text columns, a
-- collation-aware comparison at every level of every insert), 2.6 s with the single-outcome trigger
-- alone (its transition table holds every row), 3.9-4.8 s with a key on the 16-byte new_id instead
-- (hashed ids land on random pages of the index). Built after the last batch the key takes 1.6 s
-- and the check of the rule, every reject probing the crosswalk's key, well under a second. So a
-- first load (cutover.loading.bulk) keeps no index on the crosswalk but the one below, looks a
-- parent up in the target's own primary key (a migrated row's id is its deterministic id) and,
-- for the few merged rows, here; and puts back the key, then the triggers, then checks the rule
-- over the whole ledger before the run is accepted.
--
-- kinds: 'primary_key' (definition: pg_get_indexdef of its index, built first and then made the
-- key), 'trigger' (definition: pg_get_triggerdef; disabled, not dropped, and enabled again).
ALTER TABLE migration.deferred_constraint DROP CONSTRAINT deferred_constraint_kind_known;
ALTER TABLE migration.deferred_constraint ADD CONSTRAINT deferred_constraint_kind_known
    CHECK (kind IN ('index', 'foreign_key', 'primary_key', 'trigger'));
COMMENT ON COLUMN migration.deferred_constraint.definition IS
    'pg_get_indexdef (index, primary_key: its index), pg_get_constraintdef (foreign key) or pg_get_triggerdef (trigger) as it was before the load.';

-- A merged row is not in pt, so a child finds its survivor here. Merged rows are a fraction of a
-- percent: the index costs a first load nothing and is never set aside.
CREATE INDEX crosswalk_merged_idx ON migration.crosswalk (legacy_system, legacy_table, legacy_id)
    INCLUDE (merged_into) WHERE merged_into IS NOT NULL;
COMMENT ON INDEX migration.crosswalk_merged_idx IS
    'Merged rows by legacy key, with their survivor: a first load resolves a merged parent through it.';
