"""The references the pipeline bench compares our load and our end to end with, each checked to have
loaded every row it was given.

A reference that exits 0 has not necessarily loaded anything: pgloader abandons a table on its first
bad UTF-8 byte, reports it in its log and exits 0. So every reference here counts the rows in its
target after it ran and is ``ok`` only when each table holds exactly the rows it was given
(:func:`check_rows`); a failed reference gets no ratio.

- *psql, bare tables* (:func:`psql_bare`): the rows our load wrote into ``pt``, exported as CSV or
  PostgreSQL binary, ``\\copy``-ed by one ``psql`` into copies of the tables without keys, indexes or
  checks: the raw ceiling.
- *psql, same work* (:func:`psql_same_work`): the same target rows **and** the crosswalk rows our load
  wrote, into a fresh target schema whose constraints are set aside and put back exactly as our
  first load does (:func:`cutover.loading.bulk.defer_constraints` and ``restore_constraints``): the
  work our load must do at least.
- *psql, live schema* (:func:`psql_live_schema`): the target rows into the target schema with every
  constraint live (row-by-row foreign-key checks): what the deferral saves.
- *pgloader* (:func:`pgloader_run`): the legacy SQLite database into a scratch database; where it
  drops rows, again on a copy whose undecodable text is repaired (:func:`repair_copy`).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.measure import Measurement

LEDGER = ("migration", "crosswalk")
"""The ledger table our load writes one row to per migrated or merged legacy row."""


@dataclass(frozen=True)
class RowCheck:
    """Rows a reference was given and rows its target holds after it ran, per ``schema.table``."""

    given: int
    loaded: int
    short: dict[str, tuple[int, int]]
    """Each table whose count differs: (given, loaded); a table missing in the target counts 0."""

    @property
    def ok(self) -> bool:
        return not self.short


def check_rows(given: Mapping[str, int], loaded: Mapping[str, int]) -> RowCheck:
    """Compare per-table counts; a table the target lacks has loaded 0 rows, one with more rows
    than given is wrong too.

    >>> check_rows({"public.visits": 150_940, "public.cases": 10}, {"public.visits": 4, "public.cases": 10})
    RowCheck(given=150950, loaded=14, short={'public.visits': (150940, 4)})
    """
    short = {t: (n, loaded.get(t, 0)) for t, n in given.items() if loaded.get(t, 0) != n}
    return RowCheck(
        given=sum(given.values()),
        loaded=sum(loaded.get(t, 0) for t in given),
        short=dict(sorted(short.items())),
    )


def verdict(check: RowCheck, exit_code: int, figures: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A reference's entry in ``latest.json``: ``ok`` only with exit code 0 **and** every row loaded.

    >>> v = verdict(check_rows({"a.t": 5}, {"a.t": 2}), 0, {"seconds": 1.0}, "pgloader")
    >>> v["ok"], v["rows_loaded"], v["short_tables"]
    (False, 2, {'a.t': [5, 2]})
    """
    return {
        "ok": exit_code == 0 and check.ok,
        "exit_code": exit_code,
        "rows_given": check.given,
        "rows_loaded": check.loaded,
        "short_tables": {t: list(pair) for t, pair in check.short.items()},
        **figures,
        "what": what,
    }


def pg_counts(url: str, tables: Iterable[str]) -> dict[str, int]:
    """``count(*)`` of each ``schema.table`` at ``url``; a table that does not exist is left out."""
    counts: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for qualified in tables:
            schema, table = qualified.split(".", 1)
            (exists,) = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table}"',)
            ).fetchone() or (False,)
            if exists:
                query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                (counts[qualified],) = conn.execute(query).fetchone() or (0,)
    return counts


def sqlite_counts(path: Path) -> dict[str, int]:
    """``count(*)`` of each table of a SQLite database, as pgloader names them (``public.<table>``)."""
    with sqlite3.connect(path) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {f"public.{n}": conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


@dataclass(frozen=True)
class Export:
    """The rows our load wrote, one CSV and one binary file per table, and their counts."""

    folder: Path
    counts: dict[str, int]
    """Rows per ``schema.table`` of the target (``pt`` tables and the ledger)."""

    def file(self, qualified: str, fmt: str) -> Path:
        return self.folder / f"{qualified}.{'csv' if fmt == 'csv' else 'bin'}"


def export(target_url: str, folder: Path, tables: Iterable[str]) -> Export:
    """Each ``schema.table`` of our target as CSV and binary COPY files under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with psycopg.connect(target_url, autocommit=True) as conn:
        for qualified in tables:
            schema, table = qualified.split(".", 1)
            name = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            (counts[qualified],) = conn.execute(sql.SQL("SELECT count(*) FROM ") + name).fetchone() or (0,)
            for fmt in ("csv", "binary"):
                with (
                    (folder / f"{qualified}.{'csv' if fmt == 'csv' else 'bin'}").open("wb") as out,
                    conn.cursor().copy(
                        sql.SQL("COPY {} TO STDOUT (FORMAT {})").format(name, sql.SQL(fmt))
                    ) as copy,
                ):
                    for chunk in copy:
                        out.write(chunk)
    return Export(folder, counts)


def copy_script(path: Path, loads: Iterable[tuple[str, Path, str]]) -> Path:
    """A psql script of one ``\\copy`` per (``schema.table``, file, format), in the given order."""
    lines = []
    for qualified, file, fmt in loads:
        schema, table = qualified.split(".", 1)
        lines.append(f'\\copy "{schema}"."{table}" FROM \'{file}\' (FORMAT {fmt})')
    path.write_text("\n".join(lines) + "\n")
    return path


def _checkpoint(url: str, truncate: Iterable[str] = ()) -> None:
    """Empty ``truncate`` and start from a checkpoint, as our load does (its dirty pages are not
    flushed on someone else's clock)."""
    with psycopg.connect(url, autocommit=True) as conn:
        names = [sql.SQL("{}.{}").format(*map(sql.Identifier, t.split(".", 1))) for t in truncate]
        if names:
            conn.execute(sql.SQL("TRUNCATE ") + sql.SQL(", ").join(names))
        conn.execute("CHECKPOINT")


def run_measured(
    command: list[str],
    measurement: Measurement,
    log: Path,
    before: Callable[[], object] | None = None,
    after: Callable[[], object] | None = None,
) -> int:
    """Run ``command`` inside ``measurement`` (its process tree watched), with ``before`` and
    ``after`` on the clock too; the command's exit code (``after`` is skipped when it failed)."""
    with measurement, log.open("wb") as out:
        if before is not None:
            before()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        measurement.watch(proc.pid)
        code = proc.wait()
        if code == 0 and after is not None:
            after()
    return code


def psql_bare(
    psql: str, target_url: str, exported: Export, tables: list[str], fmt: str, postmaster: int | None
) -> dict[str, Any]:
    """``\\copy`` of our target rows (``tables``, in ``fmt``) into unconstrained copies in schema
    ``copy_ref`` of our target database."""
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS copy_ref")
        for qualified in tables:
            table = qualified.split(".", 1)[1]
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS copy_ref.{} (LIKE {}.{})").format(
                    sql.Identifier(table), *map(sql.Identifier, qualified.split(".", 1))
                )
            )
    into = {q: "copy_ref." + q.split(".", 1)[1] for q in tables}
    script = copy_script(
        exported.folder / f"bare_{fmt}.sql", [(into[q], exported.file(q, fmt), fmt) for q in tables]
    )
    _checkpoint(target_url, into.values())
    m = Measurement(postmaster, (_database(target_url),))
    code = run_measured(_psql(psql, target_url, script), m, script.with_suffix(".log"))
    check = check_rows({into[q]: exported.counts[q] for q in tables}, pg_counts(target_url, into.values()))
    return verdict(check, code, m.figures(), f"psql \\copy {fmt}, our target rows into bare tables")


def psql_live_schema(
    psql: str, url: str, exported: Export, tables: list[str], postmaster: int | None
) -> dict[str, Any]:
    """``\\copy`` CSV of our target rows into a fresh target schema (``url``) with every constraint live."""
    script = copy_script(
        exported.folder / "live_schema.sql", [(q, exported.file(q, "csv"), "csv") for q in tables]
    )
    _checkpoint(url)
    m = Measurement(postmaster, (_database(url),))
    code = run_measured(_psql(psql, url, script), m, script.with_suffix(".log"))
    check = check_rows({q: exported.counts[q] for q in tables}, pg_counts(url, tables))
    return verdict(
        check, code, m.figures(), "psql \\copy csv, our target rows into the target schema, constraints live"
    )


def psql_same_work(
    psql: str, url: str, exported: Export, tables: list[str], postmaster: int | None, run_id: str
) -> dict[str, Any]:
    """``\\copy`` CSV of ``tables`` into a fresh target schema (``url``), constraints set aside
    before and put back after by the functions our load calls; all three on the clock."""
    from cutover.loading.bulk import defer_constraints, restore_constraints

    script = copy_script(
        exported.folder / f"same_work_{len(tables)}.sql",
        [(q, exported.file(q, "csv"), "csv") for q in tables],
    )
    _checkpoint(url)
    m = Measurement(postmaster, (_database(url),))
    code = run_measured(
        _psql(psql, url, script),
        m,
        script.with_suffix(".log"),
        before=lambda: defer_constraints(url, run_id),
        after=lambda: restore_constraints(url, run_id),
    )
    check = check_rows({q: exported.counts[q] for q in tables}, pg_counts(url, tables))
    what = "psql \\copy csv, our target rows" + (" and crosswalk rows" if ".".join(LEDGER) in tables else "")
    return verdict(check, code, m.figures(), what + ", constraints set aside and put back as our load does")


def pgloader_run(
    pgloader: str, legacy: Path, url: str, postmaster: int | None, log: Path, what: str
) -> dict[str, Any]:
    """pgloader, default settings, from the SQLite database ``legacy`` into the empty database ``url``."""
    m = Measurement(postmaster, (_database(url),))
    command = [pgloader, f"sqlite://{legacy}", url.replace("postgresql://", "pgsql://", 1)]
    code = run_measured(command, m, log)
    given = sqlite_counts(legacy)
    check = check_rows(given, pg_counts(url, given))
    errors = sum(1 for line in log.read_text(errors="replace").splitlines() if " ERROR " in line)
    return {**verdict(check, code, m.figures(), what), "errors_logged": errors}


def repair_text(raw: bytes) -> str:
    """Text a legacy cell's bytes most likely meant: UTF-8 if they decode, else Windows-1252, else
    Latin-1 (which decodes anything); NUL bytes dropped (PostgreSQL text holds none).

    >>> repair_text("Muñoz".encode("latin-1")), repair_text("Muñoz".encode()), repair_text(b"a\\x00b")
    ('Muñoz', 'Muñoz', 'ab')
    """
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding).replace("\x00", "")
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def repair_copy(legacy: Path, repaired: Path, tables: Iterable[str]) -> int:
    """Copy ``legacy`` to ``repaired`` and, in ``tables``, rewrite each text column's cells that
    SQLite holds as bytes (a BLOB in a TEXT column: not valid UTF-8) as the text they most likely
    meant; the number of cells rewritten. What a migrator would do by hand before pgloader."""
    shutil.copyfile(legacy, repaired)
    fixed = 0
    with sqlite3.connect(repaired) as conn:
        for table in tables:
            columns = [
                r[1]
                for r in conn.execute(f'PRAGMA table_info("{table}")')
                if "CHAR" in r[2].upper() or "TEXT" in r[2].upper() or "CLOB" in r[2].upper()
            ]
            for column in columns:
                rows = conn.execute(
                    f'SELECT rowid, "{column}" FROM "{table}" WHERE typeof("{column}") = \'blob\''
                ).fetchall()
                conn.executemany(
                    f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?',
                    [(repair_text(bytes(raw)), rowid) for rowid, raw in rows],
                )
                fixed += len(rows)
    return fixed


def _psql(psql: str, url: str, script: Path) -> list[str]:
    return [psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)]


def _database(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/")
