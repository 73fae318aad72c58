-- V001: the new PT system's schema `pt`.
--
-- Ids are uuid primary keys without defaults: the loader computes them deterministically from the
-- legacy key (cutover.ids.legacy_uuid, migration.legacy_uuid in SQL), so a re-run writes the same ids.
-- Every foreign key is DEFERRABLE INITIALLY IMMEDIATE: checked per statement unless a batch merge
-- says SET CONSTRAINTS ALL DEFERRED, and every foreign-key column has an index (merges, deletes and
-- per-patient reconciliation join on them).
-- Constraints carry explicit names (<table>_<rule>) so a load error names the rule, never the value.
-- Tables are created parents first, in the order of cutover.target.TARGET_TABLES.

CREATE SCHEMA pt;
COMMENT ON SCHEMA pt IS 'The new physical-therapy practice system: normalised, typed charts migrated by Cutover.';

-- Used by clinic.timezone: only IANA names (as PostgreSQL knows them) convert appointment times correctly.
CREATE FUNCTION pt.is_iana_timezone(tz text) RETURNS boolean
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog
AS $$ SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = tz) $$;
COMMENT ON FUNCTION pt.is_iana_timezone(text) IS 'True when the text is a time zone name PostgreSQL knows (e.g. America/Chicago).';

-- clinic ------------------------------------------------------------------------------------------
CREATE TABLE pt.clinic (
    id           uuid    PRIMARY KEY,
    name         text    NOT NULL,
    address_line text,
    city         text,
    state        char(2),
    postal_code  text,
    phone        text,
    timezone     text    NOT NULL,
    CONSTRAINT clinic_state_format       CHECK (state ~ '^[A-Z]{2}$'),
    CONSTRAINT clinic_postal_code_format CHECK (postal_code ~ '^[0-9]{5}(-[0-9]{4})?$'),
    CONSTRAINT clinic_phone_e164         CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    CONSTRAINT clinic_timezone_iana      CHECK (pt.is_iana_timezone(timezone))
);
COMMENT ON TABLE pt.clinic IS 'A practice location.';
COMMENT ON COLUMN pt.clinic.id IS 'Deterministic uuid from the legacy clinic key.';
COMMENT ON COLUMN pt.clinic.postal_code IS '5-digit ZIP or ZIP+4 (12345-6789), leading zeros kept.';
COMMENT ON COLUMN pt.clinic.phone IS 'E.164 (+15551234567).';
COMMENT ON COLUMN pt.clinic.timezone IS 'IANA time zone of the location; appointment.starts_at is local time in it.';

-- provider ----------------------------------------------------------------------------------------
CREATE TABLE pt.provider (
    id          uuid     PRIMARY KEY,
    clinic_id   uuid     REFERENCES pt.clinic (id) DEFERRABLE INITIALLY IMMEDIATE,
    family_name text     NOT NULL,
    given_name  text,
    credential  text,
    npi         char(10) NOT NULL,
    active      boolean  NOT NULL,
    CONSTRAINT provider_credential_known CHECK (credential IN ('PT', 'PTA', 'DPT')),
    CONSTRAINT provider_npi_digits       CHECK (npi ~ '^[0-9]{10}$')
);
CREATE INDEX provider_clinic_id_idx ON pt.provider (clinic_id);
COMMENT ON TABLE pt.provider IS 'A treating therapist (PT, PTA or DPT).';
COMMENT ON COLUMN pt.provider.clinic_id IS 'Home clinic of the provider.';
COMMENT ON COLUMN pt.provider.npi IS 'National Provider Identifier: 10 digits. The Luhn check digit is validated (and flagged) by the pipeline, not here.';

-- referring_physician ----------------------------------------------------------------------------
CREATE TABLE pt.referring_physician (
    id          uuid     PRIMARY KEY,
    family_name text,
    given_name  text,
    npi         char(10),
    fax         text,
    phone       text,
    CONSTRAINT referring_physician_npi_digits CHECK (npi ~ '^[0-9]{10}$'),
    CONSTRAINT referring_physician_fax_e164   CHECK (fax ~ '^\+[1-9][0-9]{7,14}$'),
    CONSTRAINT referring_physician_phone_e164 CHECK (phone ~ '^\+[1-9][0-9]{7,14}$')
);
COMMENT ON TABLE pt.referring_physician IS 'A physician who refers patients and certifies plans of care.';
COMMENT ON COLUMN pt.referring_physician.npi IS 'National Provider Identifier: 10 digits, or NULL when the legacy record has none.';

-- payer -------------------------------------------------------------------------------------------
CREATE TABLE pt.payer (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    payer_type text,
    CONSTRAINT payer_type_known CHECK (payer_type IN ('medicare', 'medicaid', 'commercial', 'workers_comp',
                                                      'auto_pip', 'tricare', 'va', 'self_pay'))
);
COMMENT ON TABLE pt.payer IS 'An insurer or other paying party.';

-- patient -----------------------------------------------------------------------------------------
CREATE TABLE pt.patient (
    id                      uuid    PRIMARY KEY,
    home_clinic_id          uuid    REFERENCES pt.clinic (id) DEFERRABLE INITIALLY IMMEDIATE,
    mrn                     text,
    family_name             text    NOT NULL,
    given_name              text    NOT NULL,
    middle_name             text,
    birth_date              date    NOT NULL,
    sex                     text,
    ssn                     char(9),
    address_line1           text,
    address_line2           text,
    city                    text,
    state                   char(2),
    postal_code             text,
    phone_home              text,
    phone_mobile            text,
    email                   text,
    emergency_contact_name  text,
    emergency_contact_phone text,
    created_at              timestamptz,
    updated_at              timestamptz,
    CONSTRAINT patient_sex_known               CHECK (sex IN ('female', 'male', 'unknown')),
    CONSTRAINT patient_ssn_digits              CHECK (ssn ~ '^[0-9]{9}$'),
    CONSTRAINT patient_state_format            CHECK (state ~ '^[A-Z]{2}$'),
    CONSTRAINT patient_postal_code_format      CHECK (postal_code ~ '^[0-9]{5}(-[0-9]{4})?$'),
    CONSTRAINT patient_phone_home_e164         CHECK (phone_home ~ '^\+[1-9][0-9]{7,14}$'),
    CONSTRAINT patient_phone_mobile_e164       CHECK (phone_mobile ~ '^\+[1-9][0-9]{7,14}$'),
    CONSTRAINT patient_emergency_contact_e164  CHECK (emergency_contact_phone ~ '^\+[1-9][0-9]{7,14}$')
);
CREATE INDEX patient_home_clinic_id_idx ON pt.patient (home_clinic_id);
COMMENT ON TABLE pt.patient IS 'A patient: one row per person after duplicate legacy records are merged. Every column is PHI.';
COMMENT ON COLUMN pt.patient.id IS 'Deterministic uuid from the surviving legacy patient key (see migration.crosswalk for merged duplicates).';
COMMENT ON COLUMN pt.patient.mrn IS 'Legacy medical record number, carried for look-up.';
COMMENT ON COLUMN pt.patient.ssn IS '9 digits or NULL; legacy placeholders (999999999, 000000000, ...) are migrated as NULL.';
COMMENT ON COLUMN pt.patient.phone_home IS 'E.164 (+15551234567).';
COMMENT ON COLUMN pt.patient.phone_mobile IS 'E.164 (+15551234567).';
COMMENT ON COLUMN pt.patient.updated_at IS 'Last modification in the legacy system.';

-- coverage ----------------------------------------------------------------------------------------
CREATE TABLE pt.coverage (
    id               uuid     PRIMARY KEY,
    patient_id       uuid     NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    payer_id         uuid     NOT NULL REFERENCES pt.payer (id) DEFERRABLE INITIALLY IMMEDIATE,
    member_id        text,
    group_number     text,
    priority         smallint,
    effective_date   date,
    termination_date date,
    CONSTRAINT coverage_priority_known CHECK (priority IN (1, 2, 3)),
    CONSTRAINT coverage_dates_ordered  CHECK (termination_date >= effective_date)
);
CREATE INDEX coverage_patient_id_idx ON pt.coverage (patient_id);
CREATE INDEX coverage_payer_id_idx ON pt.coverage (payer_id);
COMMENT ON TABLE pt.coverage IS 'A patient''s insurance policy with one payer.';
COMMENT ON COLUMN pt.coverage.priority IS '1 primary, 2 secondary, 3 tertiary.';

-- referral ----------------------------------------------------------------------------------------
CREATE TABLE pt.referral (
    id                     uuid PRIMARY KEY,
    patient_id             uuid NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    referring_physician_id uuid REFERENCES pt.referring_physician (id) DEFERRABLE INITIALLY IMMEDIATE,
    referral_date          date,
    diagnosis_code         text
);
CREATE INDEX referral_patient_id_idx ON pt.referral (patient_id);
CREATE INDEX referral_referring_physician_id_idx ON pt.referral (referring_physician_id);
COMMENT ON TABLE pt.referral IS 'A physician''s referral of a patient to therapy.';
COMMENT ON COLUMN pt.referral.diagnosis_code IS 'Referral diagnosis as normalised by the pipeline (ICD-10-CM where mappable).';

-- episode -----------------------------------------------------------------------------------------
CREATE TABLE pt.episode (
    id             uuid    PRIMARY KEY,
    patient_id     uuid    NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    clinic_id      uuid    REFERENCES pt.clinic (id) DEFERRABLE INITIALLY IMMEDIATE,
    provider_id    uuid    REFERENCES pt.provider (id) DEFERRABLE INITIALLY IMMEDIATE,
    referral_id    uuid    REFERENCES pt.referral (id) DEFERRABLE INITIALLY IMMEDIATE,
    start_date     date    NOT NULL,
    discharge_date date,
    status         text,
    body_region    text,
    reopened       boolean NOT NULL DEFAULT false,
    CONSTRAINT episode_discharge_after_start CHECK (discharge_date >= start_date),
    CONSTRAINT episode_status_known          CHECK (status IN ('open', 'discharged', 'reopened'))
);
CREATE INDEX episode_patient_id_idx ON pt.episode (patient_id);
CREATE INDEX episode_clinic_id_idx ON pt.episode (clinic_id);
CREATE INDEX episode_provider_id_idx ON pt.episode (provider_id);
CREATE INDEX episode_referral_id_idx ON pt.episode (referral_id);
COMMENT ON TABLE pt.episode IS 'An episode (case) of care: from the initial evaluation to discharge; may be reopened.';
COMMENT ON COLUMN pt.episode.discharge_date IS 'NULL while open; never before start_date.';
COMMENT ON COLUMN pt.episode.reopened IS 'True when the legacy case was reopened after a discharge.';

-- authorization (a reserved word: quote it when unqualified) -------------------------------------
CREATE TABLE pt."authorization" (
    id                uuid    PRIMARY KEY,
    episode_id        uuid    NOT NULL REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    coverage_id       uuid    REFERENCES pt.coverage (id) DEFERRABLE INITIALLY IMMEDIATE,
    visits_authorized integer,
    visits_used       integer,
    start_date        date,
    end_date          date,
    CONSTRAINT authorization_visits_authorized_nonnegative CHECK (visits_authorized >= 0),
    CONSTRAINT authorization_visits_used_nonnegative       CHECK (visits_used >= 0)
);
CREATE INDEX authorization_episode_id_idx ON pt."authorization" (episode_id);
CREATE INDEX authorization_coverage_id_idx ON pt."authorization" (coverage_id);
COMMENT ON TABLE pt."authorization" IS 'A payer''s authorization of visits for an episode. Used above authorized is kept as recorded.';

-- plan_of_care ------------------------------------------------------------------------------------
CREATE TABLE pt.plan_of_care (
    id                 uuid     PRIMARY KEY,
    episode_id         uuid     NOT NULL REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    diagnosis_codes    text[]   NOT NULL,
    goals              text,
    frequency_per_week smallint,
    duration_weeks     smallint,
    certified_on       date,
    certifying_npi     char(10),
    recertified_on     date,
    CONSTRAINT plan_of_care_frequency_nonnegative CHECK (frequency_per_week >= 0),
    CONSTRAINT plan_of_care_duration_nonnegative  CHECK (duration_weeks >= 0),
    CONSTRAINT plan_of_care_certifying_npi_digits CHECK (certifying_npi ~ '^[0-9]{10}$')
);
CREATE INDEX plan_of_care_episode_id_idx ON pt.plan_of_care (episode_id);
COMMENT ON TABLE pt.plan_of_care IS 'Plan of care: diagnoses, goals, frequency x duration, physician certification and recertification.';
COMMENT ON COLUMN pt.plan_of_care.certifying_npi IS 'NPI of the certifying physician (10 digits).';

-- appointment -------------------------------------------------------------------------------------
CREATE TABLE pt.appointment (
    id          uuid      PRIMARY KEY,
    patient_id  uuid      NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    episode_id  uuid      REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    provider_id uuid      REFERENCES pt.provider (id) DEFERRABLE INITIALLY IMMEDIATE,
    clinic_id   uuid      REFERENCES pt.clinic (id) DEFERRABLE INITIALLY IMMEDIATE,
    starts_at   timestamp NOT NULL,
    status      text,
    CONSTRAINT appointment_status_known CHECK (status IN ('scheduled', 'arrived', 'cancelled', 'no_show'))
);
CREATE INDEX appointment_patient_id_idx ON pt.appointment (patient_id);
CREATE INDEX appointment_episode_id_idx ON pt.appointment (episode_id);
CREATE INDEX appointment_provider_id_idx ON pt.appointment (provider_id);
CREATE INDEX appointment_clinic_id_idx ON pt.appointment (clinic_id);
COMMENT ON TABLE pt.appointment IS 'A scheduled appointment and what became of it.';
COMMENT ON COLUMN pt.appointment.starts_at IS 'Local wall-clock time at the clinic (see clinic.timezone), as the legacy system kept it.';

-- visit -------------------------------------------------------------------------------------------
CREATE TABLE pt.visit (
    id             uuid PRIMARY KEY,
    episode_id     uuid NOT NULL REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    patient_id     uuid NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    appointment_id uuid REFERENCES pt.appointment (id) DEFERRABLE INITIALLY IMMEDIATE,
    provider_id    uuid REFERENCES pt.provider (id) DEFERRABLE INITIALLY IMMEDIATE,
    visit_date     date NOT NULL,
    note_type      text,
    subjective     text,
    objective      text,
    assessment     text,
    plan           text,
    signed_on      date,
    CONSTRAINT visit_note_type_known CHECK (note_type IN ('initial_evaluation', 'daily_note', 'progress_report',
                                                          're_evaluation', 'discharge_summary'))
);
CREATE INDEX visit_episode_id_idx ON pt.visit (episode_id);
CREATE INDEX visit_patient_id_idx ON pt.visit (patient_id);
CREATE INDEX visit_appointment_id_idx ON pt.visit (appointment_id);
CREATE INDEX visit_provider_id_idx ON pt.visit (provider_id);
COMMENT ON TABLE pt.visit IS 'A treatment visit and its SOAP note.';
COMMENT ON COLUMN pt.visit.appointment_id IS 'NULL for a note without an appointment (migrated and flagged).';
COMMENT ON COLUMN pt.visit.signed_on IS 'Date the note was signed/finalised; NULL when unsigned.';

-- procedure_line ----------------------------------------------------------------------------------
CREATE TABLE pt.procedure_line (
    id        uuid     PRIMARY KEY,
    visit_id  uuid     NOT NULL REFERENCES pt.visit (id) DEFERRABLE INITIALLY IMMEDIATE,
    cpt_code  char(5)  NOT NULL,
    minutes   integer,
    units     integer  NOT NULL,
    modifiers text[]   NOT NULL DEFAULT '{}',
    CONSTRAINT procedure_line_cpt_format           CHECK (cpt_code ~ '^[0-9]{4}[0-9A-Z]$'),
    CONSTRAINT procedure_line_minutes_nonnegative  CHECK (minutes >= 0),
    CONSTRAINT procedure_line_units_nonnegative    CHECK (units >= 0)
);
CREATE INDEX procedure_line_visit_id_idx ON pt.procedure_line (visit_id);
COMMENT ON TABLE pt.procedure_line IS 'One billed CPT code on a visit. Units are kept as billed; units above what minutes allow are flagged in migration.flag.';
COMMENT ON COLUMN pt.procedure_line.cpt_code IS 'CPT/HCPCS code: four digits and a digit or letter (97110, 0001F).';
COMMENT ON COLUMN pt.procedure_line.modifiers IS 'Billing modifiers in legacy order (GP, KX, 59).';

-- diagnosis ---------------------------------------------------------------------------------------
CREATE TABLE pt.diagnosis (
    id              uuid     PRIMARY KEY,
    episode_id      uuid     NOT NULL REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    icd10_code      text     NOT NULL,
    source_code     text,
    source_system   text,
    gem_approximate boolean  NOT NULL DEFAULT false,
    sequence        smallint,
    CONSTRAINT diagnosis_icd10_format          CHECK (icd10_code ~ '^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$'),
    CONSTRAINT diagnosis_source_system_known   CHECK (source_system IN ('icd10cm', 'icd9cm')),
    -- An ICD-9 diagnosis mapped through the GEMs must keep the legacy code it was mapped from.
    CONSTRAINT diagnosis_icd9_keeps_source     CHECK (source_system IS DISTINCT FROM 'icd9cm' OR source_code IS NOT NULL)
);
CREATE INDEX diagnosis_episode_id_idx ON pt.diagnosis (episode_id);
COMMENT ON TABLE pt.diagnosis IS 'An episode''s diagnosis in ICD-10-CM; legacy ICD-9-CM codes are mapped with the CMS GEMs.';
COMMENT ON COLUMN pt.diagnosis.icd10_code IS 'ICD-10-CM with the dot (M54.50).';
COMMENT ON COLUMN pt.diagnosis.source_code IS 'The legacy ICD-9-CM code when the diagnosis was mapped.';
COMMENT ON COLUMN pt.diagnosis.gem_approximate IS 'True when the GEM map is approximate or one-to-many.';

-- outcome_measure ---------------------------------------------------------------------------------
CREATE TABLE pt.outcome_measure (
    id          uuid         PRIMARY KEY,
    episode_id  uuid         NOT NULL REFERENCES pt.episode (id) DEFERRABLE INITIALLY IMMEDIATE,
    visit_id    uuid         REFERENCES pt.visit (id) DEFERRABLE INITIALLY IMMEDIATE,
    instrument  text         NOT NULL,
    score       numeric(6,2) NOT NULL,
    measured_on date,
    CONSTRAINT outcome_measure_instrument_known CHECK (instrument IN ('LEFS', 'ODI', 'NDI', 'QuickDASH', 'PSFS')),
    CONSTRAINT outcome_measure_score_in_range   CHECK (
        score >= 0 AND score <= CASE instrument
                                     WHEN 'LEFS' THEN 80
                                     WHEN 'ODI' THEN 100
                                     WHEN 'NDI' THEN 50
                                     WHEN 'QuickDASH' THEN 100
                                     WHEN 'PSFS' THEN 10
                                 END)
);
CREATE INDEX outcome_measure_episode_id_idx ON pt.outcome_measure (episode_id);
CREATE INDEX outcome_measure_visit_id_idx ON pt.outcome_measure (visit_id);
COMMENT ON TABLE pt.outcome_measure IS 'A standardised outcome score: LEFS 0-80, ODI 0-100, NDI 0-50, QuickDASH 0-100, PSFS 0-10.';

-- charge ------------------------------------------------------------------------------------------
CREATE TABLE pt.charge (
    id           uuid    PRIMARY KEY,
    visit_id     uuid    NOT NULL REFERENCES pt.visit (id) DEFERRABLE INITIALLY IMMEDIATE,
    patient_id   uuid    NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    cpt_code     char(5),
    amount_cents bigint  NOT NULL,
    posted_on    date,
    CONSTRAINT charge_cpt_format CHECK (cpt_code ~ '^[0-9]{4}[0-9A-Z]$')
);
CREATE INDEX charge_visit_id_idx ON pt.charge (visit_id);
CREATE INDEX charge_patient_id_idx ON pt.charge (patient_id);
COMMENT ON TABLE pt.charge IS 'A charge posted for a visit.';
COMMENT ON COLUMN pt.charge.amount_cents IS 'Amount in cents (exact integer arithmetic; no floating point money).';

-- payment -----------------------------------------------------------------------------------------
CREATE TABLE pt.payment (
    id           uuid   PRIMARY KEY,
    patient_id   uuid   NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    payer_id     uuid   REFERENCES pt.payer (id) DEFERRABLE INITIALLY IMMEDIATE,
    amount_cents bigint NOT NULL,
    kind         text,
    paid_on      date,
    CONSTRAINT payment_kind_known CHECK (kind IN ('payment', 'adjustment'))
);
CREATE INDEX payment_patient_id_idx ON pt.payment (patient_id);
CREATE INDEX payment_payer_id_idx ON pt.payment (payer_id);
COMMENT ON TABLE pt.payment IS 'A payment or adjustment on a patient''s account; NULL payer_id means the patient paid.';
COMMENT ON COLUMN pt.payment.amount_cents IS 'Amount in cents, signed as in the legacy ledger.';

-- document ----------------------------------------------------------------------------------------
CREATE TABLE pt.document (
    id         uuid     PRIMARY KEY,
    patient_id uuid     NOT NULL REFERENCES pt.patient (id) DEFERRABLE INITIALLY IMMEDIATE,
    doc_type   text,
    filename   text,
    mime_type  text,
    content    bytea    NOT NULL,
    sha256     char(64) NOT NULL,
    -- The database itself proves the bytes arrived intact: the loader's hash must match the content.
    CONSTRAINT document_sha256_matches CHECK (sha256 = encode(sha256(content), 'hex'))
);
CREATE INDEX document_patient_id_idx ON pt.document (patient_id);
COMMENT ON TABLE pt.document IS 'A scanned or generated document (referral, signed plan of care, PDF), bytes verified by hash.';
COMMENT ON COLUMN pt.document.sha256 IS 'Lower-case hex sha256 of content, computed by the loader and checked by the database.';
