"""The target schema and its migration runner, against a real PostgreSQL.

Runner tests get a fresh empty database each (``pg_url``). Constraint tests share one upgraded
database per module and run each case inside a transaction that is rolled back, so they stay fast.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from cutover.errors import IntegrityError, TerminalError
from cutover.ids import legacy_uuid
from cutover.target import CODE_TABLES, TARGET_SCHEMA, TARGET_TABLES, current_version, upgrade
from cutover.target.migrate import LOCK_KEY, checksum, load_migrations

pytestmark = pytest.mark.services

PACKAGE_MIGRATIONS = Path(__file__).resolve().parents[2] / "include" / "cutover" / "target" / "migrations"


# ---------------------------------------------------------------------------------------------- runner


def test_upgrade_on_empty_database_applies_all(pg_url: str) -> None:
    shipped = [m.version for m in load_migrations()]
    assert current_version(pg_url) == 0

    applied = upgrade(pg_url)

    assert applied == shipped
    assert current_version(pg_url) == max(shipped)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM migration.schema_version ORDER BY 1"
        ).fetchall()
    on_disk = {}
    for path in PACKAGE_MIGRATIONS.glob("V*.sql"):
        version = int(path.name[1:].split("__")[0])
        on_disk[version] = (path.name[:-4].split("__", 1)[1], hashlib.sha256(path.read_bytes()).hexdigest())
    assert {v: (n, c) for v, n, c in rows} == on_disk


def test_current_version_on_empty_database_creates_nothing(pg_url: str) -> None:
    assert current_version(pg_url) == 0
    with psycopg.connect(pg_url) as conn:
        schemas = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('migration', %s)", (TARGET_SCHEMA,)
        ).fetchone()
    assert schemas == (0,)


def test_rerun_applies_nothing(pg_url: str) -> None:
    first = upgrade(pg_url)
    with psycopg.connect(pg_url) as conn:
        before = conn.execute(
            "SELECT version, applied_at FROM migration.schema_version ORDER BY 1"
        ).fetchall()

    assert first
    assert upgrade(pg_url) == []
    with psycopg.connect(pg_url) as conn:
        after = conn.execute("SELECT version, applied_at FROM migration.schema_version ORDER BY 1").fetchall()
    assert after == before


def test_upgrade_in_steps(pg_url: str) -> None:
    assert upgrade(pg_url, to_version=1) == [1]
    assert current_version(pg_url) == 1
    rest = upgrade(pg_url)
    assert rest == [m.version for m in load_migrations() if m.version > 1]


def test_tampered_checksum_is_refused(pg_url: str) -> None:
    upgrade(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE migration.schema_version SET checksum = repeat('0', 64) WHERE version = 1")

    with pytest.raises(IntegrityError, match="V001"):
        upgrade(pg_url)


def test_changed_file_is_refused(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    for path in PACKAGE_MIGRATIONS.glob("V*.sql"):
        shutil.copy(path, tmp_path / path.name)
    edited = next(tmp_path.glob("V002__*.sql"))
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")

    with pytest.raises(IntegrityError, match="V002"):
        upgrade(pg_url, directory=tmp_path)


def test_line_endings_do_not_change_the_checksum(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    for path in PACKAGE_MIGRATIONS.glob("V*.sql"):
        (tmp_path / path.name).write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))

    assert upgrade(pg_url, directory=tmp_path) == []


def test_database_ahead_of_code_is_refused(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    shutil.copy(next(PACKAGE_MIGRATIONS.glob("V001__*.sql")), tmp_path)

    with pytest.raises(IntegrityError, match="V002"):
        upgrade(pg_url, directory=tmp_path)


def test_version_older_than_applied_is_refused(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    for path in PACKAGE_MIGRATIONS.glob("V*.sql"):
        shutil.copy(path, tmp_path / path.name)
    latest = max(m.version for m in load_migrations())
    with psycopg.connect(pg_url) as conn:
        conn.execute("DELETE FROM migration.schema_version WHERE version = 1")
    assert latest > 1

    with pytest.raises(IntegrityError, match="V001"):
        upgrade(pg_url, directory=tmp_path)


def test_failing_migration_rolls_back_alone(pg_url: str, tmp_path: Path) -> None:
    for path in PACKAGE_MIGRATIONS.glob("V*.sql"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "V900__broken.sql").write_text(
        "CREATE TABLE pt.half_done (id int);\nALTER TABLE pt.no_such_table ADD COLUMN x int;\n"
    )

    with pytest.raises(TerminalError, match="V900"):
        upgrade(pg_url, directory=tmp_path)

    assert current_version(pg_url) == max(m.version for m in load_migrations())
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('pt.half_done')").fetchone() == (None,)


def test_concurrent_upgrades_apply_each_version_once(pg_url: str) -> None:
    runners = 4
    barrier = threading.Barrier(runners)

    def run() -> list[int]:
        barrier.wait()
        return upgrade(pg_url)

    with ThreadPoolExecutor(runners) as pool:
        results = list(pool.map(lambda _: run(), range(runners)))

    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in load_migrations()]
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version, count(*) FROM migration.schema_version GROUP BY 1").fetchall()
    assert all(count == 1 for _, count in rows)
    assert len(rows) == len(applied)


def test_upgrade_waits_for_the_advisory_lock(pg_url: str) -> None:
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["applied"] = upgrade(pg_url)

    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(timeout=1.0)
        blocked = worker.is_alive()
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    worker.join(timeout=30)

    assert blocked, "upgrade ran while another session held the migration lock"
    assert outcome["applied"] == [m.version for m in load_migrations()]


def test_checksum_is_sha256_of_lf_text() -> None:
    text = "CREATE TABLE t (id int);\n"
    assert checksum(text) == hashlib.sha256(text.encode()).hexdigest()
    assert checksum(text.replace("\n", "\r\n")) == checksum(text)


# ------------------------------------------------------------------------------- shared, upgraded database


@pytest.fixture(scope="module")
def schema_url(pg_admin_url: str) -> Iterator[str]:
    """One upgraded database for the constraint tests of this module."""
    from urllib.parse import urlsplit

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlsplit(pg_admin_url)._replace(path="/" + name).geturl()
    upgrade(url)
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(schema_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose work is rolled back after the test."""
    with psycopg.connect(schema_url) as connection:
        yield connection
        connection.rollback()


def insert(
    conn: psycopg.Connection[Any], table: str, row: dict[str, Any], schema: str = TARGET_SCHEMA
) -> None:
    stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(c) for c in row),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    conn.execute(stmt, list(row.values()))


def new_id(table: str, key: object = 1) -> uuid.UUID:
    return legacy_uuid("test", table, str(key))


PDF = b"%PDF-1.4\n% a tiny document\n%%EOF\n"

VALID: dict[str, dict[str, Any]] = {
    "clinic": {
        "id": new_id("clinic"),
        "name": "Clinic",
        "state": "MA",
        "postal_code": "02134",
        "phone": "+16175550100",
        "timezone": "America/New_York",
    },
    "provider": {
        "id": new_id("provider"),
        "clinic_id": new_id("clinic"),
        "family_name": "Therapist",
        "credential": "DPT",
        "npi": "1234567893",
        "active": True,
    },
    "referring_physician": {"id": new_id("referring_physician"), "npi": "1245319599", "fax": "+16175550101"},
    "payer": {"id": new_id("payer"), "name": "Payer", "payer_type": "medicare"},
    "patient": {
        "id": new_id("patient"),
        "home_clinic_id": new_id("clinic"),
        "family_name": "Family",
        "given_name": "Given",
        "birth_date": date(1960, 5, 1),
        "sex": "female",
        "ssn": "123456780",
        "postal_code": "02134-1234",
        "phone_mobile": "+16175550102",
    },
    "coverage": {
        "id": new_id("coverage"),
        "patient_id": new_id("patient"),
        "payer_id": new_id("payer"),
        "priority": 1,
        "effective_date": date(2024, 1, 1),
        "termination_date": date(2024, 12, 31),
    },
    "referral": {
        "id": new_id("referral"),
        "patient_id": new_id("patient"),
        "referring_physician_id": new_id("referring_physician"),
    },
    "episode": {
        "id": new_id("episode"),
        "patient_id": new_id("patient"),
        "clinic_id": new_id("clinic"),
        "provider_id": new_id("provider"),
        "referral_id": new_id("referral"),
        "start_date": date(2024, 2, 1),
        "discharge_date": date(2024, 3, 1),
        "status": "discharged",
    },
    "authorization": {
        "id": new_id("authorization"),
        "episode_id": new_id("episode"),
        "coverage_id": new_id("coverage"),
        "visits_authorized": 12,
        "visits_used": 3,
    },
    "plan_of_care": {
        "id": new_id("plan_of_care"),
        "episode_id": new_id("episode"),
        "diagnosis_codes": ["M54.50"],
        "frequency_per_week": 2,
        "duration_weeks": 6,
        "certifying_npi": "1245319599",
    },
    "appointment": {
        "id": new_id("appointment"),
        "patient_id": new_id("patient"),
        "episode_id": new_id("episode"),
        "starts_at": "2024-02-01 09:00",
        "status": "arrived",
    },
    "visit": {
        "id": new_id("visit"),
        "episode_id": new_id("episode"),
        "patient_id": new_id("patient"),
        "appointment_id": new_id("appointment"),
        "visit_date": date(2024, 2, 1),
        "note_type": "initial_evaluation",
    },
    "procedure_line": {
        "id": new_id("procedure_line"),
        "visit_id": new_id("visit"),
        "cpt_code": "97110",
        "minutes": 23,
        "units": 2,
        "modifiers": ["GP"],
    },
    "diagnosis": {
        "id": new_id("diagnosis"),
        "episode_id": new_id("episode"),
        "icd10_code": "M54.50",
        "source_code": "724.2",
        "source_system": "icd9cm",
        "gem_approximate": True,
    },
    "outcome_measure": {
        "id": new_id("outcome_measure"),
        "episode_id": new_id("episode"),
        "visit_id": new_id("visit"),
        "instrument": "LEFS",
        "score": 80,
    },
    "charge": {
        "id": new_id("charge"),
        "visit_id": new_id("visit"),
        "patient_id": new_id("patient"),
        "cpt_code": "97110",
        "amount_cents": 12550,
    },
    "payment": {
        "id": new_id("payment"),
        "patient_id": new_id("patient"),
        "amount_cents": -500,
        "kind": "adjustment",
    },
    "document": {
        "id": new_id("document"),
        "patient_id": new_id("patient"),
        "content": PDF,
        "sha256": hashlib.sha256(PDF).hexdigest(),
    },
    "allergy": {
        "id": new_id("allergy"),
        "patient_id": new_id("patient"),
        "episode_id": new_id("episode"),
        "substance": "latex",
        "severity": "severe",
        "status": "active",
        "source_records": ["1", "7"],
    },
    "medication": {"id": new_id("medication"), "patient_id": new_id("patient"), "source_records": ["1"]},
    "precaution": {
        "id": new_id("precaution"),
        "patient_id": new_id("patient"),
        "source_visit_id": new_id("visit"),
        "kind": "no_electrical_stimulation",
        "source_records": ["1"],
    },
}


@pytest.fixture
def chart(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """One valid row in every pt table, inserted parents first (so TARGET_TABLES order is exercised)."""
    for table in TARGET_TABLES:
        insert(conn, table, VALID[table])
    return conn


def test_valid_chart_loads_in_target_tables_order(chart: psycopg.Connection[Any]) -> None:
    for table in TARGET_TABLES:
        count = chart.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TARGET_SCHEMA, table)))
        assert count.fetchone() == (1,), table


# (title, table, override, constraint expected to refuse it)
BAD_ROWS: list[tuple[str, str, dict[str, Any], str]] = [
    ("npi with a letter", "provider", {"npi": "12345678X3"}, "provider_npi_digits"),
    ("allergy severity unknown", "allergy", {"severity": "bad"}, "allergy_severity_known"),
    ("medication status unknown", "medication", {"status": "maybe"}, "medication_status_known"),
    ("npi of nine digits", "provider", {"npi": "123456789"}, "provider_npi_digits"),
    (
        "referring npi of nine digits",
        "referring_physician",
        {"npi": "124531959"},
        "referring_physician_npi_digits",
    ),
    (
        "certifying npi not digits",
        "plan_of_care",
        {"certifying_npi": "ABCDEFGHIJ"},
        "plan_of_care_certifying_npi_digits",
    ),
    ("credential unknown", "provider", {"credential": "MD"}, "provider_credential_known"),
    ("clinic phone not e164", "clinic", {"phone": "(617) 555-0100"}, "clinic_phone_e164"),
    ("mobile phone without plus", "patient", {"phone_mobile": "16175550102"}, "patient_phone_mobile_e164"),
    ("mobile phone too short", "patient", {"phone_mobile": "+1617555"}, "patient_phone_mobile_e164"),
    ("home phone leading zero", "patient", {"phone_home": "+06175550102"}, "patient_phone_home_e164"),
    ("fax with extension", "referring_physician", {"fax": "+16175550101x12"}, "referring_physician_fax_e164"),
    ("zip lost its zero", "clinic", {"postal_code": "2134"}, "clinic_postal_code_format"),
    ("zip+4 without dash", "patient", {"postal_code": "021341234"}, "patient_postal_code_format"),
    ("timezone unknown", "clinic", {"timezone": "Mars/Olympus_Mons"}, "clinic_timezone_iana"),
    ("state lower case", "clinic", {"state": "ma"}, "clinic_state_format"),
    ("ssn with dashes", "patient", {"ssn": "123-45-67"}, "patient_ssn_digits"),
    ("sex as legacy code", "patient", {"sex": "F"}, "patient_sex_known"),
    ("payer type legacy", "payer", {"payer_type": "Workers Comp"}, "payer_type_known"),
    ("coverage priority 4", "coverage", {"priority": 4}, "coverage_priority_known"),
    (
        "coverage ends before it starts",
        "coverage",
        {"termination_date": date(2023, 12, 31)},
        "coverage_dates_ordered",
    ),
    (
        "discharge before start",
        "episode",
        {"discharge_date": date(2024, 1, 31)},
        "episode_discharge_after_start",
    ),
    ("episode status legacy", "episode", {"status": "OPEN"}, "episode_status_known"),
    ("visits used negative", "authorization", {"visits_used": -1}, "authorization_visits_used_nonnegative"),
    ("appointment status legacy", "appointment", {"status": "NOSHOW"}, "appointment_status_known"),
    ("note type legacy", "visit", {"note_type": "DN"}, "visit_note_type_known"),
    ("cpt of four digits", "procedure_line", {"cpt_code": "9711"}, "procedure_line_cpt_format"),
    ("cpt free text", "procedure_line", {"cpt_code": "9711x"}, "procedure_line_cpt_format"),
    ("units negative", "procedure_line", {"units": -1}, "procedure_line_units_nonnegative"),
    ("minutes negative", "procedure_line", {"minutes": -5}, "procedure_line_minutes_nonnegative"),
    ("charge cpt lower case", "charge", {"cpt_code": "9711a"}, "charge_cpt_format"),
    ("icd10 without dot", "diagnosis", {"icd10_code": "M5450"}, "diagnosis_icd10_format"),
    ("icd9 code left unmapped", "diagnosis", {"icd10_code": "724.2"}, "diagnosis_icd10_format"),
    ("icd10 starting with a digit", "diagnosis", {"icd10_code": "7M4.50"}, "diagnosis_icd10_format"),
    ("cpt of four digits", "procedure_line", {"cpt_code": "9711"}, "procedure_line_cpt_format"),
    ("icd10 five after the dot", "diagnosis", {"icd10_code": "S83.511AA"}, "diagnosis_icd10_format"),
    ("icd9 mapped without source", "diagnosis", {"source_code": None}, "diagnosis_icd9_keeps_source"),
    ("source system unknown", "diagnosis", {"source_system": "snomed"}, "diagnosis_source_system_known"),
    ("LEFS above 80", "outcome_measure", {"score": 95}, "outcome_measure_score_in_range"),
    (
        "ODI above 100",
        "outcome_measure",
        {"instrument": "ODI", "score": 100.5},
        "outcome_measure_score_in_range",
    ),
    ("NDI above 50", "outcome_measure", {"instrument": "NDI", "score": 51}, "outcome_measure_score_in_range"),
    (
        "QuickDASH negative",
        "outcome_measure",
        {"instrument": "QuickDASH", "score": -1},
        "outcome_measure_score_in_range",
    ),
    (
        "PSFS above 10",
        "outcome_measure",
        {"instrument": "PSFS", "score": 10.5},
        "outcome_measure_score_in_range",
    ),
    (
        "instrument unknown",
        "outcome_measure",
        {"instrument": "SF-36", "score": 5},
        "outcome_measure_instrument_known",
    ),
    ("payment kind legacy", "payment", {"kind": "REFUND"}, "payment_kind_known"),
    (
        "document hash mismatch",
        "document",
        {"sha256": hashlib.sha256(b"other").hexdigest()},
        "document_sha256_matches",
    ),
    (
        "document hash upper case",
        "document",
        {"sha256": hashlib.sha256(PDF).hexdigest().upper()},
        "document_sha256_matches",
    ),
]


@pytest.mark.parametrize(
    ("table", "override", "constraint"), [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS]
)
def test_check_constraint_refuses_bad_row(
    chart: psycopg.Connection[Any], table: str, override: dict[str, Any], constraint: str
) -> None:
    row = {**VALID[table], **override, "id": new_id(table, 2)}

    with pytest.raises(errors.CheckViolation) as caught, chart.transaction():
        insert(chart, table, row)

    assert caught.value.diag.constraint_name == constraint


# (title, table, override) rows that sit on the edge and must be accepted
EDGE_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("LEFS 0", "outcome_measure", {"score": 0}),
    ("NDI 50", "outcome_measure", {"instrument": "NDI", "score": 50}),
    ("PSFS 10", "outcome_measure", {"instrument": "PSFS", "score": 10}),
    ("QuickDASH 100", "outcome_measure", {"instrument": "QuickDASH", "score": 100}),
    ("discharge on start day", "episode", {"discharge_date": date(2024, 2, 1)}),
    ("open episode", "episode", {"discharge_date": None, "status": "open"}),
    ("no ssn", "patient", {"ssn": None}),
    (
        "icd10 without decimals",
        "diagnosis",
        {"icd10_code": "R52", "source_system": "icd10cm", "source_code": None},
    ),
    ("icd10 seventh character", "diagnosis", {"icd10_code": "S83.511A"}),
    ("hcpcs-style cpt", "procedure_line", {"cpt_code": "0001F", "modifiers": []}),
    ("hcpcs level II code (V003)", "procedure_line", {"cpt_code": "G0283", "modifiers": []}),
    ("icd10 emergency U code (V003)", "diagnosis", {"icd10_code": "U07.1"}),
    ("international phone", "patient", {"phone_home": "+442071838750"}),
    ("referring physician without npi", "referring_physician", {"npi": None}),
]


@pytest.mark.parametrize(("table", "override"), [c[1:] for c in EDGE_ROWS], ids=[c[0] for c in EDGE_ROWS])
def test_edge_rows_are_accepted(chart: psycopg.Connection[Any], table: str, override: dict[str, Any]) -> None:
    insert(chart, table, {**VALID[table], **override, "id": new_id(table, 3)})


ORPHANS: list[tuple[str, str]] = [
    ("visit", "episode_id"),
    ("visit", "patient_id"),
    ("procedure_line", "visit_id"),
    ("coverage", "payer_id"),
    ("charge", "visit_id"),
    ("episode", "referral_id"),
    ("document", "patient_id"),
    ("outcome_measure", "visit_id"),
    ("allergy", "patient_id"),
    ("precaution", "source_visit_id"),
]


def test_a_precaution_kind_must_be_one_of_the_code_table(chart: psycopg.Connection[Any]) -> None:
    row = {**VALID["precaution"], "kind": "no_estim", "id": new_id("precaution", 5)}
    with pytest.raises(errors.ForeignKeyViolation), chart.transaction():
        insert(chart, "precaution", row)


@pytest.mark.parametrize(("table", "column"), ORPHANS, ids=[f"{t}.{c}" for t, c in ORPHANS])
def test_foreign_key_refuses_orphan(chart: psycopg.Connection[Any], table: str, column: str) -> None:
    row = {**VALID[table], column: uuid.uuid4(), "id": new_id(table, 4)}

    with pytest.raises(errors.ForeignKeyViolation), chart.transaction():
        insert(chart, table, row)


def test_foreign_keys_can_be_deferred_to_commit(schema_url: str) -> None:
    with psycopg.connect(schema_url) as conn:
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        # Child before parent: accepted because the check waits for the commit.
        insert(conn, "provider", VALID["provider"])
        insert(conn, "clinic", VALID["clinic"])
        row = conn.execute("SELECT count(*) FROM pt.provider").fetchone()
        assert row == (1,)
        conn.rollback()

    with psycopg.connect(schema_url) as conn:
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        insert(conn, "provider", VALID["provider"])
        with pytest.raises(errors.ForeignKeyViolation):
            conn.commit()


def test_every_foreign_key_is_deferrable_immediate_and_indexed(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        """
        SELECT c.conname, c.condeferrable, c.condeferred,
               EXISTS (SELECT 1 FROM pg_index i
                        WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1]) AS indexed
          FROM pg_constraint c
          JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE c.contype = 'f' AND n.nspname IN ('pt', 'migration')
        """
    ).fetchall()
    assert len(rows) > len(TARGET_TABLES)
    for name, deferrable, deferred, indexed in rows:
        assert deferrable, name
        assert not deferred, name
        assert indexed, name


def test_every_table_and_view_has_a_comment(conn: psycopg.Connection[Any]) -> None:
    missing = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('pt', 'migration') AND c.relkind IN ('r', 'v')
           AND obj_description(c.oid, 'pg_class') IS NULL
        """
    ).fetchall()
    assert missing == []


def test_ids_have_no_defaults(conn: psycopg.Connection[Any]) -> None:
    defaults = conn.execute(
        """
        SELECT table_name FROM information_schema.columns
         WHERE table_schema = 'pt' AND column_name = 'id' AND column_default IS NOT NULL
        """
    ).fetchall()
    assert defaults == []


# ----------------------------------------------------------------------------------------- TARGET_TABLES


def test_target_tables_match_schema_pt(conn: psycopg.Connection[Any]) -> None:
    present = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (TARGET_SCHEMA,)
    ).fetchall()
    assert sorted([*TARGET_TABLES, *CODE_TABLES]) == sorted(name for (name,) in present)
    assert len(set(TARGET_TABLES)) == len(TARGET_TABLES)


def test_target_tables_put_parents_first(conn: psycopg.Connection[Any]) -> None:
    edges = conn.execute(
        """
        SELECT child.relname, parent.relname
          FROM pg_constraint c
          JOIN pg_class child ON child.oid = c.conrelid
          JOIN pg_class parent ON parent.oid = c.confrelid
          JOIN pg_namespace n ON n.oid = child.relnamespace
         WHERE c.contype = 'f' AND n.nspname = %s
        """,
        (TARGET_SCHEMA,),
    ).fetchall()
    position = {name: i for i, name in enumerate([*CODE_TABLES, *TARGET_TABLES])}  # codes: seeded first
    assert len(edges) >= len(TARGET_TABLES)
    for child, parent in edges:
        assert child == parent or position[parent] < position[child], f"{parent} must load before {child}"


# ---------------------------------------------------------------------------------------- migration ledger


@pytest.mark.parametrize(
    ("system", "table", "key"),
    [("legacy", "patients", 1), ("legacy", "visits", 987654321), ("legacy", "notes", "a/b é"), ("x", "", "")],
)
def test_legacy_uuid_in_sql_equals_python(
    conn: psycopg.Connection[Any], system: str, table: str, key: Any
) -> None:
    row = conn.execute("SELECT migration.legacy_uuid(%s, %s, %s)", (system, table, key)).fetchone()
    assert row == (legacy_uuid(system, table, key),)


def crosswalk_row(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "legacy_system": "legacy",
        "legacy_table": "patients",
        "legacy_id": key,
        "new_table": "patient",
        "new_id": legacy_uuid("legacy", "patients", key),
        "outcome": "migrated",
        "run_id": "manual__1",
        **extra,
    }


def reject_row(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "legacy_system": "legacy",
        "legacy_table": "patients",
        "legacy_id": key,
        "reason_code": "date_impossible",
        "stage": "map",
        "run_id": "manual__1",
        **extra,
    }


def test_reject_after_crosswalk_is_refused(conn: psycopg.Connection[Any]) -> None:
    insert(conn, "crosswalk", crosswalk_row("10"), schema="migration")

    with pytest.raises(errors.UniqueViolation, match="id 10") as caught, conn.transaction():
        insert(conn, "reject", reject_row("10"), schema="migration")
    assert caught.value.diag.constraint_name == "single_outcome"


CROSSWALK_COLUMNS = ("legacy_system", "legacy_table", "legacy_id", "new_table", "new_id", "outcome", "run_id")


def copy_crosswalk(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    """COPY rows into the crosswalk, as a bulk loader would."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in CROSSWALK_COLUMNS)
    with conn.cursor().copy(sql.SQL("COPY migration.crosswalk ({}) FROM STDIN").format(columns)) as copy:
        for row in rows:
            copy.write_row([row[c] for c in CROSSWALK_COLUMNS])


def test_crosswalk_after_reject_is_refused_also_by_copy(conn: psycopg.Connection[Any]) -> None:
    insert(conn, "reject", reject_row("11"), schema="migration")
    rows = [crosswalk_row(str(k)) for k in range(12, 40)] + [crosswalk_row("11")]

    with pytest.raises(errors.UniqueViolation, match="id 11"), conn.transaction():
        copy_crosswalk(conn, rows)
    assert conn.execute("SELECT count(*) FROM migration.crosswalk").fetchone() == (0,)


def test_update_into_a_taken_key_is_refused(conn: psycopg.Connection[Any]) -> None:
    insert(conn, "crosswalk", crosswalk_row("20"), schema="migration")
    insert(conn, "reject", reject_row("21"), schema="migration")

    with pytest.raises(errors.UniqueViolation), conn.transaction():
        conn.execute("UPDATE migration.reject SET legacy_id = '20' WHERE legacy_id = '21'")


def test_moving_a_row_between_outcomes_in_one_transaction(conn: psycopg.Connection[Any]) -> None:
    insert(conn, "reject", reject_row("30"), schema="migration")
    conn.execute("DELETE FROM migration.reject WHERE legacy_id = '30'")
    insert(conn, "crosswalk", crosswalk_row("30"), schema="migration")

    outcome = conn.execute("SELECT outcome FROM migration.outcome WHERE legacy_id = '30'").fetchall()
    assert outcome == [("migrated",)]


def test_outcome_view_has_one_row_per_legacy_row(conn: psycopg.Connection[Any]) -> None:
    survivor = legacy_uuid("legacy", "patients", "40")
    insert(conn, "crosswalk", crosswalk_row("40"), schema="migration")
    insert(conn, "crosswalk", crosswalk_row("41", outcome="merged", merged_into=survivor), schema="migration")
    insert(conn, "reject", reject_row("42", reason_code="orphan", stage="validate"), schema="migration")

    rows = conn.execute(
        "SELECT legacy_id, outcome, new_id, reason_code FROM migration.outcome"
        " WHERE legacy_id IN ('40', '41', '42') ORDER BY legacy_id"
    ).fetchall()
    assert rows == [
        ("40", "migrated", survivor, None),
        ("41", "merged", survivor, None),
        ("42", "rejected", None, "orphan"),
    ]


@pytest.mark.parametrize(
    ("table", "row", "constraint"),
    [
        ("crosswalk", crosswalk_row("50", outcome="merged"), "crosswalk_merged_into_iff_merged"),
        ("crosswalk", crosswalk_row("51", merged_into=uuid.uuid4()), "crosswalk_merged_into_iff_merged"),
        ("crosswalk", crosswalk_row("52", outcome="rejected"), "crosswalk_outcome_known"),
        ("reject", reject_row("53", reason_code="Smith, John"), "reject_reason_code_format"),
        ("reject", reject_row("54", stage="reconcile"), "reject_stage_known"),
    ],
    ids=[
        "merged without survivor",
        "survivor without merge",
        "outcome unknown",
        "reason with a value",
        "stage unknown",
    ],
)
def test_ledger_checks(
    conn: psycopg.Connection[Any], table: str, row: dict[str, Any], constraint: str
) -> None:
    with pytest.raises(errors.CheckViolation) as caught, conn.transaction():
        insert(conn, table, row, schema="migration")
    assert caught.value.diag.constraint_name == constraint


def test_batch_ledger_needs_its_run(conn: psycopg.Connection[Any]) -> None:
    batch = {"run_id": "manual__2", "legacy_table": "visits", "batch_no": 0, "state": "started"}
    with pytest.raises(errors.ForeignKeyViolation), conn.transaction():
        insert(conn, "batch", batch, schema="migration")

    insert(conn, "run", {"run_id": "manual__2", "dag_id": "cutover", "state": "running"}, schema="migration")
    insert(conn, "batch", batch, schema="migration")
    with pytest.raises(errors.CheckViolation), conn.transaction():
        insert(conn, "batch", {**batch, "batch_no": 1, "state": "done"}, schema="migration")


def test_audit_log_is_append_only(conn: psycopg.Connection[Any]) -> None:
    insert(
        conn,
        "audit_log",
        {"actor": "tester", "action": "upgrade", "detail": '{"versions": [1, 2]}'},
        "migration",
    )
    assert conn.execute("SELECT count(*) FROM migration.audit_log").fetchone() == (1,)

    for statement in (
        "UPDATE migration.audit_log SET actor = 'someone else'",
        "DELETE FROM migration.audit_log",
        "TRUNCATE migration.audit_log",
    ):
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            conn.execute(statement)
    assert conn.execute("SELECT actor FROM migration.audit_log").fetchall() == [("tester",)]
