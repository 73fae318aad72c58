-- V006: the parts of a person's name that V001 had no column for.
--
-- * name_suffix: the generational suffix (Jr, Sr, II, III, IV) the mapping parses out of a legacy
--   name. It tells a father from a son at the same address and phone, so it is carried, never
--   dropped: the duplicate-patient matcher never merges two records whose suffixes differ.
-- * referring_physician.credential: the post-nominals written after a physician's name in the legacy
--   system ('Anil Patel, MD'); a provider's credential has its own column since V001.
-- Both nullable: most names carry neither.
ALTER TABLE pt.patient ADD COLUMN name_suffix text,
    ADD CONSTRAINT patient_name_suffix_known CHECK (name_suffix IN ('Jr', 'Sr', 'II', 'III', 'IV'));
COMMENT ON COLUMN pt.patient.name_suffix IS 'Generational suffix of the name (Jr, Sr, II, III, IV), NULL when none.';

ALTER TABLE pt.provider ADD COLUMN name_suffix text,
    ADD CONSTRAINT provider_name_suffix_known CHECK (name_suffix IN ('Jr', 'Sr', 'II', 'III', 'IV'));
COMMENT ON COLUMN pt.provider.name_suffix IS 'Generational suffix of the name (Jr, Sr, II, III, IV), NULL when none.';

ALTER TABLE pt.referring_physician ADD COLUMN name_suffix text,
    ADD COLUMN credential text,
    ADD CONSTRAINT referring_physician_name_suffix_known CHECK (name_suffix IN ('Jr', 'Sr', 'II', 'III', 'IV'));
COMMENT ON COLUMN pt.referring_physician.name_suffix IS 'Generational suffix of the name (Jr, Sr, II, III, IV), NULL when none.';
COMMENT ON COLUMN pt.referring_physician.credential IS 'Credentials written after the name in the legacy system (MD, DO, PA-C; several comma-separated), as written there.';
