-- Code formats that V001 drew too narrowly:
-- * HCPCS Level II codes (a letter and four digits, e.g. G0283 unattended e-stim) are billed by PT
--   practices beside CPT codes, so procedure lines and charges accept both shapes.
-- * ICD-10-CM has U codes (U07.1, U09.9) for emergency use; the first character may be any letter.
ALTER TABLE pt.procedure_line DROP CONSTRAINT procedure_line_cpt_format,
    ADD CONSTRAINT procedure_line_cpt_format CHECK (cpt_code ~ '^([0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$');
ALTER TABLE pt.charge DROP CONSTRAINT charge_cpt_format,
    ADD CONSTRAINT charge_cpt_format CHECK (cpt_code ~ '^([0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$');
ALTER TABLE pt.diagnosis DROP CONSTRAINT diagnosis_icd10_format,
    ADD CONSTRAINT diagnosis_icd10_format CHECK (icd10_code ~ '^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$');
