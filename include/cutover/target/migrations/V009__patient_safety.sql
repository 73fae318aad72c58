-- V009: a chart's patient-safety records: allergies, medications, precautions and contraindications.
--
-- A therapist who opens a migrated chart without its precautions can hurt the patient (no electrical
-- stimulation over a pacemaker, no resisted exercise after a repair, weight-bearing limits), so these
-- records are carried whole and never rejected on their own: a value the mapping cannot code is kept
-- as written in unmapped_text and the row flagged; only a rejected patient keeps them out, and then
-- they head the remediation worklist.
--
-- Each row keeps its sources: source_records lists the legacy ids of every legacy record it stands
-- for (a record entered again in a later episode of the same patient is merged into the first one;
-- the crosswalk says the same). The reconciliation counts and hashes legacy records per patient from
-- these lists, so a patient whose safety records did not all arrive fails the run.

-- precaution_kind: the code table of precaution and contraindication kinds ---------------------------
CREATE TABLE pt.precaution_kind (
    code  text PRIMARY KEY,
    title text NOT NULL
);
COMMENT ON TABLE pt.precaution_kind IS 'Kinds of precaution and contraindication a chart may hold (a code table, not patient data).';
INSERT INTO pt.precaution_kind (code, title) VALUES
    ('weight_bearing', 'Weight-bearing restriction (NWB, TTWB, PWB, WBAT)'),
    ('fall_risk', 'Fall risk'),
    ('no_electrical_stimulation', 'No electrical stimulation (pacemaker, implanted device)'),
    ('no_resisted_exercise', 'No resisted exercise of a body part'),
    ('range_of_motion', 'Range-of-motion limit'),
    ('bleeding_risk', 'Bleeding risk (anticoagulated)'),
    ('osteoporosis', 'Osteoporosis: no loaded spinal flexion, no high-velocity manipulation'),
    ('other', 'Another precaution, in the text');

-- allergy --------------------------------------------------------------------------------------------
CREATE TABLE pt.allergy (
    id                 uuid    PRIMARY KEY,
    patient_id         uuid    NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    episode_id         uuid    REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    no_known_allergies boolean NOT NULL DEFAULT false,
    substance          text,
    substance_coded    boolean NOT NULL DEFAULT false,
    reaction           text,
    severity           text,
    status             text,
    recorded_on        date,
    unmapped_text      text,
    source_records     text[]  NOT NULL,
    CONSTRAINT allergy_severity_known CHECK (severity IN ('mild', 'moderate', 'severe')),
    CONSTRAINT allergy_status_known   CHECK (status IN ('active', 'inactive', 'resolved'))
);
CREATE INDEX allergy_patient_id_idx ON pt.allergy (patient_id);
CREATE INDEX allergy_episode_id_idx ON pt.allergy (episode_id);
COMMENT ON TABLE pt.allergy IS 'An allergy, or the explicit statement that the patient has no known allergies (never a missing record). PHI.';
COMMENT ON COLUMN pt.allergy.no_known_allergies IS 'True for an NKDA record (NKDA, NKA, "no known allergies" and their spellings): substance is then NULL.';
COMMENT ON COLUMN pt.allergy.substance IS 'The allergen: a canonical name where the legacy text is a known allergen (substance_coded), else the text as written.';
COMMENT ON COLUMN pt.allergy.unmapped_text IS 'Legacy values the mapping could not code, as written (column: value); the row is flagged safety_text_unmapped.';
COMMENT ON COLUMN pt.allergy.source_records IS 'Legacy ids of the records this row stands for: its own first, then the duplicates merged into it.';

-- medication -----------------------------------------------------------------------------------------
CREATE TABLE pt.medication (
    id             uuid   PRIMARY KEY,
    patient_id     uuid   NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    episode_id     uuid   REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    name           text,
    dose_text      text,
    status         text,
    started_on     date,
    stopped_on     date,
    unmapped_text  text,
    source_records text[] NOT NULL,
    CONSTRAINT medication_status_known CHECK (status IN ('active', 'stopped'))
);
CREATE INDEX medication_patient_id_idx ON pt.medication (patient_id);
CREATE INDEX medication_episode_id_idx ON pt.medication (episode_id);
COMMENT ON TABLE pt.medication IS 'A medication the patient reported (anticoagulants change manual-therapy decisions). PHI.';
COMMENT ON COLUMN pt.medication.dose_text IS 'Dose and frequency as written (5 mg daily, 1 tab BID).';
COMMENT ON COLUMN pt.medication.unmapped_text IS 'Legacy values the mapping could not code, as written (column: value); the row is flagged safety_text_unmapped.';
COMMENT ON COLUMN pt.medication.source_records IS 'Legacy ids of the records this row stands for: its own first, then the duplicates merged into it.';

-- precaution -----------------------------------------------------------------------------------------
CREATE TABLE pt.precaution (
    id              uuid    PRIMARY KEY,
    patient_id      uuid    NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    episode_id      uuid    REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    source_visit_id uuid    REFERENCES pt.visit (id) DEFERRABLE INITIALLY IMMEDIATE,
    kind            text    NOT NULL,
    kind_from_text  boolean NOT NULL DEFAULT false,
    description     text,
    starts_on       date,
    ends_on         date,
    unmapped_text   text,
    source_records  text[]  NOT NULL
);
ALTER TABLE pt.precaution ADD CONSTRAINT precaution_kind_fkey
    FOREIGN KEY (kind) REFERENCES pt.precaution_kind (code) DEFERRABLE INITIALLY IMMEDIATE;
CREATE INDEX precaution_kind_idx ON pt.precaution (kind);
CREATE INDEX precaution_patient_id_idx ON pt.precaution (patient_id);
CREATE INDEX precaution_episode_id_idx ON pt.precaution (episode_id);
CREATE INDEX precaution_source_visit_id_idx ON pt.precaution (source_visit_id);
COMMENT ON TABLE pt.precaution IS 'A precaution or contraindication (no resisted shoulder flexion for 6 weeks, NWB, fall risk, pacemaker: no e-stim). PHI.';
COMMENT ON COLUMN pt.precaution.kind IS 'A code of pt.precaution_kind: the legacy code, or read from the text where the legacy system left the code empty (kind_from_text).';
COMMENT ON COLUMN pt.precaution.source_visit_id IS 'The visit note the precaution was recorded in, where the legacy system has it.';
COMMENT ON COLUMN pt.precaution.unmapped_text IS 'Legacy values the mapping could not code, as written (column: value); the row is flagged safety_text_unmapped.';
COMMENT ON COLUMN pt.precaution.source_records IS 'Legacy ids of the records this row stands for: its own first, then the duplicates merged into it.';
