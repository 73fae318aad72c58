"""``cutover profile draft``: a draft profile of the simulated legacy system, against the built-in one.

The simulator's profile was written by a person who knew the system; a draft made only from the
database's catalog and a sample of its values should propose most of it: the same target table per
legacy table and the same target field per column, the same keys and parent relations. The draft
holds ``TODO``s and never a value of the database.
"""

from __future__ import annotations

import contextlib
import doctest
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import cutover.legacy.profile_draft as profile_draft
import cutover.legacy.profile_draft_measure as profile_draft_measure
from cutover.cli import main
from cutover.legacy.profile import simulator
from cutover.simulate import simulate

PATIENTS = 60
SEED = 5


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("draft") / "legacy.db"
    manifest = simulate(f"sqlite:///{path}", patients=PATIENTS, seed=SEED)
    return path, manifest


@pytest.fixture(scope="module")
def drafted(legacy: tuple[Path, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The draft, written through the CLI: (its text, its YAML)."""
    out = legacy[0].with_name("draft.yaml")
    assert main(["profile", "draft", "--legacy", f"sqlite:///{legacy[0]}", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    return text, yaml.safe_load(text)


def _simulator_fields() -> list[tuple[str, str, str, str]]:
    """(legacy table, target table, target field, first source column) of every mapped field."""
    out = []
    for name, table in simulator().document["tables"].items():
        mapping = table.get("map") or {}
        for field, spec in (mapping.get("fields") or {}).items():
            source = spec["from"] if isinstance(spec["from"], str) else spec["from"][0]
            out.append((name, mapping["to"], field, source))
    return out


def test_draft_proposes_the_simulator_profile(drafted: tuple[str, dict[str, Any]]) -> None:
    _, draft = drafted
    tables = draft["tables"]
    assert set(tables) == set(simulator().tables)
    expected = _simulator_fields()
    matched = []
    for legacy_table, target, field, source in expected:
        mapping = tables[legacy_table].get("map") or {}
        proposed = (mapping.get("fields") or {}).get(field) or {}
        given = proposed.get("from")
        first = given if isinstance(given, str) or given is None else given[0]
        if mapping.get("to") == target and first == source:
            matched.append((legacy_table, field))
    share = len(matched) / len(expected)
    missed = sorted({(t, f) for t, _, f, _ in expected} - set(matched))
    print(
        f"draft proposes the simulator profile's field for {share:.0%} of its {len(expected)} mapped fields; missed: {missed}"
    )
    assert share >= 0.8

    wrong_keys = {n: tables[n]["key"] for n, t in simulator().tables.items() if tables[n]["key"] != t.key}
    assert not wrong_keys
    relations = {(n, c, p) for n, t in simulator().tables.items() for c, p in t.parents}
    proposed = {(n, c, p) for n, t in tables.items() for c, p in (t.get("parents") or {}).items()}
    found = len(relations & proposed) / len(relations)
    print(
        f"draft proposes {found:.0%} of the simulator's {len(relations)} parent relations; extra: {sorted(proposed - relations)}"
    )
    assert found >= 0.9


def test_draft_is_a_draft_without_values(
    drafted: tuple[str, dict[str, Any]], legacy: tuple[Path, dict[str, Any]]
) -> None:
    text, draft = drafted
    assert "TODO" in text
    assert draft["profile"].startswith("TODO")
    path, manifest = legacy
    conn = sqlite3.connect(path)
    conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
    with contextlib.closing(conn):
        values = [
            str(v)
            for sql in (
                "SELECT pat_name, dob, ssn, email, home_phone, addr1 FROM patients LIMIT 40",
                "SELECT prov_name, npi FROM providers",
                "SELECT DISTINCT status FROM cases",
                "SELECT DISTINCT payer_type FROM payers",
                "SELECT goals FROM plans_of_care LIMIT 10",
            )
            for row in conn.execute(sql)
            for v in row
            if v is not None and len(str(v)) >= 6
        ]
    secrets = [c for c in manifest["canaries"] if len(c) >= 4] + values
    assert len(secrets) > 100
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"{len(leaked)} database values in the draft"


class _Counting:
    """A DB-API connection whose cursors count the rows each query returns."""

    def __init__(self, conn: Any, seen: list[tuple[str, int]]) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_seen", seen)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._conn, name, value)

    def cursor(self) -> Any:
        seen, cur = self._seen, self._conn.cursor()

        class Cursor:
            def execute(self, sql: str, *args: Any) -> Any:
                seen.append((sql, 0))
                return cur.execute(sql, *args)

            def _count(self, rows: list[Any]) -> list[Any]:
                sql, n = seen[-1]
                seen[-1] = (sql, n + len(rows))
                return rows

            def fetchmany(self, size: int) -> list[Any]:
                return self._count(cur.fetchmany(size))

            def fetchall(self) -> list[Any]:
                return self._count(cur.fetchall())

            def close(self) -> None:
                cur.close()

        return Cursor()


def test_draft_reads_a_bounded_sample(
    legacy: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = 50
    seen: list[tuple[str, int]] = []
    real = profile_draft.connect

    @contextlib.contextmanager
    def counting(url: str, **kwargs: Any) -> Iterator[Any]:
        with real(url, **kwargs) as conn:
            yield _Counting(conn, seen)

    monkeypatch.setattr(profile_draft, "SAMPLE_ROWS", bound)
    monkeypatch.setattr(profile_draft, "connect", counting)
    out = tmp_path / "bounded.yaml"
    summary = profile_draft.write_draft(f"sqlite:///{legacy[0]}", out)
    assert re.fullmatch(
        r"draft: 18 tables, \d+ columns, \d+ target fields proposed, \d+ TODOs → .*bounded\.yaml", summary
    )
    text = out.read_text(encoding="utf-8")
    visits = legacy[1]["tables"]["visits"]
    assert visits > bound
    assert f"# {visits:,} rows, {bound} sampled (at most {bound} a table)" in text
    assert f"of {bound} sampled values" in text
    assert f"unique and non-null in all {visits:,} rows" in text  # the key is checked on the whole table
    samples = [(sql, n) for sql, n in seen if "LIMIT" in sql]
    assert samples
    assert max(n for _, n in samples) <= bound
    assert all(n <= 1 for sql, n in seen if "LIMIT" not in sql and "COUNT" in sql)  # counts are one row


def test_doctests() -> None:
    for module in (profile_draft, profile_draft_measure):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
