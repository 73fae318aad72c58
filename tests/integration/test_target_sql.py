"""The target gate's rules computed as SQL count what GX's own evaluation of the target suites counts.

A simulated clinic (its planted defects, and a few more planted here) is loaded into PostgreSQL.
Each target table's suite, as committed (``build_suite``), is validated by GX on its batch
(``batch_query``: a rule on the row alone is a column there, a cross-table rule GX's
``UnexpectedRowsExpectation``) with every failing row listed (``COMPLETE``); the rows each rule
applies to come from GX's count of the rule's column of ``table_query`` (not NULL), as the gate's
GX query assets counted them before. The gate's own statement per table
(:func:`cutover.validation.runner._validate_target`) must give, rule by rule, the same rows
applied to, the same failing rows, and as ids the first ten of GX's failing ids by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cutover import pipeline
from cutover.simulate import simulate
from cutover.validation import runner
from cutover.validation.catalog import catalog
from cutover.validation.suites import build_suite
from cutover.validation.target_rules import RULES, batch_query, table_query

pytestmark = pytest.mark.slow

RUN = "target-sql"
AS_OF = date(2026, 11, 27)
MAX_GX_ROWS = 200
"""GX lists at most this many rows of an ``UnexpectedRowsExpectation``: the clinic stays below it."""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str) -> Iterator[str]:
    """A simulated clinic loaded into a fresh database, with more rows planted to break rules."""
    work = tmp_path_factory.mktemp("target-sql")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    legacy = f"sqlite:///{work / 'legacy.db'}"
    simulate(legacy, patients=80, seed=2024)
    store = f"file://{work / 'stage'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUTOVER_HOME", str(work / "home"))
        pipeline.prepare_target(url)
        pipeline.begin_run(url, RUN, "test", {}, "tester")
        for table in pipeline.migrated_tables():
            pipeline.extract_table(legacy, store, RUN, table)
            pipeline.map_table(store, RUN, table, as_of=AS_OF)
        for table in pipeline.migrated_tables():
            pipeline.load_mapped(url, store, RUN, table)
    with psycopg.connect(url) as conn:
        # visits moved out of their episode, a charge moved to another patient, an authorization
        # over its visits: rule failures of every kind of join (a parent, children aggregated)
        conn.execute(
            "UPDATE pt.visit SET visit_date = visit_date - 400 WHERE id IN (SELECT id FROM pt.visit ORDER BY id LIMIT 25)"
        )
        conn.execute(
            "UPDATE pt.charge SET patient_id = (SELECT id FROM pt.patient ORDER BY id LIMIT 1)"
            " WHERE id IN (SELECT id FROM pt.charge ORDER BY id DESC LIMIT 7)"
        )
        conn.execute(
            'UPDATE pt."authorization" SET visits_authorized = 1 WHERE id IN'
            ' (SELECT id FROM pt."authorization" ORDER BY id LIMIT 12)'
        )
        conn.execute("UPDATE pt.patient SET phone_home = NULL, phone_mobile = NULL, email = NULL WHERE id IN"
                     " (SELECT id FROM pt.patient ORDER BY id LIMIT 3)")  # fmt: skip
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _gx_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def _validator(source: Any, asset: str, query: str) -> Any:
    from great_expectations.validator.v1_validator import Validator

    definition = source.add_query_asset(asset, query=query).add_batch_definition_whole_table("all")
    return Validator(
        batch_definition=definition,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": ["id"],
            "exclude_unexpected_values": True,
            "return_unexpected_index_query": False,
        },
    )


def _gx_counts(source: Any, table: str) -> dict[str, tuple[int, int, list[str]]]:
    """Per rule, by GX: (rows it applies to, failing rows, every failing id)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    failing: dict[str, tuple[int, list[str]]] = {}
    suite = build_suite("target", table)
    validation = _validator(source, f"{table}_batch", batch_query(table)).validate_expectation_suite(suite)
    for r in validation.results:
        assert not (r.exception_info or {}).get("raised_exception"), r.expectation_config.meta["name"]
        name, result = r.expectation_config.meta["name"], r.result
        if r.expectation_config.type == "unexpected_rows_expectation":
            rows = result.get("details", {}).get("unexpected_rows", [])
            assert len(rows) == result["observed_value"] < MAX_GX_ROWS, name  # every failing row listed
            failing[name] = (result["observed_value"], [str(row["id"]) for row in rows])
        else:
            # GX's SQL engine lists the ids in one entry, its pandas engine one entry per row
            ids = [
                str(i)
                for entry in result.get("unexpected_index_list") or []
                for i in (entry["id"] if isinstance(entry["id"], list) else [entry["id"]])
            ]
            assert len(ids) == result["unexpected_count"], name
            failing[name] = (result["unexpected_count"], ids)
    # the rows each rule applies to: GX's count of its column, NULL (the rule does not apply) missing
    columns = gx.ExpectationSuite(
        name=f"{table}.applies",
        expectations=[
            gxe.ExpectColumnValuesToBeInSet(
                column=r.name, value_set=[True], meta={"name": f"target.{table}.{r.name}"}
            )
            for r in RULES
            if r.table == table
        ],
    )
    applies: dict[str, int] = {}
    for r in (
        _validator(source, f"{table}_rules", table_query(table)).validate_expectation_suite(columns).results
    ):
        applies[r.expectation_config.meta["name"]] = r.result["element_count"] - r.result["missing_count"]
    return {name: (applies[name], count, ids) for name, (count, ids) in failing.items()}


def test_the_target_rules_as_sql_count_what_gx_counts(target: str, tmp_path: Path) -> None:
    ctx = runner._context(tmp_path)
    source = ctx.data_sources.add_postgres("target", connection_string=_gx_url(target))
    broken, cross_table = 0, 0
    with psycopg.connect(target, autocommit=True) as conn:
        for table in catalog().by_gate["target"]:
            expected = _gx_counts(source, table)
            got = runner._validate_target(conn, table)
            assert set(got) == set(expected) == {c.name for c in catalog().by_gate["target"][table]}
            for name, (applies, count, ids) in expected.items():
                tally = got[name]
                assert (tally.elements, tally.unexpected, tally.errors) == (applies, count, 0), name
                assert tally.ids == sorted(ids)[: runner.MAX_IDS], name
                broken += count > 0
                cross_table += count > 0 and "unexpected_rows_query" in next(
                    c.kwargs for c in catalog().by_gate["target"][table] if c.name == name
                )
    assert broken >= 6  # the planted failures and the simulator's defects are found
    assert cross_table >= 4
    source.get_execution_engine().close()


def test_a_rule_the_database_cannot_evaluate_is_an_error_of_its_table_alone(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cutover.validation import target_rules

    original = target_rules.table_query

    def broken(table: str) -> str:
        return (
            original(table).replace("t.amount_cents > 0", "1 / 0 = 1")
            if table == "charge"
            else original(table)
        )

    monkeypatch.setattr(target_rules, "table_query", broken)
    with psycopg.connect(target, autocommit=True) as conn:
        charge = runner._validate_target(conn, "charge")
        visit = runner._validate_target(conn, "visit")  # the session goes on after the failed statement
    assert all(t.errors == 1 for t in charge.values())
    assert not any(t.errors for t in visit.values())
    assert visit["target.visit.within_episode"].unexpected >= 25
