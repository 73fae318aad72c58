"""Arrow counts the Parquet gates' rules exactly as GX does: a differential test against GX's own results.

Every comparison gives GX the frame the runner gives it (``runner._frame``) and the same checks, and
adds its result to a tally as the runner does (``runner._tally``); Arrow's answer is added to another
(``runner._add``). Where :func:`cutover.validation.arrow_eval.evaluate` answers, the two tallies
(rows the rule applied to, failing rows, failing ids in order, errors) must be equal; where it does
not, GX must be what decides (GX raises or the case is outside what Arrow promises).

The cases: every extract and mapped check of the catalog on a simulated clinic's staged parts, as
read, and again with hostile values planted in every column (NULLs, NaN and infinities, empty and
blank text, unicode, newlines, the rules' boundary numbers, the extremes of each integer type, dates
out of order, ids missing and repeated), integer columns with and without NULLs (GX judges the
former value by value, the latter by dtype); then hand-made rules on hostile columns for what the
catalog does not use (strict bounds, float columns, patterns RE2 cannot take, type names of every
kind); finally both gates end to end, once with Arrow and once with GX alone, report the same.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cutover import pipeline
from cutover.legacy.profile import legacy_tables
from cutover.pipeline import run_key
from cutover.simulate import simulate
from cutover.staging.parquet import read_manifest
from cutover.staging.store import open_store
from cutover.validation import arrow_eval, runner
from cutover.validation.arrow_eval import Part, evaluate
from cutover.validation.catalog import Check, Gate, catalog
from cutover.validation.suites import build_suite

RUN = "arrow-eval"
AS_OF = date(2026, 11, 27)


# --- the two sides -------------------------------------------------------------------------------


class Gx:
    """GX's pandas engine, as the runner drives it, on one part at a time."""

    def __init__(self, folder: Path) -> None:
        self.ctx = runner._context(folder)
        source = self.ctx.data_sources.add_pandas("differential")
        self.definition = source.add_dataframe_asset("part").add_batch_definition_whole_dataframe("part")

    def tallies(
        self, suite: Any, checks: list[Check], part: pa.Table, names: list[str], id_column: str
    ) -> dict[str, runner._Tally]:
        frame = runner._frame(part, checks, id_column, names)
        with runner._no_frame_fingerprint():
            validation = runner._validator(
                self.definition, id_column, dataframe=frame
            ).validate_expectation_suite(suite)
        found: dict[str, runner._Tally] = {}
        runner._tally(found, validation, id_column)
        return found


def _suite(checks: list[Check]) -> Any:
    """A GX suite of hand-made checks (the catalog's come from ``build_suite``)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx.ExpectationSuite(
        name="differential",
        expectations=[getattr(gxe, c.expectation)(**c.kwargs, meta={"name": c.name}) for c in checks],
    )


def _arrow(
    checks: list[Check], part: pa.Table, names: list[str], id_column: str
) -> dict[str, runner._Tally | None]:
    derived = runner._derived(part, checks)
    view = Part(part, id_column, tuple(dict.fromkeys([*names, *derived])), derived, runner.MAX_IDS)
    found: dict[str, runner._Tally | None] = {}
    for c in checks:
        outcome = evaluate(c, view)
        if outcome is None:
            found[c.name] = None
        else:
            found[c.name] = runner._Tally()
            runner._add(found[c.name], outcome)  # type: ignore[arg-type]
    return found


def _compare(
    gx: Gx, suite: Any, checks: list[Check], part: pa.Table, names: list[str], id_column: str
) -> tuple[int, list[str]]:
    """Arrow's tallies against GX's on one part: (checks computed in Arrow, those left to GX)."""
    expected = gx.tallies(suite, checks, part, names, id_column)
    got = _arrow(checks, part, names, id_column)
    left: list[str] = []
    for c in checks:
        if got[c.name] is None:
            left.append(c.name)
            continue
        assert got[c.name] == expected[c.name], (c.name, c.expectation, c.kwargs)
    return len(checks) - len(left), left


# --- hostile values --------------------------------------------------------------------------------

_TEXT = ["", " ", "AB\n", "AB", "ab", "ÄB", "Ω", "12345\n", "12345", "1234", "123456789", "+15555550100",
         "+0555", "97110", "9711O", "M54.5", "M54.", "A0\n1", "PT", "pt", "PT ", "female", "LEFS", "open",
         "\t", "𝔸𝔹", "1234567890", "٣٣٣٣٣"]  # fmt: skip
_BOUNDS = [0, -1, 1, 3, 4, 7, 8, 16, 17, 52, 53, 200, 201, 240, 241, 1_000_000, 1_000_001, -1_000_000,
           -1_000_001]  # fmt: skip


def _integers(kind: pa.DataType) -> list[int]:
    info = np.iinfo(kind.to_pandas_dtype())
    return [v for v in _BOUNDS if info.min <= v <= info.max] + [int(info.min), int(info.max)]


def _hostile_values(kind: pa.DataType, n: int, with_nulls: bool) -> pa.Array | None:
    """``n`` hostile values of type ``kind`` (None: a type left as it is)."""
    pool: list[Any]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        pool = _TEXT
    elif pa.types.is_integer(kind):
        pool = _integers(kind)
    elif pa.types.is_floating(kind):
        pool = [math.nan, math.inf, -math.inf, -0.0, 0.0, 80.0, 80.5, 100.0, 1e300, -1.0]
    elif pa.types.is_date(kind):
        pool = [date(1, 1, 1), date(1900, 1, 1), date(2025, 3, 1), date(9999, 12, 31), date(2024, 2, 29)]
    elif pa.types.is_timestamp(kind):
        tz = UTC if kind.tz else None
        pool = [datetime(1970, 1, 1, tzinfo=tz), datetime(2025, 3, 1, 12, tzinfo=tz)]
    elif pa.types.is_boolean(kind):
        pool = [True, False]
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        pool = [b"", b"\x00", b"%PDF"]
    else:
        return None
    if with_nulls:
        pool = [*pool, None]
    return pa.array([pool[i % len(pool)] for i in range(n)], kind)


def _hostile(table: pa.Table, *, seed: int, with_nulls: bool, keep: set[str]) -> pa.Table:
    """``table`` with hostile values planted in every other row of each column (types kept); the columns
    of ``keep`` (what says whether a row loads) as they were."""
    rng = np.random.default_rng(seed)
    n = table.num_rows
    out = table
    for i, name in enumerate(table.column_names):
        if name in keep or not n:
            continue
        column = table[name].combine_chunks()
        planted = _hostile_values(column.type, n, with_nulls)
        if planted is None:
            continue
        where = pa.array(rng.random(n) < 0.5)
        if not with_nulls:
            column = column.fill_null(planted[0]) if pa.types.is_integer(column.type) else column
        out = out.set_column(i, name, pc.if_else(where, planted, column))
    # a few ids repeated (duplicated keys and the failing ids of one record)
    return out


def _staged_parts(
    store: str, gate: Gate, table: str
) -> Iterator[tuple[list[str], pa.Table, list[Check], str]]:
    checks = catalog().by_gate[gate][table]
    mapped = gate == "mapped"
    id_column = "legacy_id" if mapped else legacy_tables()[table].key
    columns, whole, typed = runner._reading(checks, id_column, mapped=mapped)
    manifest = read_manifest(open_store(store), f"runs/{run_key(RUN)}/{gate}/{table}")
    for names, part in runner._parts(
        open_store(store), manifest, mapped=mapped, columns=columns, whole=whole, typed=typed
    ):
        yield names, part, checks, id_column


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulated clinic (its planted defects included) extracted and mapped; the staging store's url.
    Parts of at most 700 rows, so that the larger tables come in several."""
    work = tmp_path_factory.mktemp("arrow-eval")
    store = f"file://{work / 'stage'}"
    legacy = f"sqlite:///{work / 'legacy.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUTOVER_HOME", str(work / "home"))
        mp.setattr(pipeline, "ROWS_PER_PART", 700)
        balanced = pipeline.balanced_part_rows
        mp.setattr(pipeline, "balanced_part_rows", lambda rows: balanced(rows, 700))
        simulate(legacy, patients=60, seed=2024)
        for table in pipeline.migrated_tables():
            pipeline.extract_table(legacy, store, RUN, table)
            pipeline.map_table(store, RUN, table, as_of=AS_OF)
        yield store


@pytest.fixture(scope="module")
def gx(tmp_path_factory: pytest.TempPathFactory) -> Gx:
    return Gx(tmp_path_factory.mktemp("gx"))


@pytest.mark.parametrize("gate", ["extract", "mapped"])
def test_every_check_of_the_catalog_counts_as_gx_on_a_simulated_clinic(
    clinic: str, gx: Gx, gate: Gate
) -> None:
    computed, left = 0, []
    for table in catalog().by_gate[gate]:
        suite = build_suite(gate, table)
        for names, part, checks, id_column in _staged_parts(clinic, gate, table):
            done, rest = _compare(gx, suite, checks, part, names, id_column)
            computed += done
            left += rest
    assert left == []  # every check of the gate is computed in Arrow on a clinic's parts
    assert computed >= sum(len(cs) for cs in catalog().by_gate[gate].values())


@pytest.mark.parametrize("with_nulls", [True, False], ids=["nulls", "no-nulls"])
@pytest.mark.parametrize("gate", ["extract", "mapped"])
def test_every_check_of_the_catalog_counts_as_gx_on_hostile_values(
    clinic: str, gx: Gx, gate: Gate, with_nulls: bool
) -> None:
    computed, failing = 0, 0
    for t, table in enumerate(catalog().by_gate[gate]):
        suite = build_suite(gate, table)
        for names, part, checks, id_column in _staged_parts(clinic, gate, table):
            keep = {"reason", "merge_into"}
            for seed, rows in enumerate([part, part.slice(0, 0), part.slice(0, 1), part.slice(3, 40)]):
                bad = _hostile(rows, seed=seed + t, with_nulls=with_nulls, keep=keep)
                done, _ = _compare(gx, suite, checks, bad, names, id_column)
                computed += done
                failing += sum(t.unexpected > 0 for t in _arrow(checks, bad, names, id_column).values() if t)
    assert computed > 0
    assert failing > 0


# --- hand-made rules on hostile columns ----------------------------------------------------------


def _check(expectation: str, **kwargs: Any) -> Check:
    name = f"hand.{expectation}.{json.dumps(kwargs, sort_keys=True, default=str)}"
    return Check("mapped", "hand", name, expectation, kwargs, "a hand-made rule")


def _table(**columns: pa.Array) -> pa.Table:
    return pa.table(columns)


N = 24
_IDS = pa.array([str(i % 17) if i % 11 else None for i in range(N)], pa.string())


def _cycle(values: list[Any], kind: pa.DataType) -> pa.Array:
    return pa.array([values[i % len(values)] for i in range(N)], kind)


HOSTILE = _table(
    id=_IDS,
    int_id=_cycle([1, 2, 3, None, 5], pa.int64()),
    text=_cycle([*_TEXT, None], pa.string()),
    big_text=_cycle(_TEXT, pa.large_string()),
    codes=_cycle(["PT", "PTA", "DPT", "pt", "", None, "PT\n", "ＰＴ"], pa.string()),
    i64=_cycle([*_integers(pa.int64()), None], pa.int64()),
    i64_full=_cycle(_integers(pa.int64()), pa.int64()),
    i16=_cycle([*_integers(pa.int16()), None], pa.int16()),
    i16_full=_cycle(_integers(pa.int16()), pa.int16()),
    u8=_cycle(_integers(pa.uint8()), pa.uint8()),
    f64=_cycle([math.nan, math.inf, -math.inf, -0.0, 0.0, 16.0, 16.000001, None, 2.5e-300], pa.float64()),
    f64_full=_cycle([0.0, 1.5, 16.0, 17.0, -3.25], pa.float64()),
    flag=_cycle([True, False, None], pa.bool_()),
    flag_full=_cycle([True, False], pa.bool_()),
    day=_cycle([date(2025, 3, 1), None, date(1, 1, 1), date(9999, 12, 31)], pa.date32()),
    day_b=_cycle(
        [date(2025, 3, 1), date(2025, 3, 2), None, date(2024, 1, 1), date(9999, 12, 31)], pa.date32()
    ),
    day_full=_cycle([date(2025, 3, 1), date(2020, 1, 1)], pa.date32()),
    at=_cycle([datetime(2025, 3, 1, 12), None, datetime(1970, 1, 1)], pa.timestamp("us")),
    at_b=_cycle([datetime(2025, 3, 1, 11), datetime(2025, 3, 1, 12), None], pa.timestamp("us")),
    at_utc=_cycle([datetime(2025, 3, 1, 12, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
    blob=_cycle([b"%PDF", None, b""], pa.binary()),
    nothing=pa.nulls(N, pa.string()),
    empty_ints=pa.nulls(N, pa.int32()),
)
"""One hostile column of each kind the gates meet, and some they do not."""

TEXT_COLUMNS = ["text", "big_text", "codes", "nothing"]
NUMBER_COLUMNS = ["i64", "i64_full", "i16", "i16_full", "u8", "f64", "f64_full", "empty_ints"]
PATTERNS = [
    "^[A-Z]{2}$", "^[0-9]{5}(?:-[0-9]{4})?$", r"^\+[1-9][0-9]{7,14}$", "^[0-9]{10}$",
    "^(?:[0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$", r"^[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$",
    "AB", "B$", "^$", r"^\d+$", r"\s", r"^\w+$", "^(?=P)", "(?i)^pt$", "^.$", "^[^0-9]+$", r"\Z", "[Ä-Ω]",
    r"^(a|ab)\1$", "^P{1,2000}$",
]  # fmt: skip
TYPE_LISTS = [
    ["int", "int64"], ["int", "int16", "int64"], ["int", "int32", "int64"], ["str", "StringDtype"],
    ["date"], ["datetime64[us]", "datetime64[ns]", "Timestamp"], ["bool"], ["float", "float64"],
    ["int16"], ["object"], ["string"], ["BooleanDtype"], ["Int64"], ["DatetimeTZDtype"], ["None"],
    ["nonsense"], [],
]  # fmt: skip


def _hand_checks(*, type_lists: bool) -> list[Check]:
    columns = HOSTILE.column_names
    out = [_check("ExpectColumnValuesToNotBeNull", column=c) for c in columns]
    out += [_check("ExpectColumnValuesToBeNull", column=c) for c in columns]
    out += [_check("ExpectColumnValuesToBeUnique", column=c) for c in columns]
    out += [
        _check("ExpectColumnValuesToMatchRegex", column=c, regex=p) for c in TEXT_COLUMNS for p in PATTERNS
    ]
    out += [_check("ExpectColumnValuesToMatchRegex", column="i64", regex="^[0-9]+$")]
    if type_lists:  # a pandas dtype depends on the rows through NULLs only: not needed on every slice
        out += [
            _check("ExpectColumnValuesToBeInTypeList", column=c, type_list=t)
            for c in columns
            for t in TYPE_LISTS
        ]
    for c in NUMBER_COLUMNS:
        for bounds in [
            {"min_value": 0},
            {"max_value": 16},
            {"min_value": 0, "max_value": 16},
            {"min_value": 0, "max_value": 16, "strict_min": True},
            {"min_value": 0, "max_value": 16, "strict_max": True},
            {"min_value": -1, "max_value": 1, "strict_min": True, "strict_max": True},
            {"min_value": 0.5, "max_value": 16.5},
            {"min_value": 2**62, "max_value": 2**63 - 1},
            {"min_value": 5, "max_value": 1},
        ]:
            out.append(_check("ExpectColumnValuesToBeBetween", column=c, **bounds))
    for c, sets in {
        "codes": [["PT", "PTA", "DPT"], ["PT\n"], [""], [1, 2]],
        "text": [_TEXT[:5], ["ÄB", "𝔸𝔹"]],
        "i64": [[0, 1, 16], [0.0, 16.5], [True]],
        "i16_full": [[0, -1, 32767], [2**40]],
        "u8": [[0, 255]],
        "flag": [[True], [False, True], [1]],
        "flag_full": [[True]],
        "f64": [[0, 16]],
        "day": [["2025-03-01"]],
    }.items():
        out += [_check("ExpectColumnValuesToBeInSet", column=c, value_set=s) for s in sets]
    for a, b in [("day", "day_b"), ("at", "at_b"), ("i64", "i16"), ("i16_full", "u8"), ("f64", "f64_full"),
                 ("text", "codes"), ("day", "at"), ("i64", "f64")]:  # fmt: skip
        for or_equal in (True, False):
            out.append(
                _check(
                    "ExpectColumnPairValuesAToBeGreaterThanB",
                    column_A=a,
                    column_B=b,
                    or_equal=or_equal,
                    ignore_row_if="either_value_is_missing",
                )
            )
    out += [
        _check("ExpectColumnToExist", column="text"),
        _check("ExpectColumnToExist", column="absent"),
        _check("ExpectTableColumnsToMatchSet", column_set=columns, exact_match=True),
        _check("ExpectTableColumnsToMatchSet", column_set=columns[:-1], exact_match=True),
        _check("ExpectTableColumnsToMatchSet", column_set=[*columns, "absent"], exact_match=True),
        _check("ExpectColumnValuesToNotBeNull", column="absent"),
    ]
    return out


@pytest.mark.parametrize(
    ("rows", "id_column", "type_lists"),
    [
        (slice(0, N), "id", True),
        (slice(0, 0), "int_id", True),
        (slice(5, 6), "id", False),
        (slice(3, 20), "int_id", True),
    ],
    ids=["all", "none", "one", "some"],
)
def test_hand_made_rules_count_as_gx_on_hostile_columns(
    gx: Gx, rows: slice, id_column: str, type_lists: bool
) -> None:
    checks = _hand_checks(type_lists=type_lists)
    part = HOSTILE.slice(rows.start, rows.stop - rows.start)
    done, left = _compare(gx, _suite(checks), checks, part, part.column_names, id_column)
    # left to GX: what raises in GX (a missing column, bounds the wrong way round, an unknown type
    # name), and the types the catalog never checks that way (a boolean key, a float code set, …)
    assert done > 2 * len(left)


def test_regex_patterns_are_sorted_into_re2_and_python() -> None:
    safe = [p for p in PATTERNS if arrow_eval.re2_matches_python(p)]
    assert safe == PATTERNS[:9]  # the catalog's formats and plain literals; \d, \s, \w, lookarounds not


# --- the gates end to end: Arrow or GX alone, the same report ------------------------------------


def _report(out: Path, gate: str) -> list[dict[str, Any]]:
    return json.loads((out / f"gate_{gate}.json").read_text())["results"]


@pytest.mark.parametrize("gate", ["extract", "mapped"])
def test_a_gate_reports_the_same_computed_in_arrow_or_by_gx_alone(
    clinic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gate: Gate
) -> None:
    with contextlib.suppress(runner.GateFailed):
        runner.run_gate(gate, store_url=clinic, run_id=RUN, target_url=None, out_dir=tmp_path / "arrow")
    monkeypatch.setattr(arrow_eval, "RULES", {})
    with contextlib.suppress(runner.GateFailed):
        runner.run_gate(gate, store_url=clinic, run_id=RUN, target_url=None, out_dir=tmp_path / "gx")
    arrow, alone = _report(tmp_path / "arrow", gate), _report(tmp_path / "gx", gate)
    assert arrow == alone
    if gate == "mapped":  # the simulator's planted defects are found (its extract is clean)
        assert any(r["unexpected_count"] for r in arrow)


def test_gx_is_not_called_for_a_part_whose_checks_all_run_in_arrow(
    clinic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any) -> None:
        raise AssertionError("GX asked to compute")

    monkeypatch.setattr(runner._GxParts, "validate", refuse)
    with contextlib.suppress(runner.GateFailed):
        runner.run_gate("mapped", store_url=clinic, run_id=RUN, target_url=None, out_dir=tmp_path)
    assert _report(tmp_path, "mapped")


def test_a_check_arrow_leaves_is_validated_by_gx_alone_with_the_same_result(
    clinic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with contextlib.suppress(runner.GateFailed):
        runner.run_gate("mapped", store_url=clinic, run_id=RUN, target_url=None, out_dir=tmp_path / "arrow")
    asked: list[frozenset[str]] = []
    validate = runner._GxParts.validate

    def spy(self: Any, frame: Any, names: frozenset[str]) -> Any:
        asked.append(names)
        return validate(self, frame, names)

    monkeypatch.setattr(runner._GxParts, "validate", spy)
    rules = dict(arrow_eval.RULES)
    del rules["ExpectColumnValuesToMatchRegex"], rules["ExpectTableColumnsToMatchSet"]
    monkeypatch.setattr(arrow_eval, "RULES", rules)
    with contextlib.suppress(runner.GateFailed):
        runner.run_gate("mapped", store_url=clinic, run_id=RUN, target_url=None, out_dir=tmp_path / "mixed")
    assert _report(tmp_path / "arrow", "mapped") == _report(tmp_path / "mixed", "mapped")
    assert asked
    assert all(n.endswith((".format", ".columns")) for names in asked for n in names)


def test_the_module_examples() -> None:
    import doctest

    failures, tried = doctest.testmod(arrow_eval)
    assert (failures, tried > 0) == (0, True)
