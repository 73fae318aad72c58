"""Taking a CSV delivery (:mod:`cutover.legacy.delivery`) from a local folder into a real staging
store, and reading it as a legacy database: once per run, whole, checked, in order."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cutover.errors import ConfigError, IntegrityError
from cutover.legacy import delivery as dl
from cutover.legacy.profile import from_document, read_document
from cutover.legacy.source import MALFORMED, sqlite_path

PROFILE = """\
profile: tiny_extract
title: two files of a tiny extract (tests)
source: {format: csv, encoding: utf-8}
tables:
  patients:
    source: patients.csv
    key: patient_id
    columns: {patient_id: int, last_name: text, export_flag: int}
    changes: {export_flag: {column: export_flag}}
  appointments:
    source: appointments.csv
    key: appointmnet_id
    csv: {aliases: {appointmnet_id: [appointment_id]}, encoding: cp1252}
    columns: {appointmnet_id: int, patient_id: int, visit_comment: text}
    parents: {patient_id: patients}
    patient: patient_id
"""


def _profile(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(PROFILE)
    # tables only (no mapping, which a profile the pipeline runs under needs): not checked as a whole
    return from_document(read_document(folder / "tiny.yaml"))


def _deliver(outbox: Path, patients: str, appointments: bytes) -> Path:
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "patients.csv").write_text(patients, encoding="utf-8")
    (outbox / "appointments.csv").write_bytes(appointments)
    return outbox


FIRST_PATIENTS = '\ufeffpatient_id,last_name,export_flag\r\n1,Ames,1\r\n2,Bell,1\r\n3,"Cole, Jr",1\r\n'
FIRST_APPTS = (
    b"appointment_id,patient_id,visit_comment,calendar_title\r\n"
    b'-7,1,"booked ahead\r\nsecond line",Room A\r\n'
    b"8,2,caf\xe9,Room B\r\n"
    b'9,3,"never closed\r\n'
)


@pytest.fixture
def store_url(tmp_path: Path, cutover_home: Path) -> str:
    return f"file://{tmp_path / 'store'}"


def _rows(url: str, table: str) -> list[tuple]:
    with sqlite3.connect(sqlite_path(url)) as conn:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def test_a_delivery_is_taken_once_and_read_as_taken(tmp_path: Path, store_url: str) -> None:
    profile = _profile(tmp_path / "profile")
    outbox = _deliver(tmp_path / "outbox", FIRST_PATIENTS, FIRST_APPTS)
    taken = dl.take(f"csv://{outbox}", store_url, "run_1", profile=profile)
    appts = taken["files"]["appointments.csv"]
    assert (appts["records"], appts["malformed"]) == (2, 1)
    assert taken["files"]["patients.csv"]["records"] == 3

    # the server's copy changes while the run works: the run reads what it took
    (outbox / "patients.csv").write_text("patient_id,last_name,export_flag\r\n1,Zed,2\r\n")
    url = dl.database(store_url, "run_1", profile=profile)
    assert [r[:2] for r in _rows(url, "patients.csv")] == [(1, "Ames"), (2, "Bell"), (3, "Cole, Jr")]
    rows = _rows(url, "appointments.csv")
    assert [r[0] for r in rows] == [None, -7, 8]  # the malformed line (NULL key) sorts first
    assert rows[1][2] == "booked ahead\r\nsecond line"
    assert rows[2][2] == "café"
    assert rows[0] == (None, None, None, "appointments.csv line 5: unclosed quote")
    assert MALFORMED == "_csv_malformed"


def test_a_missing_file_or_column_is_one_error_before_anything_is_written(
    tmp_path: Path, store_url: str
) -> None:
    profile = _profile(tmp_path / "profile")
    outbox = _deliver(tmp_path / "outbox", FIRST_PATIENTS, FIRST_APPTS)
    (outbox / "appointments.csv").unlink()
    with pytest.raises(ConfigError, match=r"has no file appointments\.csv$"):
        dl.take(f"csv://{outbox}", store_url, "run_1", profile=profile)
    _deliver(outbox, "patient_id,surname,export_flag\r\n1,Ames,1\r\n", FIRST_APPTS)
    with pytest.raises(ConfigError, match=r"^legacy_db: patients\.csv has no column last_name$"):
        dl.take(f"csv://{outbox}", store_url, "run_1", profile=profile)
    assert not (tmp_path / "store" / "deliveries").exists()
    assert not (tmp_path / "store" / "runs").exists()


def test_a_run_that_took_no_delivery_is_refused(tmp_path: Path, store_url: str) -> None:
    profile = _profile(tmp_path / "profile")
    with pytest.raises(ConfigError, match="took no delivery"):
        dl.database(store_url, "run_9", profile=profile)


def test_a_later_delivery_replaces_rows_by_key_and_keeps_removed_ones(tmp_path: Path, store_url: str) -> None:
    profile = _profile(tmp_path / "profile")
    first = _deliver(tmp_path / "d1", FIRST_PATIENTS, FIRST_APPTS)
    dl.take(f"csv://{first}", store_url, "run_1", profile=profile)
    second = _deliver(
        tmp_path / "d2",
        'patient_id,last_name,export_flag\r\n2,Bellamy,2\r\n3,"Cole, Jr",3\r\n4,Dunn,1\r\n',
        b"appointment_id,patient_id,visit_comment\r\n8,2,moved,extra\r\n",
    )
    taken = dl.take(f"csv://{second}", store_url, "run_2", profile=profile)
    assert dl.run_delivery(store_url, "run_2")["chain"] == [
        dl.run_delivery(store_url, "run_1")["delivery"],
        taken["delivery"],
    ]
    url = dl.database(store_url, "run_2", profile=profile)
    assert [r[:3] for r in _rows(url, "patients.csv")] == [
        (1, "Ames", 1),
        (2, "Bellamy", 2),
        (3, "Cole, Jr", 3),  # removed: kept, flagged, for the pipeline to report
        (4, "Dunn", 1),
    ]
    # the second delivery's malformed line is told apart from the first's
    malformed = [r[3] for r in _rows(url, "appointments.csv") if r[3]]
    assert malformed == [
        "appointments.csv line 5: unclosed quote",
        f"appointments.csv (delivery {taken['delivery']}) line 2: wrong number of fields (4, expected 3)",
    ]
    assert dl.applied(store_url, "run_2", profile=profile) == {
        "patients.csv": {"records": 3, "malformed": 0, "replaced": 2},
        "appointments.csv": {"records": 0, "malformed": 1, "replaced": 0},
    }
    # the same delivery again is the same delivery; an older one after a newer one is refused
    dl.take(f"csv://{second}", store_url, "run_3", profile=profile)
    assert len(dl.run_delivery(store_url, "run_3")["chain"]) == 2
    with pytest.raises(ConfigError, match="cannot be applied again after a newer one"):
        dl.take(f"csv://{first}", store_url, "run_4", profile=profile)


def test_stored_parts_are_bounded_and_checked(
    tmp_path: Path, store_url: str, cutover_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = _profile(tmp_path / "profile")
    lines = "".join(f"{i},Name{i},1\r\n" for i in range(1, 2001))
    outbox = _deliver(tmp_path / "outbox", "patient_id,last_name,export_flag\r\n" + lines, FIRST_APPTS)
    monkeypatch.setattr(dl, "PART_BYTES", 4096)
    taken = dl.take(f"csv://{outbox}", store_url, "run_1", profile=profile)
    parts = taken["files"]["patients.csv"]["parts"]
    assert len(parts) > 5
    assert max(p["bytes"] for p in parts) == 4096
    assert len(_rows(dl.database(store_url, "run_1", profile=profile), "patients.csv")) == 2000

    # a part altered in the store (by anyone who can write there) is refused, not read
    for cached in (cutover_home / "deliveries").glob("*.db"):  # read again from the store
        cached.unlink()
    record = json.loads((tmp_path / "store" / f"deliveries/{taken['delivery']}/delivery.json").read_text())
    record["files"]["patients.csv"]["records"] = 1
    (tmp_path / "store" / f"deliveries/{taken['delivery']}/delivery.json").write_text(json.dumps(record))
    with pytest.raises(IntegrityError, match="not signed by this pipeline"):
        dl.database(store_url, "run_1", profile=profile)


def test_a_stale_state_of_another_chain_is_swept(tmp_path: Path, store_url: str, cutover_home: Path) -> None:
    import os

    profile = _profile(tmp_path / "profile")
    first = _deliver(tmp_path / "d1", FIRST_PATIENTS, FIRST_APPTS)
    dl.take(f"csv://{first}", store_url, "run_1", profile=profile)
    old = Path(sqlite_path(dl.database(store_url, "run_1", profile=profile)))
    os.utime(old, (0, 0))  # built long ago
    second = _deliver(tmp_path / "d2", "patient_id,last_name,export_flag\r\n4,Dunn,1\r\n", FIRST_APPTS)
    dl.take(f"csv://{second}", store_url, "run_2", profile=profile)
    assert not old.exists()
    assert not old.with_suffix(".json").exists()
    # a run that still reads the first chain builds its state again from the store
    assert len(_rows(dl.database(store_url, "run_1", profile=profile), "patients.csv")) == 3
