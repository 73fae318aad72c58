"""A first load into an empty target: constraints set aside and restored, against a real PostgreSQL.

The bulk path must give exactly the target and ledger of the per-row path, and the schema must
come back exactly as it was, also after a killed run or a foreign key the rows break.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from cutover import pipeline
from cutover.errors import IntegrityError
from cutover.loading.bulk import defer_constraints, restore_constraints, restore_seconds
from cutover.simulate import simulate
from cutover.target.checksums import table_checksums

pytestmark = [pytest.mark.services]

_SCHEMA = """
SELECT 'fk', c.relname, k.conname, pg_get_constraintdef(k.oid), k.convalidated::text
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE k.contype = 'f' AND n.nspname = 'pt'
UNION ALL
SELECT 'index', c.relname, i.relname, pg_get_indexdef(i.oid), ''
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pt' OR (n.nspname, c.relname) = ('migration', 'crosswalk')
 ORDER BY 1, 2, 3
"""


def _schema(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(_SCHEMA).fetchall()


def _ledger(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT 'c', legacy_table, legacy_id, new_id::text, outcome, merged_into::text FROM migration.crosswalk"
            " UNION ALL SELECT 'r', legacy_table, legacy_id, reason_code, stage, detail FROM migration.reject"
            " UNION ALL SELECT 'f', legacy_table, legacy_id, flag_code, NULL, NULL FROM migration.flag"
            " ORDER BY 1, 2, 3, 4"
        ).fetchall()


@pytest.fixture
def target(pg_url: str) -> str:
    pipeline.prepare_target(pg_url)
    return pg_url


def test_constraints_come_back_exactly_and_a_deferral_is_idempotent(target: str) -> None:
    before = _schema(target)
    assert sum(1 for row in before if row[0] == "fk") >= 20

    first = defer_constraints(target, "run-a")
    assert first["deferred"]
    assert first["foreign_keys"] == sum(1 for r in before if r[0] == "fk")
    left = _schema(target)
    assert not [r for r in left if r[0] == "fk"]
    assert {r[2] for r in left} == {r[2] for r in before if r[0] == "index" and "_pkey" in r[2]}

    again = defer_constraints(target, "run-a")  # a retried task
    assert again["deferred"]
    assert again["reason"] == "already set aside"
    assert again["indexes"] == 0

    restored = restore_constraints(target, "run-a")
    assert restored["foreign_keys"] == first["foreign_keys"]
    assert restored["indexes"] == first["indexes"]
    assert _schema(target) == before
    assert sum(restore_seconds(target, "run-a").values()) > 0
    assert restore_constraints(target, "run-a")["foreign_keys"] == 0  # nothing pending any more


def test_the_targets_references_have_no_cycle(target: str) -> None:
    """restore_constraints checks foreign keys side by side: with a cycle in the references, two
    checks could each hold the table the other waits for."""
    import graphlib

    with psycopg.connect(target) as conn:
        edges = conn.execute(
            "SELECT c.relname, p.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
            " JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE k.contype = 'f' AND n.nspname = 'pt' AND c.oid <> p.oid"
        ).fetchall()
    graph: dict[str, set[str]] = {}
    for child, parent in edges:
        graph.setdefault(child, set()).add(parent)
    assert len(edges) >= 20
    assert list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle


def test_a_target_with_rows_keeps_its_constraints(target: str) -> None:
    with psycopg.connect(target) as conn:
        conn.execute(
            "INSERT INTO pt.payer (id, name, payer_type) VALUES (%s, 'Acme', 'commercial')", (uuid.uuid4(),)
        )
    before = _schema(target)
    assert defer_constraints(target, "run-b") == {
        "run_id": "run-b",
        "deferred": False,
        "reason": "target holds rows",
        "indexes": 0,
        "foreign_keys": 0,
    }
    assert _schema(target) == before


def test_a_killed_runs_constraints_are_restored_by_the_next_run(target: str) -> None:
    before = _schema(target)
    defer_constraints(target, "killed")
    # the killed run never restores; the next run's deferral restores them first, then sets them aside anew
    assert defer_constraints(target, "next")["deferred"]
    with psycopg.connect(target) as conn:
        pending = conn.execute(
            "SELECT run_id, count(*) FROM migration.deferred_constraint WHERE restored_at IS NULL GROUP BY 1"
        ).fetchall()
    assert [run for run, _ in pending] == ["next"]
    restore_constraints(target, "next")
    assert _schema(target) == before


def test_a_foreign_key_the_rows_break_is_named_and_kept_not_valid(target: str) -> None:
    defer_constraints(target, "run-c")
    with psycopg.connect(target) as conn:
        conn.execute(
            "INSERT INTO pt.provider (id, clinic_id, family_name, npi, active) VALUES (%s, %s, 'X', '1234567893', true)",
            (uuid.uuid4(), uuid.uuid4()),  # a clinic that does not exist
        )
    with pytest.raises(IntegrityError, match=r"pt\.provider\.provider_clinic_id_fkey") as raised:
        restore_constraints(target, "run-c")
    assert "1234567893" not in str(raised.value)
    schema = {(r[0], r[2]): r[4] for r in _schema(target)}
    assert schema[("fk", "provider_clinic_id_fkey")] == "false"  # back, enforced for new rows, not validated
    assert all(
        valid == "true" for (kind, name), valid in schema.items() if kind == "fk" and "provider" not in name
    )
    with psycopg.connect(target) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            "INSERT INTO pt.provider (id, clinic_id, family_name, npi, active) VALUES (%s, %s, 'Y', '1234567893', true)",
            (uuid.uuid4(), uuid.uuid4()),
        )


RUN = "bulk__1"


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A simulated practice extracted and mapped once (the load reads only the staging store)."""
    folder = tmp_path_factory.mktemp("bulk")
    legacy = f"sqlite:///{folder / 'legacy.db'}"
    simulate(legacy, patients=150, seed=31)
    store = f"file://{folder / 'stage'}"
    for table in pipeline.migrated_tables():
        pipeline.extract_table(legacy, store, RUN, table)
        pipeline.map_table(store, RUN, table, as_of=date(2026, 11, 27))
    return store


@pytest.fixture
def fresh_db(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = f"t_bulk_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        url = urlsplit(pg_admin_url)._replace(path="/" + name).geturl()
        pipeline.prepare_target(url)
        pipeline.begin_run(url, RUN, "test", {}, "tester")
        return url

    yield make
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_bulk_path_gives_the_per_row_paths_target_and_ledger(
    staged: str, fresh_db: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    urls = {"bulk": fresh_db(), "per_row": fresh_db()}
    direct: dict[str, dict[str, int]] = {}
    for path, url in urls.items():
        if path == "bulk":
            assert defer_constraints(url, RUN)["deferred"]
        for table in pipeline.migrated_tables():
            direct.setdefault(path, {})[table] = pipeline.load_mapped(url, staged, RUN, table)[
                "direct_batches"
            ]
        if path == "bulk":
            restore_constraints(url, RUN)
    # the first load wrote every batch by COPY alone, but for the table with a numeric column
    assert {t for t, n in direct["bulk"].items() if n == 0} == {"outcomes"}
    assert all(n > 0 for t, n in direct["bulk"].items() if t != "outcomes")
    assert not any(direct["per_row"].values())
    assert table_checksums(urls["bulk"]) == table_checksums(urls["per_row"])
    assert _ledger(urls["bulk"]) == _ledger(urls["per_row"])
    assert _schema(urls["bulk"]) == _schema(urls["per_row"])
    with psycopg.connect(urls["bulk"]) as conn:
        (visits,) = conn.execute("SELECT count(*) FROM pt.visit").fetchone() or (0,)
    assert visits > 500


def test_a_first_load_the_ledger_refuses_is_merged_the_general_way(
    staged: str, fresh_db: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier run rejected a clinic the target is still empty of: the direct COPY of its
    crosswalk row breaks the one-outcome rule, so the batch is merged the general way, which
    moves the row from reject to crosswalk, as a re-run must."""
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    url = fresh_db()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO migration.reject (legacy_system, legacy_table, legacy_id, reason_code, stage, run_id)"
            " SELECT legacy_system, legacy_table, legacy_id, 'orphan', 'load', 'earlier'"
            " FROM (VALUES ('legacy', 'clinics', '1'), ('legacy', 'payers', '1')) AS v (legacy_system, legacy_table, legacy_id)"
        )
    assert defer_constraints(url, RUN)["deferred"]
    loaded = {
        table: pipeline.load_mapped(url, staged, RUN, table) for table in ("clinics", "payers", "providers")
    }
    restore_constraints(url, RUN)
    assert loaded["clinics"]["direct_batches"] == loaded["payers"]["direct_batches"] == 0
    assert loaded["providers"]["direct_batches"] == 1
    with psycopg.connect(url) as conn:
        outcomes = conn.execute(
            "SELECT legacy_table, 'crosswalk' FROM migration.crosswalk WHERE legacy_id = '1'"
            " AND legacy_table IN ('clinics', 'payers')"
            " UNION ALL SELECT legacy_table, 'reject' FROM migration.reject WHERE legacy_id = '1'"
            " AND legacy_table IN ('clinics', 'payers') ORDER BY 1"
        ).fetchall()
    assert outcomes == [("clinics", "crosswalk"), ("payers", "crosswalk")]


def test_rolling_back_a_killed_first_load_puts_the_constraints_back(
    staged: str, fresh_db: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cutover.rollback import rollback_run, snapshot_target

    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    url = fresh_db()
    before = _schema(url)
    snapshot_target(url, RUN)
    assert defer_constraints(url, RUN)["deferred"]
    for table in pipeline.migrated_tables()[:8]:  # killed during the load: no restore ran
        pipeline.load_mapped(url, staged, RUN, table)
    assert _schema(url) != before
    rollback_run(url, RUN, actor="tester")
    assert _schema(url) == before
    assert all(c["rows"] == 0 for c in table_checksums(url).values())
    with psycopg.connect(url) as conn:
        (pending,) = conn.execute(
            "SELECT count(*) FROM migration.deferred_constraint WHERE restored_at IS NULL"
        ).fetchone() or (1,)
    assert pending == 0


def test_a_loader_without_ownership_keeps_the_constraints(target: str) -> None:
    role = f"bulk_loader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        for schema in ("pt", "migration"):
            conn.execute(f'GRANT USAGE ON SCHEMA {schema} TO "{role}"')
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO "{role}"')
    try:
        before = _schema(target)
        parts = urlsplit(target)
        loader = parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}").geturl()
        result = defer_constraints(loader, "run-d")
        assert result["deferred"] is False
        assert result["reason"] == "not the tables' owner"
        assert _schema(target) == before
    finally:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
