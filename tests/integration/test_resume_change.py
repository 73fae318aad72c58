"""A resume notices change: a batch loaded before the kill whose legacy rows changed since is refused,
or, when asked, loaded again, so a resumed run never keeps stale rows (issue 14, item 3)."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import psycopg
import pytest

from cutover import pipeline
from cutover.errors import IntegrityError
from cutover.resume import changed_batches, check_resume
from cutover.simulate import simulate

pytestmark = pytest.mark.slow

RUN = "manual__2026-11-27T18:00:00+00:00"
AS_OF = date(2026, 11, 27)


def _stage(legacy: str, store: str, tables: list[str]) -> None:
    for table in tables:
        pipeline.extract_table(legacy, store, RUN, table)
        pipeline.map_table(store, RUN, table, as_of=AS_OF)


def test_a_legacy_edit_between_kill_and_resume_is_refused_or_reloaded(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    path = tmp_path / "legacy.db"
    legacy = f"sqlite:///{path}"
    simulate(legacy, patients=40, seed=3)
    store = f"file://{tmp_path / 'stage'}"
    tables = ["clinics", "patients"]
    pipeline.prepare_target(pg_url)
    pipeline.begin_run(pg_url, RUN, "pt_cutover", {}, "tester")
    _stage(legacy, store, tables)
    for table in tables:
        pipeline.load_mapped(pg_url, store, RUN, table)
    # the run is killed here; nothing changed yet: a resume goes on
    _stage(legacy, store, tables)
    assert changed_batches(pg_url, store, RUN) == {}
    assert check_resume(pg_url, store, RUN) == {}

    # a patient's name and modified stamp are edited in the legacy system, then the run is resumed
    with sqlite3.connect(path) as conn:
        (pat_id,) = conn.execute("SELECT min(pat_id) FROM patients").fetchone()
        conn.execute(
            "UPDATE patients SET pat_name = 'ZZTOP, RESUMED', modified = '2026-11-28 09:00' WHERE pat_id = ?",
            (pat_id,),
        )
    _stage(legacy, store, tables)
    with pytest.raises(
        IntegrityError, match=r"legacy data changed since these batches were loaded: patients batches 0"
    ):
        check_resume(pg_url, store, RUN)

    # asked to, the resume loads exactly the changed batch again: the target takes the current row
    assert check_resume(pg_url, store, RUN, reload_changed=True) == {"patients": [0]}
    result = pipeline.load_mapped(pg_url, store, RUN, "patients")
    assert result["resumed_batches"] == 0
    clinics = pipeline.load_mapped(pg_url, store, RUN, "clinics")
    assert clinics["resumed_batches"] == clinics["batches"]  # unchanged: still skipped
    with psycopg.connect(pg_url) as conn:
        (family,) = conn.execute(
            "SELECT p.family_name FROM pt.patient p JOIN migration.crosswalk c ON c.new_id = p.id"
            " WHERE c.legacy_table = 'patients' AND c.legacy_id = %s",
            (str(pat_id),),
        ).fetchone()
    assert family == "Zztop"
    assert changed_batches(pg_url, store, RUN) == {}
