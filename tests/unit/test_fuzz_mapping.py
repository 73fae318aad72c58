"""Fuzzing the extract → map path with hostile values (issue 13, item 6).

For any legacy table and any of its columns, a small realistic batch (from a tiny simulated clinic)
gets values of that column replaced by values of the hostile catalogue
(:mod:`cutover.simulate.hostile`), delivered the way a driver hands them over, converted by the
extract (:func:`cutover.legacy.source.to_batch`) and mapped (:func:`cutover.mapping.engine.map_batch`).
Whatever the values, the promise holds:

- nothing raises;
- every legacy row has exactly one outcome: rows out ≥ rows in, every valid input key is a
  ``legacy_id``, one ``reason`` per legacy id across exploded parts, as many legacy rows accounted
  as came in;
- an id column holding something that is not a whole number within int64 rejects its row
  ``id_invalid``; a blank required parent reference rejects it ``ref_missing``;
- no hostile value (at least 4 characters, as text) reaches a ``reason``, ``detail`` or ``flags``
  value or a log record, and those columns hold codes and column names only.

Values are delivered two ways: ``sqlite`` — written to a column of the legacy type in SQLite and
read back as the extract's SQLite connection reads it (``text_factory=bytes``: TEXT as bytes, REAL
as float; a key column takes only integers there); ``python`` — the catalogue's Python value as is,
the other text as ``str`` (what a server driver or a loosely typed key hands over).

A second test takes the real driver path: :func:`~cutover.simulate.hostile.corrupt` writes hostile
values into a copy of the clinic, :func:`cutover.legacy.source.read_batches` reads it.

Assertion messages name tables, columns, kinds, row positions and legacy ids, never a value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import logging
import re
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutover.legacy import source
from cutover.legacy.schema import LEGACY_TABLES
from cutover.mapping.engine import loose_ref_sources, map_batch
from cutover.mapping.specs import SPECS
from cutover.simulate import AS_OF, simulate
from cutover.simulate.hostile import (
    CATALOGUE,
    INT64_MAX,
    INT64_MIN,
    KINDS,
    Hostile,
    Value,
    corrupt,
    kinds_for,
)

PATIENTS = 20
SEED = 1313
BATCH_ROWS = 8
"""Rows per fuzzed batch: enough for a mix of clean and hostile rows, small enough to be fast."""
AS_OF_DATE = dt.date.fromisoformat(AS_OF)
OUTCOME_COLUMNS = ("reason", "detail", "flags")
CODE_TOKEN = re.compile(r"^[a-z][a-z0-9_]*$")
WORD = re.compile(r"^[a-z_]+$")
WHOLE = re.compile(r"^\s*[+-]?\d+\s*$")
SQLITE_AFFINITY = {"int": "INTEGER", "text": "TEXT", "blob": "BLOB"}


def _schema(columns: Sequence[tuple[str, str]]) -> pa.Schema:
    """The extract's schema: with the invalid-id sidecar where the extract has one."""
    return getattr(source, "extract_schema", source.arrow_schema)(columns)


def _read_batches(url: str, table: str) -> Iterator[pa.RecordBatch]:
    spec = LEGACY_TABLES[table]
    kwargs = (
        {"invalid_ids": True} if "invalid_ids" in inspect.signature(source.read_batches).parameters else {}
    )
    return source.read_batches(url, table, spec.columns, spec.key, batch_rows=BATCH_ROWS * 4, **kwargs)


# -- values as text: what must never leak ---------------------------------------------------------------


def _texts(value: Value) -> set[str]:
    """The forms a value could take as text once decoded or printed (at least 4 characters)."""
    if value is None:
        return set()
    if isinstance(value, bytes):
        forms = {value.decode("utf-8", "replace"), value.decode("cp1252", "replace"), value.decode("latin-1")}
    else:
        forms = {str(value), repr(value)} if isinstance(value, float) else {str(value)}
    forms |= {f.strip() for f in forms}
    return {f for f in forms if len(f) >= 4}


CATALOGUE_NEEDLES = frozenset(t for h in CATALOGUE for t in _texts(h.value))


def _leaks(texts: Sequence[str], needles: set[str] | frozenset[str]) -> bool:
    """Whether a needle is in one of ``texts``: as a substring, or for a plain lower-case word
    (``unknown``, ``none``: words a code such as ``status_unknown`` is made of) as a whole word."""
    texts = list(dict.fromkeys(texts))  # outcome columns repeat a few codes thousands of times
    for needle in needles:
        if WORD.match(needle):
            pattern = re.compile(rf"(?<![a-z]){re.escape(needle)}(?![a-z])")
            if any(pattern.search(t) for t in texts if not CODE_TOKEN.match(t) or t == needle):
                return True
        elif any(needle in t for t in texts):
            return True
    return False


# -- the clinic and its batches -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated clinic, written once per session."""
    path = tmp_path_factory.mktemp("fuzz") / "legacy.db"
    simulate(f"sqlite:///{path}", patients=PATIENTS, seed=SEED)
    return path


BASE_ROWS: dict[str, list[tuple[Any, ...]]] = {}
""":func:`base_rows`, for the Hypothesis test: it does not take them as an argument, so that a
falsifying example prints kinds and positions, not the clinic's rows."""


@pytest.fixture(scope="session")
def base_rows(clinic: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The first rows of every table, as the extract's SQLite connection reads them."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with contextlib.closing(sqlite3.connect(clinic)) as conn:
        conn.text_factory = bytes
        for table, spec in LEGACY_TABLES.items():
            cols = ", ".join(f'"{c}"' for c in spec.column_names)
            sql = f'SELECT {cols} FROM "{table}" ORDER BY "{spec.key}" LIMIT {BATCH_ROWS}'
            first = conn.execute(sql).fetchall()
            assert first, table
            # a table smaller than a batch (clinics) is filled up with copies under keys of their own
            at = spec.column_names.index(spec.key)
            rows[table] = [
                row if i < len(first) else (*row[:at], 1000 + i, *row[at + 1 :])
                for i, row in ((i, first[i % len(first)]) for i in range(BATCH_ROWS))
            ]
    BASE_ROWS.update(rows)
    return rows


_ROUND_TRIP = sqlite3.connect(":memory:", check_same_thread=False)
_ROUND_TRIP.text_factory = bytes
_ROUND_TRIP.execute("CREATE TABLE v (int INTEGER, text TEXT, blob BLOB)")


def _through_sqlite(value: Value, column_type: str) -> Value:
    """``value`` as the extract reads it back from a SQLite column of ``column_type``."""
    _ROUND_TRIP.execute(f'INSERT INTO v ("{column_type}") VALUES (?)', (value,))
    (stored,) = _ROUND_TRIP.execute(f'SELECT "{column_type}" FROM v').fetchone()
    _ROUND_TRIP.execute("DELETE FROM v")
    return stored  # type: ignore[no-any-return]


def _as_server_text(value: Any) -> Any:
    """A SQLite-read value as a server driver returns text: ``str`` where it is valid UTF-8."""
    if isinstance(value, bytes):
        with contextlib.suppress(UnicodeDecodeError):
            return value.decode("utf-8")
    return value


def _id_state(value: Any) -> tuple[str, int | None]:
    """How an id value as delivered should be read: ``valid`` (with the int), ``missing``, ``invalid``."""
    if value is None:
        return "missing", None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid", None
    if isinstance(value, str):
        if not value.strip():
            return "missing", None
        if not WHOLE.match(value):
            return "invalid", None
        value = int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            return "invalid", None
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX:
        return "valid", value
    return "invalid", None


def _outcomes(mapped: pa.Table) -> pd.DataFrame:
    """The mapped rows' keys and outcome columns (plain pandas: the target columns are not needed)."""
    picked = mapped.select([c for c in ("legacy_id", *OUTCOME_COLUMNS) if c in mapped.column_names])
    return picked.replace_schema_metadata(None).to_pandas()


# -- one fuzzed case ------------------------------------------------------------------------------------


def check_case(
    table: str,
    rows: Sequence[tuple[Any, ...]],
    planted: dict[int, tuple[str, str]],
    records: list[logging.LogRecord],
) -> list[str]:
    """Every violation of the promise by extract → map of ``rows`` (empty when it holds).

    ``planted`` maps a row position to (column, kind) of the hostile value in it; ``records`` is the
    list the logging capture fills while the case runs.
    """
    spec, legacy = SPECS[table], LEGACY_TABLES[table]
    shown = sorted({f"{c}:{k}" for c, k in planted.values()})
    where = f"{table} [{', '.join(shown) if len(shown) <= 6 else f'{len(shown)} kinds of {next(iter(planted.values()))[0]}'}]"
    names = legacy.column_names
    try:
        batch = source.to_batch(rows, _schema(legacy.columns))
    except Exception as exc:
        return [f"{where}: to_batch raised {type(exc).__name__}"]
    try:
        out = _outcomes(map_batch(spec, batch, as_of=AS_OF_DATE))
    except Exception as exc:
        return [f"{where}: map_batch raised {type(exc).__name__}"]
    problems: list[str] = []
    n_in = len(rows)
    if len(out) < n_in or (spec.explode is None and len(out) != n_in):
        problems.append(f"{where}: {n_in} rows in, {len(out)} rows out")
    legacy_ids = out["legacy_id"]
    keys = [_id_state(row[names.index(legacy.key)]) for row in rows]
    present = set(legacy_ids.dropna())
    absent = [i for i, (state, key) in enumerate(keys) if state == "valid" and str(key) not in present]
    if absent:
        problems.append(f"{where}: valid keys of rows {absent} have no outcome")
    accounted = legacy_ids.nunique() + (int(legacy_ids.isna().sum()) if spec.explode is None else 0)
    if accounted != n_in:
        problems.append(f"{where}: {accounted} legacy rows accounted of {n_in}")
    several = out.groupby("legacy_id", dropna=True)["reason"].nunique(dropna=False)
    if (several > 1).any():
        problems.append(f"{where}: legacy ids {sorted(several[several > 1].index)} have several outcomes")
    # the contract on ids: not an id → id_invalid; a blank required parent → ref_missing; but a
    # safety record is never rejected on its own: not an id in its episode or note reference → NULL,
    # flagged id_invalid, the record kept
    required = {ref.source for ref in spec.refs if ref.required}
    loose = loose_ref_sources(spec)
    for i, row in enumerate(rows):
        states = {c: _id_state(row[names.index(c)])[0] for c, kind in legacy.columns if kind == "int"}
        states = {c: ("loose_invalid" if c in loose and v == "invalid" else v) for c, v in states.items()}
        state, key = keys[i]
        what = planted.get(i, ("", ""))
        if state != "valid":
            if spec.explode is None and pd.isna(out["reason"].iloc[i]):
                problems.append(f"{where}: row {i} ({what[1]}) with an unusable key migrates")
            continue
        got = {None if pd.isna(v) else v for v in out.loc[legacy_ids == str(key), "reason"]}
        kept = out.loc[legacy_ids == str(key), "flags"].fillna("")
        if (
            "loose_invalid" in states.values()
            and "invalid" not in states.values()
            and (not kept.str.contains("id_invalid").all())
        ):
            problems.append(f"{where}: row {i} (legacy id {key}, {what[1]}) kept without its id_invalid flag")
        if "invalid" in states.values() and got != {"id_invalid"}:
            problems.append(
                f"{where}: row {i} (legacy id {key}, {what[1]}) is {sorted(map(str, got))}, not id_invalid"
            )
        elif (
            "invalid" not in states.values()
            and any(states[c] == "missing" for c in required)
            and got != {"ref_missing"}
        ):
            problems.append(
                f"{where}: row {i} (legacy id {key}, {what[1]}) without a required parent is "
                f"{sorted(map(str, got))}, not ref_missing"
            )
    # codes only, and no hostile value, in the outcome columns and the logs
    needles = set(CATALOGUE_NEEDLES)
    for i, (column, _kind) in planted.items():
        needles |= _texts(rows[i][names.index(column)])
    for column in OUTCOME_COLUMNS:
        if column not in out:
            continue
        distinct = [str(v) for v in out[column].dropna().unique()]  # each value judged once
        tokens = [t for v in distinct for t in v.split(",")]
        bad = {v for v in distinct if not all(CODE_TOKEN.match(t) for t in v.split(","))}
        odd = (
            sorted(i for i, v in enumerate(out[column].astype("string")) if pd.notna(v) and v in bad)
            if bad
            else []
        )
        if odd:
            problems.append(f"{where}: {column} of output rows {odd[:10]} is not a list of codes")
        if _leaks(tokens, needles):
            problems.append(f"{where}: a hostile value reached {column}")
    messages = [r.getMessage() for r in records]
    if _leaks(messages, needles):
        problems.append(f"{where}: a hostile value reached a log record")
    return problems


@st.composite
def fuzz_cases(draw: st.DrawFn) -> tuple[str, str, str, list[tuple[int, str]]]:
    """(table, column, delivery, [(row position, kind)]): kinds by name, so an example prints no value."""
    table = draw(st.sampled_from(list(SPECS)))
    column = draw(st.sampled_from(LEGACY_TABLES[table].column_names))
    via = draw(st.sampled_from(("sqlite", "python")))
    is_key = column == LEGACY_TABLES[table].key
    kinds = kinds_for(table, column, key_legal_only=is_key and via == "sqlite")
    most = min(BATCH_ROWS, len(kinds)) if is_key else BATCH_ROWS
    positions = draw(st.lists(st.integers(0, BATCH_ROWS - 1), min_size=1, max_size=most, unique=True))
    chosen = draw(
        st.lists(
            st.sampled_from(kinds),
            min_size=len(positions),
            max_size=len(positions),
            # keys stay unique, as in any legacy table (42.0 and ' 42 ' are one key)
            unique_by=(lambda h: ("derived", h.kind) if h.derive else _id_state(h.value)[1] or h.kind)
            if is_key
            else None,
        )
    )
    return table, column, via, [(i, h.kind) for i, h in zip(positions, chosen, strict=True)]


def _build(
    base: list[tuple[Any, ...]], table: str, column: str, via: str, planted: list[tuple[int, Hostile]]
) -> tuple[list[tuple[Any, ...]], dict[int, tuple[str, str]]]:
    legacy = LEGACY_TABLES[table]
    at = legacy.column_names.index(column)
    column_type = legacy.column_type(column)
    rows = [list(row) for row in base]
    for i, hostile in planted:
        value = hostile.value_for(rows[i][at])
        rows[i][at] = _through_sqlite(value, column_type) if via == "sqlite" else value
    if via == "python":
        for i, row in enumerate(rows):
            for j, (_name, kind) in enumerate(legacy.columns):
                if kind == "text" and not (j == at and i in dict(planted)):
                    row[j] = _as_server_text(row[j])
    return [tuple(row) for row in rows], {i: (column, h.kind) for i, h in planted}


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@pytest.mark.usefixtures("base_rows")
@given(case=fuzz_cases())
def test_hostile_values_map_to_one_outcome_each(
    case: tuple[str, str, str, list[tuple[int, str]]], caplog: pytest.LogCaptureFixture
) -> None:
    table, column, via, named = case
    planted = [(i, KINDS[kind]) for i, kind in named]
    rows, kinds = _build(BASE_ROWS[table], table, column, via, planted)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        problems = check_case(table, rows, kinds, caplog.records)
    assert problems == [], f"via {via}: " + "; ".join(problems)


@pytest.mark.parametrize("table", list(SPECS))
def test_every_kind_of_every_column_in_one_batch(
    table: str, base_rows: dict[str, list[tuple[Any, ...]]], caplog: pytest.LogCaptureFixture
) -> None:
    """A deterministic sweep beside the fuzzing: each column of ``table`` in turn gets every kind that
    fits it, one kind per row of a batch of copies of the table's first rows, as SQLite delivers them."""
    legacy = LEGACY_TABLES[table]
    problems: list[str] = []
    for column in legacy.column_names:
        kinds = [h for h in kinds_for(table, column, key_legal_only=column == legacy.key) if not h.huge]
        base = [base_rows[table][i % BATCH_ROWS] for i in range(len(kinds))]
        # copies of the first rows need keys of their own
        key_at = legacy.column_names.index(legacy.key)
        base = [(*row[:key_at], 1000 + i, *row[key_at + 1 :]) for i, row in enumerate(base)]
        rows, planted = _build(base, table, column, "sqlite", list(enumerate(kinds)))
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            problems += check_case(table, rows, planted, caplog.records)
    assert problems == [], "; ".join(problems)


# -- the real driver path -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_corrupted_clinic_reads_and_maps(
    seed: int, clinic: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostile values written into a copy of the clinic, read by the extract's SQLite connection."""
    path = tmp_path / "corrupted.db"
    shutil.copy(clinic, path)
    records = corrupt(path, rate=0.15, seed=seed, huge_limit=1)
    assert records
    url = f"sqlite:///{path}"
    planted: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for r in records:
        planted.setdefault((r["table"], r["legacy_id"]), []).append((r["column"], r["kind"]))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in SPECS}
    problems: list[str] = []
    for table, spec in SPECS.items():
        where = f"{table} (seed {seed})"
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            try:
                outs = [
                    _outcomes(map_batch(spec, batch, as_of=AS_OF_DATE)) for batch in _read_batches(url, table)
                ]
            except Exception as exc:
                problems.append(f"{where}: extract → map raised {type(exc).__name__}")
                continue
        out = pd.concat(outs, ignore_index=True) if outs else pd.DataFrame(columns=["legacy_id", "reason"])
        accounted = out["legacy_id"].nunique()
        if accounted != counts[table]:
            problems.append(f"{where}: {accounted} legacy rows accounted of {counts[table]}")
        several = out.groupby("legacy_id")["reason"].nunique(dropna=False)
        if (several > 1).any():
            problems.append(
                f"{where}: legacy ids {sorted(several[several > 1].index)[:10]} have several outcomes"
            )
        reasons = out.groupby("legacy_id")["reason"].first()
        for (t, legacy_id), cells in sorted(planted.items()):
            if t != table:
                continue
            if str(legacy_id) not in reasons.index:
                problems.append(f"{where}: corrupted legacy id {legacy_id} has no outcome")
                continue
            invalid = [
                k
                for c, k in cells
                if c not in loose_ref_sources(SPECS[t])
                and _id_state(_hostile_stored(path, t, c, legacy_id))[0] == "invalid"
            ]
            if invalid and reasons[str(legacy_id)] != "id_invalid":
                problems.append(
                    f"{where}: legacy id {legacy_id} ({', '.join(invalid)}) is {reasons[str(legacy_id)]}, not id_invalid"
                )
        for column in OUTCOME_COLUMNS:
            if column in out:
                tokens = [t for v in out[column].dropna() for t in str(v).split(",")]
                if not all(CODE_TOKEN.match(t) for t in tokens):
                    problems.append(f"{where}: {column} holds something other than codes")
                if _leaks(tokens, CATALOGUE_NEEDLES):
                    problems.append(f"{where}: a hostile value reached {column}")
        if _leaks([r.getMessage() for r in caplog.records], CATALOGUE_NEEDLES):
            problems.append(f"{where}: a hostile value reached a log record")
    assert problems == [], "; ".join(problems)


def _hostile_stored(path: Path, table: str, column: str, legacy_id: int) -> Any:
    """A corrupted cell as the extract's connection reads it (ids only leave this function as states)."""
    if LEGACY_TABLES[table].column_type(column) != "int":
        return 0  # not an id column: never an invalid id
    key = LEGACY_TABLES[table].key
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.text_factory = bytes
        row = conn.execute(f'SELECT "{column}" FROM "{table}" WHERE "{key}" = ?', (legacy_id,)).fetchone()
    return row[0]
