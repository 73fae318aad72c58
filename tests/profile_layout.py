"""A third legacy layout, "ClinicNote", that exists only in the tests: migrated by a YAML profile and no Python.

:func:`write_layout` simulates a small practice with :func:`cutover.simulate.simulate` and rewrites
it, in SQLite, as another vendor would have kept it: tables and columns renamed with the vendor's
``cn_`` prefix, the patient's name in two columns (``last_nm``, ``first_nm``), sex as the vendor's
own codes (:data:`SEX_CODES`: 1 female, 2 male, 9 not stated), dates written ``DD.MM.YYYY``
(:data:`DATE`) and times ``DD.MM.YYYY HH:MM`` (:data:`STAMP`), appointments keyed by a text id
(``A-000123``, :data:`APPT_KEY`; visits refer to them by it), and procedure lines without a change
stamp. Only a subset of the simulator's tables is kept (sites, staff, patients, episodes,
appointments, visits, procedure lines, fees); referrals and the rest are not in this layout.

Its profile, ``tests/fixtures/profiles/clinicnote/`` (a folder profile), is the only description of
it the pipeline gets. The data is the simulator's, defects included, so the same legacy ids carry
the same facts: a test compares the clinicnote mapping of a row with the simulator profile's
mapping of the row it came from. Two rows are the layout's own: one appointment keyed by a blank
text id (:data:`BLANK_KEY_ROWS`, rejected ``id_invalid``) and one whose key is padded with blanks
(:data:`PADDED_APPT`, read trimmed).

Usable from a shell too: ``python tests/profile_layout.py /tmp/clinicnote`` (a folder).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

PROFILE = Path(__file__).resolve().parent / "fixtures" / "profiles" / "clinicnote"
"""The layout's folder profile."""
PATIENTS = 60
SEED = 4242
DATE = "%d.%m.%Y"
"""How ClinicNote writes a date."""
STAMP = "%d.%m.%Y %H:%M"
"""How ClinicNote writes an appointment's time and a note's signature."""
SEX_CODES = {"female": "1", "male": "2", "unknown": "9"}
"""ClinicNote's own sex codes (9: not stated), by the target's value."""
APPT_KEY = "A-%06d"
"""The text id of the simulator's appointment ``n``."""
PADDED_APPT = 2
"""The simulator's appointment whose ClinicNote key is written with surrounding blanks."""
BLANK_KEY_ROWS = {"cn_appt": 1}
"""Rows the layout adds: an appointment (a copy of the first) whose text key is blank."""
IMPOSSIBLE = "30.02.2019"
"""What a date the simulator planted as impossible (02/30/2019, 0000-00-00) is in ClinicNote."""

DDL: dict[str, str] = {
    "cn_site": "site_no INTEGER PRIMARY KEY, site_nm TEXT, street TEXT, town TEXT, st TEXT, zip TEXT, "
    "tel TEXT, tz TEXT",
    "cn_staff": "staff_no INTEGER PRIMARY KEY, site_no INTEGER, staff_nm TEXT, cred TEXT, npi TEXT, "
    "active_yn TEXT",
    "cn_pt_master": "pt_no INTEGER PRIMARY KEY, site_no INTEGER, chart_no TEXT, last_nm TEXT, first_nm TEXT, "
    "birth_dt TEXT, sex_cd TEXT, ssn_no TEXT, street TEXT, street2 TEXT, town TEXT, st TEXT, zip TEXT, "
    "tel_home TEXT, tel_mobile TEXT, email TEXT, created_ts TEXT, changed_ts TEXT",
    "cn_episode": "ep_no INTEGER PRIMARY KEY, pt_no INTEGER, site_no INTEGER, staff_no INTEGER, "
    "opened_dt TEXT, closed_dt TEXT, ep_status TEXT, region TEXT, reopened_yn TEXT, changed_ts TEXT",
    "cn_appt": "appt_ref TEXT PRIMARY KEY, pt_no INTEGER, ep_no INTEGER, staff_no INTEGER, site_no INTEGER, "
    "starts TEXT, appt_status TEXT, changed_ts TEXT",
    "cn_tx_visit": "visit_no INTEGER PRIMARY KEY, ep_no INTEGER, pt_no INTEGER, appt_ref TEXT, "
    "staff_no INTEGER, visit_dt TEXT, note_cd TEXT, s_note TEXT, o_note TEXT, a_note TEXT, p_note TEXT, "
    "signed TEXT, changed_ts TEXT",
    "cn_tx_line": "line_no INTEGER PRIMARY KEY, visit_no INTEGER, cpt_txt TEXT, mins TEXT, units TEXT, mods TEXT",
    "cn_fee": "fee_no INTEGER PRIMARY KEY, visit_no INTEGER, pt_no INTEGER, cpt TEXT, amount TEXT, "
    "posted_dt TEXT, changed_ts TEXT",
}
"""ClinicNote's tables, parents first (its vendor declares no foreign keys)."""

SIMULATOR_TABLE = {
    "cn_site": "clinics",
    "cn_staff": "providers",
    "cn_pt_master": "patients",
    "cn_episode": "cases",
    "cn_appt": "appointments",
    "cn_tx_visit": "visits",
    "cn_tx_line": "procedures",
    "cn_fee": "charges",
}
"""The simulator's table each ClinicNote table is made from (the same ids, row for row)."""

_APPT_REF = f"printf('{APPT_KEY}', {{}})"


@dataclass(frozen=True)
class Layout:
    """A written ClinicNote database and its ground truth."""

    url: str
    """``sqlite:///`` URL of the ClinicNote database."""
    simulator_url: str
    """The simulator's database it was made from (same ids)."""
    as_of: date
    rows: dict[str, int]
    """Rows written per ClinicNote table (its name in the database)."""
    manifest: dict[str, Any]
    """The simulator's manifest (carries PHI canaries: never into evidence)."""


def _text(values: pd.Series) -> pd.Series:
    """Raw legacy cells (bytes or text) as text, NULL kept."""
    return values.map(
        lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, na_action="ignore"
    ).astype(object)


def _formatted(values: pd.Series, fmt: str) -> pd.Series:
    """Arrow dates/timestamps written with ``fmt``; NULL where missing."""
    arr = pa.array(values.array)
    stamps = arr.cast(pa.timestamp("s")) if pa.types.is_date(arr.type) else arr
    return pd.Series(pc.strftime(stamps, format=fmt).to_pylist(), index=values.index, dtype=object)


def _own_dates(raw: pd.Series, parsed: Any, fmt: str) -> pd.Series:
    """The simulator's date cells as ClinicNote writes them: a date it reads in ``fmt``, an impossible
    one as :data:`IMPOSSIBLE`, anything else (a null token, text of no date) as it was."""
    out = _text(raw)
    known = parsed.values.notna().to_numpy(dtype=bool)
    out[known] = _formatted(parsed.values[known], fmt)
    impossible = parsed.reasons.eq("date_impossible").fillna(False).to_numpy(dtype=bool)
    out[impossible] = IMPOSSIBLE
    return out


def patient_columns(patients: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """The simulator's patients' name, birth date and sex as ClinicNote keeps them."""
    from cutover.mapping import normalize as nz

    raw_name = _text(patients["pat_name"])
    split = nz.split_person_name(patients["pat_name"])
    whole = (split["reason"].isna() & split["family"].notna()).to_numpy(dtype=bool)
    last = split["family"].str.cat(split["suffix"], sep=" ", na_rep="").str.strip()
    first = split["given"].str.cat(split["middle"], sep=" ", na_rep="").str.strip().replace("", pd.NA)
    # every fifth name in capitals, as a front desk types it, where the split reads it back alike
    upper = pd.DataFrame({"family": last.str.upper(), "given": first.str.upper()})
    again = nz.split_person_name(nz.name_from_columns(upper["family"], upper["given"]))
    same = (
        again[["family", "given", "middle", "suffix"]].fillna("")
        == split[["family", "given", "middle", "suffix"]].fillna("")
    ).all(axis=1)
    shout = (patients["pat_id"] % 5 == 0).to_numpy() & same.to_numpy(dtype=bool) & whole
    last_nm = np.where(shout, upper["family"], last).astype(object)
    first_nm = np.where(shout, upper["given"], first).astype(object)
    # a name the split cannot read stays whole in the family column: the vendor's form has no other place
    last_nm[~whole] = raw_name[~whole]
    first_nm[~whole] = None
    first_nm[pd.isna(first_nm)] = None

    birth = nz.parse_date(patients["dob"], role="birth", today=as_of, created=patients["created"])
    sex = nz.sex_code(patients["sex"])
    sex_cd = _text(patients["sex"])
    coded = sex.values.notna().to_numpy(dtype=bool)
    sex_cd[coded] = sex.values[coded].map(SEX_CODES)
    return pd.DataFrame(
        {
            "id": patients["pat_id"],
            "last_nm": last_nm,
            "first_nm": first_nm,
            "birth_dt": _own_dates(patients["dob"], birth, DATE),
            "sex_cd": sex_cd,
        }
    )


def _dates(frame: pd.DataFrame, key: str, columns: dict[str, tuple[str, str]], as_of: date) -> pd.DataFrame:
    """``columns`` (name → (role, format)) of a simulator frame rewritten in ClinicNote's formats."""
    from cutover.mapping import normalize as nz

    out = {"id": frame[key]}
    for name, (role, fmt) in columns.items():
        parsed = (
            nz.parse_timestamp(frame[name], today=as_of)
            if role == "timestamp"
            else nz.parse_date(frame[name], role=role, today=as_of)  # type: ignore[arg-type]
        )
        out[name] = _own_dates(frame[name], parsed, fmt)
    return pd.DataFrame(out)


def _read(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> pd.DataFrame:
    cols = ", ".join(f'"{c}"' for c in columns)
    rows = conn.execute(f'SELECT {cols} FROM sim."{table}" ORDER BY 1').fetchall()
    return pd.DataFrame(rows, columns=list(columns), dtype=object)


def _fixes(conn: sqlite3.Connection, name: str, frame: pd.DataFrame) -> None:
    """A temporary table ``fix_<name>`` of the rewritten columns, keyed by the simulator's id."""
    columns = list(frame.columns)
    conn.execute(f"CREATE TEMP TABLE fix_{name} ({', '.join(columns)}, PRIMARY KEY (id))")
    rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
    conn.executemany(f"INSERT INTO fix_{name} VALUES ({', '.join('?' * len(columns))})", rows)


def write_layout(folder: Path, *, patients: int = PATIENTS, seed: int = SEED) -> Layout:
    """Simulate a practice under ``folder`` and write it as ClinicNote (``folder/clinicnote.db``)."""
    from cutover.simulate import simulate

    folder.mkdir(parents=True, exist_ok=True)
    sim_path, path = folder / "simulator.db", folder / "clinicnote.db"
    manifest = simulate(f"sqlite:///{sim_path}", patients=patients, seed=seed)
    as_of = date.fromisoformat(manifest["as_of"])
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.text_factory = bytes  # the simulator's cells as stored (Latin-1 bytes in notes stay bytes)
    try:
        conn.execute("ATTACH DATABASE ? AS sim", (str(sim_path),))
        people = _read(conn, "patients", ["pat_id", "pat_name", "dob", "sex", "created"])
        _fixes(conn, "patients", patient_columns(people, as_of))
        cases = _read(conn, "cases", ["case_id", "start_date", "discharge_date"])
        _fixes(
            conn,
            "cases",
            _dates(
                cases, "case_id", {"start_date": ("event", DATE), "discharge_date": ("event", DATE)}, as_of
            ),
        )
        appts = _read(conn, "appointments", ["appt_id", "appt_time"])
        _fixes(conn, "appointments", _dates(appts, "appt_id", {"appt_time": ("timestamp", STAMP)}, as_of))
        visits = _read(conn, "visits", ["visit_id", "visit_date", "signed_date"])
        _fixes(
            conn,
            "visits",
            _dates(
                visits,
                "visit_id",
                {"visit_date": ("service", DATE), "signed_date": ("timestamp", STAMP)},
                as_of,
            ),
        )
        charges = _read(conn, "charges", ["charge_id", "posted"])
        _fixes(conn, "charges", _dates(charges, "charge_id", {"posted": ("service", DATE)}, as_of))

        selects = {
            "cn_site": "SELECT clinic_id, clinic_name, address, city, state, zip, phone, tz FROM sim.clinics",
            "cn_staff": "SELECT provider_id, clinic_id, prov_name, credential, npi, active FROM sim.providers",
            "cn_pt_master": "SELECT p.pat_id, p.clinic_id, p.mrn, f.last_nm, f.first_nm, f.birth_dt, f.sex_cd, "
            "p.ssn, p.addr1, p.addr2, p.city, p.state, p.zip, p.home_phone, p.cell_phone, p.email, p.created, "
            "p.modified FROM sim.patients p JOIN fix_patients f ON f.id = p.pat_id",
            "cn_episode": "SELECT c.case_id, c.pat_id, c.clinic_id, c.provider_id, f.start_date, f.discharge_date, "
            "c.status, c.body_region, c.reopened, c.modified FROM sim.cases c JOIN fix_cases f ON f.id = c.case_id",
            "cn_appt": "SELECT CASE WHEN a.appt_id = {padded} THEN '  ' || {ref} || ' ' ELSE {ref} END, a.pat_id, "
            "a.case_id, a.provider_id, a.clinic_id, f.appt_time, a.status, a.modified FROM sim.appointments a "
            "JOIN fix_appointments f ON f.id = a.appt_id".format(
                padded=PADDED_APPT, ref=_APPT_REF.format("a.appt_id")
            ),
            "cn_tx_visit": "SELECT v.visit_id, v.case_id, v.pat_id, CASE WHEN v.appt_id IS NULL THEN NULL ELSE "
            f"{_APPT_REF.format('v.appt_id')} END, v.provider_id, f.visit_date, v.note_type, v.subjective, "
            "v.objective, v.assessment, v.plan, f.signed_date, v.modified FROM sim.visits v "
            "JOIN fix_visits f ON f.id = v.visit_id",
            "cn_tx_line": "SELECT proc_id, visit_id, cpt_text, minutes, units, modifiers FROM sim.procedures",
            "cn_fee": "SELECT c.charge_id, c.visit_id, c.pat_id, c.cpt_code, c.amount, f.posted, c.modified "
            "FROM sim.charges c JOIN fix_charges f ON f.id = c.charge_id",
        }
        for table, columns in DDL.items():
            conn.execute(f"CREATE TABLE {table} ({columns})")
            conn.execute(f"INSERT INTO {table} {selects[table]} ORDER BY 1")
        # the layout's own row: an appointment whose text key is blank (a copy of the first one's values)
        conn.execute(
            "INSERT INTO cn_appt SELECT '   ', pt_no, ep_no, staff_no, site_no, starts, appt_status, changed_ts "
            "FROM cn_appt ORDER BY appt_ref LIMIT 1"
        )
        conn.commit()
        conn.execute("DETACH DATABASE sim")
        rows = {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in DDL}
    finally:
        conn.close()
    return Layout(f"sqlite:///{path}", f"sqlite:///{sim_path}", as_of, rows, manifest)


if __name__ == "__main__":
    made = write_layout(Path(sys.argv[1] if len(sys.argv) > 1 else "clinicnote").resolve())
    print(f"{made.url}: {made.rows}")
