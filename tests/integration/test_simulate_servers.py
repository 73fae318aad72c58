"""The simulator on PostgreSQL and MariaDB: same counts, same manifest, same rows as the SQLite run.

Only what a server cannot hold differs: Latin-1 bytes become mojibake there, and PostgreSQL turns
NUL into \\x01 (see ``cutover.simulate.writers``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cutover.legacy.schema import LEGACY_TABLES, Dialect, quote
from cutover.simulate import simulate
from cutover.simulate.writers import mysql_params, to_server_text

pytestmark = pytest.mark.services

PATIENTS = 150
SEED = 5


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("ref") / "legacy.db"
    return path, simulate(f"sqlite:///{path}", patients=PATIENTS, seed=SEED)


def _sqlite_rows(path: Path, table: str, dialect: Dialect) -> list[tuple[Any, ...]]:
    """The SQLite rows as the server should hold them."""
    conn = sqlite3.connect(path)
    try:
        kinds = [kind for _, kind in LEGACY_TABLES[table].columns]
        rows = conn.execute(f'SELECT * FROM "{table}" ORDER BY "{LEGACY_TABLES[table].key}"').fetchall()
    finally:
        conn.close()
    return [
        tuple(to_server_text(v, dialect) if k == "text" else v for v, k in zip(row, kinds, strict=True))
        for row in rows
    ]


def _server_rows(cursor: Any, dialect: Dialect, table: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(quote(dialect, c) for c in LEGACY_TABLES[table].column_names)
    cursor.execute(
        f"SELECT {columns} FROM {quote(dialect, table)} ORDER BY {quote(dialect, LEGACY_TABLES[table].key)}"
    )
    return [tuple(bytes(v) if isinstance(v, memoryview | bytearray) else v for v in row) for row in cursor]


def _check_against_reference(
    manifest: dict[str, Any],
    manifest_path: Path,
    reference: tuple[Path, dict[str, Any]],
    cursor: Any,
    dialect: Dialect,
) -> dict[str, list[tuple[Any, ...]]]:
    ref_path, ref_manifest = reference
    assert json.loads(manifest_path.read_text()) == manifest
    assert manifest == ref_manifest  # the ground truth does not depend on the engine
    rows = {}
    for table, count in manifest["tables"].items():
        rows[table] = _server_rows(cursor, dialect, table)
        assert len(rows[table]) == count, table
        assert rows[table] == _sqlite_rows(ref_path, table, dialect), table
    return rows


def _soap_cells(rows: dict[str, list[tuple[Any, ...]]], manifest: dict[str, Any], kind: str) -> list[str]:
    columns = LEGACY_TABLES["visits"].column_names
    by_id = {row[0]: row for row in rows["visits"]}
    return [
        by_id[d["legacy_id"]][columns.index(d["field"])]
        for d in manifest["defects"]
        if d["kind"] == kind and d["legacy_id"] in by_id
    ]


def test_postgresql_holds_the_same_practice(
    pg_url: str, reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    import psycopg

    manifest_path = tmp_path / "pg.manifest.json"
    manifest = simulate(pg_url, patients=PATIENTS, seed=SEED, manifest_path=manifest_path)
    with psycopg.connect(pg_url) as conn, conn.cursor() as cur:
        rows = _check_against_reference(manifest, manifest_path, reference, cur, "postgresql")
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.table_constraints WHERE constraint_type = 'FOREIGN KEY'"
        )
        assert cur.fetchone() == (0,)
    latin1 = _soap_cells(rows, manifest, "latin1_text")
    assert latin1
    assert all(isinstance(v, str) and "Ã" in v for v in latin1)  # mojibake, not raw bytes
    controls = _soap_cells(rows, manifest, "control_chars")
    assert not any("\x00" in v for v in controls)
    nul_defects = [d for d in manifest["defects"] if d["kind"] == "control_chars" and d["char"] == "NUL"]
    assert nul_defects
    assert sum("\x01" in v for v in controls) >= len(nul_defects)


def test_mariadb_holds_the_same_practice(
    mariadb_url: str, reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    import pymysql

    manifest_path = tmp_path / "maria.manifest.json"
    manifest = simulate(mariadb_url, patients=PATIENTS, seed=SEED, manifest_path=manifest_path)
    conn = pymysql.connect(**mysql_params(mariadb_url))
    try:
        with conn.cursor() as cur:
            rows = _check_against_reference(manifest, manifest_path, reference, cur, "mysql")
    finally:
        conn.close()
    assert all("Ã" in v for v in _soap_cells(rows, manifest, "latin1_text"))
    nul_defects = [d for d in manifest["defects"] if d["kind"] == "control_chars" and d["char"] == "NUL"]
    assert sum("\x00" in v for v in _soap_cells(rows, manifest, "control_chars")) == len(nul_defects)


def test_server_reruns_replace_the_tables(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    simulate(pg_url, patients=60, seed=1, manifest_path=tmp_path / "a.json")
    second = simulate(pg_url, patients=30, seed=2, manifest_path=tmp_path / "b.json")
    with psycopg.connect(pg_url) as conn:
        for table, count in second["tables"].items():
            assert conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone() == (count,)
