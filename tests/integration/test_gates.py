"""The three validation gates on a simulated clinic, against real PostgreSQL and real GX.

A clean clinic passes all three gates and no file they write holds a canary (or the name or phone
of a patient the results point at); each gate stops a bad load beyond its threshold, naming the
expectation and counts, and tolerates failures within it (a warning rule broken is a finding).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cutover import pipeline
from cutover.mapping.specs import SPECS
from cutover.reject_gate import check_rejects
from cutover.report.migration_report import write_report
from cutover.simulate import simulate
from cutover.staging.parquet import read_table_objects, write_batches
from cutover.staging.store import open_store
from cutover.validation.catalog import DERIVED, catalog
from cutover.validation.runner import GateFailed, run_gate
from cutover.validation.suites import count_expectations
from cutover.validation.target_rules import RULES, npi_luhn, table_query

pytestmark = pytest.mark.slow

RUN = "gates-clean"
AS_OF = date(2026, 11, 27)


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str) -> Iterator[dict[str, Any]]:
    """A simulated clinic extracted, mapped and loaded once for the module."""
    work = tmp_path_factory.mktemp("gates")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    target = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    legacy = f"sqlite:///{work / 'legacy.db'}"
    manifest = simulate(legacy, patients=120, seed=2024)
    store = f"file://{work / 'stage'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUTOVER_HOME", str(work / "home"))
        pipeline.prepare_target(target)
        pipeline.begin_run(target, RUN, "test", {}, "tester")
        for table in pipeline.migrated_tables():
            pipeline.extract_table(legacy, store, RUN, table)
            pipeline.map_table(store, RUN, table, as_of=AS_OF)
        for table in pipeline.migrated_tables():
            pipeline.load_mapped(target, store, RUN, table)
    yield {"work": work, "legacy": legacy, "store": store, "target": target, "manifest": manifest}
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _result(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in report["results"] if r["expectation"] == name)


def _patient_values(legacy: str, ids: set[str]) -> set[str]:
    """Names and phones of the patients a report points at: none may appear in what the gates wrote."""
    if not ids:
        return set()
    with sqlite3.connect(legacy.removeprefix("sqlite:///")) as conn:
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT pat_name, home_phone, cell_phone, email FROM patients WHERE pat_id IN ({marks})",
            sorted(ids),
        ).fetchall()
    return {v for row in rows for v in row if isinstance(v, str) and len(v) >= 6}


def test_a_clean_clinic_passes_every_gate_and_no_artifact_holds_patient_data(clinic: dict[str, Any]) -> None:
    out = clinic["work"] / "evidence"
    reports = {
        gate: run_gate(gate, store_url=clinic["store"], run_id=RUN, target_url=clinic["target"], out_dir=out)
        for gate in ("extract", "mapped", "target")
    }
    for gate, report in reports.items():
        assert report.passed, gate
        assert len(report.results) == count_expectations()[gate]
        assert json.loads((out / f"gate_{gate}.json").read_text())["passed"] is True
    assert (out / "data_docs" / "index.html").exists()
    pages = list((out / "data_docs" / "validations").rglob("*.html"))
    # validations/<gate>/<table>/<run>/<time>/<batch>.html
    assert {p.parts[-5] for p in pages} >= {"extract", "mapped", "target"}
    suite_pages = list((out / "data_docs" / "expectations").rglob("*.html"))
    assert len(suite_pages) == sum(len(tables) for tables in catalog().by_gate.values())  # kept across runs
    # the planted canaries, and the identifying values of every patient the results name
    patient_ids = {i for r in reports["mapped"].results if r.table == "patients" for i in r.failing_ids} | {
        i for r in reports["target"].results if r.table == "patient" for i in r.failing_ids
    }
    needles = set(clinic["manifest"]["canaries"]) | _patient_values(clinic["legacy"], patient_ids)
    assert needles
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) > 40
    hits = [
        (p.name, n[:3]) for p in written for n in needles if n in p.read_bytes().decode("utf-8", "replace")
    ]
    assert hits == []


def _corrupt_visits_case_id(clinic: dict[str, Any], name: str, every: int) -> tuple[str, int]:
    """A copy of the legacy database where every ``every``-th visit's case id is not a number."""
    path = clinic["work"] / f"{name}.db"
    shutil.copy(clinic["legacy"].removeprefix("sqlite:///"), path)
    with sqlite3.connect(path) as conn:
        changed = conn.execute(
            "UPDATE visits SET case_id = 'see chart' WHERE visit_id % ? = 0", (every,)
        ).rowcount
    return f"sqlite:///{path}", changed


@pytest.mark.parametrize(("every", "stops"), [(10, True), (200, False)])
def test_a_broken_export_is_a_finding_of_the_extract_gate_and_stopped_by_the_reject_gate(
    clinic: dict[str, Any], every: int, stops: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Text in an id column is the legacy data's defect, not the pipeline's: the extract gate reports it
    (a warning naming the rows) and the rows are rejected ``id_invalid``; whether the run may go on is
    the reject policy's decision, taken before the load."""
    run_id = f"bad-extract-{every}"
    legacy, expected = _corrupt_visits_case_id(clinic, run_id, every)
    manifest = pipeline.extract_table(legacy, clinic["store"], run_id, "visits")
    out = clinic["work"] / run_id
    kwargs: dict[str, Any] = {"store_url": clinic["store"], "run_id": run_id, "target_url": None}
    with caplog.at_level(logging.INFO, logger="cutover.validation.runner"):
        ran = run_gate("extract", tables=["visits"], out_dir=out, **kwargs)
    report = ran.as_dict()
    assert report["passed"] is True
    for name in ("extract.visits.case_id.present", "extract.visits._invalid_ids.ids_valid"):
        found = _result(report, name)
        assert found["unexpected_count"] == expected, name
        assert found["status"] == "finding", name  # a warning rule broken: reported, the run goes on
        assert found["failing_ids"]
        assert all(int(i) % every == 0 for i in found["failing_ids"])
    # one meaning of a finding: the gate's log line, the report's headline and the data docs count the same
    findings = len(ran.findings)
    assert findings >= 2
    assert f", {findings} findings, " in caplog.text
    (out / "gates").mkdir()
    (out / "gate_extract.json").replace(out / "gates" / "extract.json")
    text = write_report(out).read_text()
    assert f"<b>{findings}</b><span>findings (warning rules broken)</span>" in text
    stored = [json.loads(p.read_text()) for p in (out / "results").rglob("*.json")]
    assert sum(v["meta"]["findings"] for v in stored) == findings
    assert sum(v["statistics"]["unsuccessful_expectations"] for v in stored) == findings  # no fatal one
    pipeline.map_table(clinic["store"], run_id, "visits", as_of=AS_OF)
    store = open_store(clinic["store"])
    staged = pa.concat_tables(part for _, part in read_table_objects(store, f"runs/{run_id}/mapped/visits"))
    corrupted = staged.filter(pc.equal(staged["detail"], "case_id")).to_pydict()
    assert sorted(map(int, corrupted["legacy_id"])) == [
        i for i in sorted(map(int, staged["legacy_id"].to_pylist())) if i % every == 0
    ]
    assert set(corrupted["reason"]) == {"id_invalid"}
    gate = check_rejects(store, f"runs/{run_id}", SPECS, ["visits"], target_url=None)
    visits = gate["tables"]["visits"]
    assert visits["legacy_rows"] == manifest["rows"]
    assert visits["rejected_by_mapping"] >= expected
    assert gate["passed"] is (not stops)
    assert visits["ok"] is (not stops)


def _stage_bad_scores(clinic: dict[str, Any], run_id: str, how_many: int) -> list[str]:
    """Copy the mapped outcomes to another run with ``how_many`` loadable LEFS scores pushed above 80."""
    store = open_store(clinic["store"])
    schema = SPECS["outcomes"].staged_schema
    table = pa.concat_tables(part for _, part in read_table_objects(store, f"runs/{RUN}/mapped/outcomes"))
    frame = table.to_pandas()
    loadable = frame["reason"].isna() & frame["merge_into"].isna() & (frame["instrument"] == "LEFS")
    chosen = frame.index[loadable][:how_many]
    frame.loc[chosen, "score"] = 95.0
    bad = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    write_batches(
        store, f"runs/{run_id}/mapped/outcomes", bad.to_batches(), schema=schema, rows_per_part=100_000
    )
    return [str(i) for i in frame.loc[chosen, "legacy_id"]]


@pytest.mark.parametrize(("how_many", "fails"), [(30, True), (1, False)])
def test_mapped_gate_stops_a_bad_mapping_before_the_load(
    clinic: dict[str, Any], how_many: int, fails: bool
) -> None:
    run_id = f"bad-mapped-{how_many}"
    ids = _stage_bad_scores(clinic, run_id, how_many)
    out = clinic["work"] / run_id
    kwargs: dict[str, Any] = {
        "store_url": clinic["store"],
        "run_id": run_id,
        "target_url": None,
        "out_dir": out,
    }
    if fails:
        with pytest.raises(
            GateFailed, match=rf"mapped\.outcomes\.score_in_range on outcomes: {how_many}/\d+ rows"
        ):
            run_gate("mapped", tables=["outcomes"], **kwargs)
        report = json.loads((out / "gate_mapped.json").read_text())
    else:
        report = run_gate("mapped", tables=["outcomes"], **kwargs).as_dict()
    found = _result(report, "mapped.outcomes.score_in_range")
    assert found["unexpected_count"] == how_many
    assert found["status"] == ("failed" if fails else "tolerated")  # a fatal rule, 1 row under its 1%
    assert found["failing_ids"]
    assert set(found["failing_ids"]) <= set(ids)


@pytest.mark.parametrize(("share", "fails"), [(0.2, True), (0.0, False)])
def test_target_gate_stops_a_bad_load(clinic: dict[str, Any], share: float, fails: bool) -> None:
    target = clinic["target"]
    with psycopg.connect(target) as conn:
        (total,) = conn.execute("SELECT count(*) FROM pt.visit").fetchone()  # type: ignore[misc]
        n = max(1, int(total * share))
        moved = [
            r[0]
            for r in conn.execute(
                "UPDATE pt.visit SET visit_date = visit_date - 400 WHERE id IN"
                " (SELECT id FROM pt.visit ORDER BY id LIMIT %s) RETURNING id",
                (n,),
            ).fetchall()
        ]
        legacy_ids = {
            r[0]
            for r in conn.execute(
                "SELECT legacy_id FROM migration.crosswalk WHERE new_id = ANY(%s)", (moved,)
            ).fetchall()
        }
    out = clinic["work"] / f"bad-target-{share}"
    kwargs: dict[str, Any] = {
        "store_url": clinic["store"],
        "run_id": RUN,
        "target_url": target,
        "out_dir": out,
    }
    try:
        if fails:
            with pytest.raises(GateFailed, match=r"target\.visit\.within_episode on visit: \d+/\d+ rows"):
                run_gate("target", tables=["visits"], **kwargs)
            report = json.loads((out / "gate_target.json").read_text())
        else:
            report = run_gate("target", tables=["visits"], **kwargs).as_dict()
    finally:
        with psycopg.connect(target) as conn:
            conn.execute("UPDATE pt.visit SET visit_date = visit_date + 400 WHERE id = ANY(%s)", (moved,))
    found = _result(report, "target.visit.within_episode")
    assert found["unexpected_count"] >= n
    assert found["status"] == ("failed" if fails else "tolerated")
    assert {r["table"] for r in report["results"]} == {"visit"}
    if fails:  # with 20% moved, the first ten failing ids include moved visits: legacy ids, not target uuids
        assert set(found["failing_ids"]) & legacy_ids


def test_the_sql_npi_check_agrees_with_the_python_one(pg_url: str) -> None:
    npis = ["1234567893", "1234567890", "1245319599", "1003000126", "1003000127", "12345", None]
    expected = DERIVED["providers.npi_luhn"](pa.table({"npi": pa.array(npis, pa.string())})).to_pylist()
    with psycopg.connect(pg_url) as conn:
        got = [
            conn.execute(f"SELECT {npi_luhn('t.npi')} FROM (SELECT %s::text AS npi) AS t", (npi,)).fetchone()[
                0
            ]  # type: ignore[index]
            for npi in npis
        ]
    assert got == expected
    assert expected[:2] == [True, False]


def test_every_rule_query_has_one_row_per_target_row(clinic: dict[str, Any]) -> None:
    # the joins bring a parent by its key or children aggregated per row: never a second row for one t
    with psycopg.connect(clinic["target"]) as conn:
        for table in {r.table for r in RULES}:
            (rows,) = conn.execute(f"SELECT count(*) FROM ({table_query(table)}) AS q").fetchone()  # type: ignore[misc]
            (distinct,) = conn.execute(
                f"SELECT count(DISTINCT id) FROM ({table_query(table)}) AS q"
            ).fetchone()  # type: ignore[misc]
            (expected,) = conn.execute(f'SELECT count(*) FROM pt."{table}"').fetchone()  # type: ignore[misc]
            assert rows == distinct == expected > 0, table


def test_rules_the_database_cannot_evaluate_fail_the_gate_without_quoting_the_sql(
    clinic: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cutover.validation import target_rules

    names = [r.name for r in RULES if r.table == "visit"]
    broken = f"SELECT t.id, {', '.join(f'(1 / 0 = 1) AS {n}' for n in names)} FROM pt.visit AS t"
    monkeypatch.setattr(target_rules, "table_query", lambda table: broken)
    out = clinic["work"] / "broken-rules"
    with pytest.raises(
        GateFailed, match=r"target\.visit\.within_episode on visit: could not be evaluated"
    ) as failed:
        run_gate(
            "target",
            store_url=clinic["store"],
            run_id=RUN,
            target_url=clinic["target"],
            tables=["visits"],
            out_dir=out,
        )
    assert "SELECT" not in str(failed.value)
    report = json.loads((out / "gate_target.json").read_text())
    assert {r["expectation"] for r in report["results"] if not r["evaluated"]} == {
        f"target.visit.{n}" for n in names
    }
    assert all(r["status"] == "failed" for r in report["results"])
