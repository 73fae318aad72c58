"""The Parquet gates' expectations computed in Arrow, counted exactly as GX's pandas engine counts them.

GX stays what defines a gate (the suites) and what records it (the results store, the data docs);
only the arithmetic moves. GX's pandas engine costs about 6-9 ms per expectation and part of fixed
cost whatever the part holds. On a simulated clinic of 1.1M legacy rows (10,000 patients, seed 17),
the extract and mapped gates' computation (their ``table_seconds``: reading the parts included)
took 2.6 and 6.0 s by GX, 0.5 and 1.2 s here, with the same results (median of three runs, each in
a fresh process, load average 5-7 on 2 cores); the whole gate task, GX's context, suites, results
store and data docs included, went from 5.5 to 3.9 s and from 10.2 to 4.3 s.

:func:`evaluate` answers one :class:`~cutover.validation.catalog.Check` on one staged part with
what the runner adds to its tally from GX's result: :class:`Counted` for a row rule (the rows it
applied to, the rows that failed and the ids of the first failing rows), :class:`Verdict` for a
rule on the part as a whole (its columns, or a column's pandas dtype), or ``None`` where this
module cannot promise GX's answer (an expectation type, an argument or a column type it does not
cover, or a case where GX would raise): the runner then asks GX, as before.

What "exactly" means, rule by rule, is what GX 1.x does on the frame the runner gives it
(:func:`pandas_column`): a value is missing where pandas says so (NULL, and NaN in a float column);
a map rule applies to the rows not missing (``element_count - missing_count``), except
not-null/null rules, which apply to every row; the failing ids are the id column's values of the
first ten failing rows in row order, as text (GX's ``partial_unexpected_index_list``, which the
runner then narrows to distinct ids). ``tests/unit/test_arrow_eval.py`` holds every rule of the
catalog to GX's own result on hostile parts and on a simulated clinic.

>>> import pyarrow as pa
>>> from cutover.validation.catalog import Check
>>> part = Part(pa.table({"id": [1, 2, 3], "units": [1, None, 40]}), id_column="id")
>>> rule = Check("mapped", "procedures", "n", "ExpectColumnValuesToBeBetween",
...              {"column": "units", "min_value": 0, "max_value": 16}, "why")
>>> evaluate(rule, part)
Counted(elements=2, unexpected=1, ids=('3',))
"""

from __future__ import annotations

import datetime
import re
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cutover.validation.catalog import Check

MAX_IDS = 10
"""Failing rows whose ids one part reports (GX's ``partial_unexpected_count`` in the runner)."""

Column: TypeAlias = pa.Array | pa.ChunkedArray


@dataclass(frozen=True)
class Counted:
    """One part's counts of a row rule, as GX's result gives them to the runner's tally."""

    elements: int
    """Rows the rule applies to (GX's ``element_count - missing_count``)."""
    unexpected: int
    ids: tuple[str, ...]
    """Id column of the first failing rows, in row order, as text (not yet distinct)."""


@dataclass(frozen=True)
class Verdict:
    """A rule on the part as a whole (its columns, a column's dtype): whether GX would say it holds."""

    success: bool


Outcome = Counted | Verdict


@dataclass(frozen=True)
class Part:
    """One staged part as the gate reads it (:func:`cutover.validation.runner._read`)."""

    table: pa.Table
    id_column: str
    columns: tuple[str, ...] = ()
    """The columns of the frame GX would see (the part's own, then the derived ``check__*``); default:
    the table's."""
    derived: Mapping[str, Column] = field(default_factory=dict)
    """Derived boolean columns by name (:data:`cutover.validation.catalog.DERIVED`)."""
    max_ids: int = MAX_IDS
    settled: frozenset[str] = frozenset()
    """Uniqueness checks whose duplicates the caller counts over every part itself (the runner, by
    hash, :func:`cutover.validation.runner._settle_duplicates`): of those only the rows the rule
    applies to are counted here; a part's own duplicates would be thrown away."""

    def column(self, name: str) -> Column | None:
        if name in self.derived:
            return self.derived[name]
        return self.table[name] if name in self.table.column_names else None

    @property
    def frame_columns(self) -> tuple[str, ...]:
        return self.columns or (*self.table.column_names, *self.derived)


# --- the frame GX sees ---------------------------------------------------------------------------


def pandas_column(values: Column) -> Any:
    """One checked column as GX's pandas engine reads it fastest without changing what a check means.

    GX checks a column's type once when the column has a pandas dtype, and each value's Python type
    when it holds Python objects; it compares ranges vectorised on int64 and float64 only.

    - text: pandas' string dtype (Arrow-backed, ``StringDtype`` in the suites' type lists): nulls,
      code sets, patterns and duplicates are found in Arrow, not one Python call per value;
    - integers and booleans without NULLs: numpy (int16 and int32 widened to int64, which every
      integer type list names); with NULLs: Python objects, type-checked value by value;
    - dates: ``datetime.date`` objects (GX's ``date`` is a Python type);
    - binary: whether a value is there, never the bytes.
    """
    import pandas as pd

    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return values.to_pandas(types_mapper=lambda _: pd.StringDtype())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pc.if_else(pc.is_valid(values), True, pa.scalar(None, pa.bool_())).to_pandas()
    if pa.types.is_integer(kind) and not values.null_count:
        return values.to_pandas().astype("int64")
    return values.to_pandas(integer_object_nulls=True, date_as_object=True)


def _chunked(values: Column) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values], values.type)


def _sample(values: Column) -> pa.ChunkedArray:
    """At most two rows of ``values``: its first value, and a NULL if it holds any. Converted by
    :func:`pandas_column`, they get the column's pandas dtype and the Python type of its values
    (uniform for the Arrow types :func:`_in_type_list` accepts)."""
    column = _chunked(values)
    chunks = list(column.filter(pc.is_valid(column)).slice(0, 1).chunks)
    if column.null_count:
        chunks.append(pa.nulls(1, column.type))
    return pa.chunked_array(chunks, column.type)


def _is_float(kind: pa.DataType) -> bool:
    return bool(pa.types.is_floating(kind))


def _missing(values: Column) -> np.ndarray:
    """Where pandas sees a missing value (``isnull``): NULL, and NaN in a float column."""
    nulls = pc.is_null(values, nan_is_null=_is_float(values.type))
    return np.asarray(nulls.to_numpy(zero_copy_only=False), dtype=bool)


def _flags(values: Column) -> np.ndarray:
    """A boolean Arrow result as numpy, NULL read as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _ids(part: Part, failing: np.ndarray) -> tuple[str, ...]:
    """The id column's values of the first failing rows, as GX gives them (``str`` of the frame's value)."""
    rows = np.flatnonzero(failing)[: part.max_ids]
    if not rows.size:
        return ()
    ids = part.table[part.id_column].take(pa.array(rows, pa.int64()))
    return tuple(str(v) for v in pandas_column(ids))


def _counted(part: Part, failing: np.ndarray, elements: int) -> Counted:
    return Counted(elements=elements, unexpected=int(failing.sum()), ids=_ids(part, failing))


def _kwargs(check: Check, required: set[str], optional: Collection[str] = ()) -> dict[str, Any] | None:
    """The check's arguments when they are exactly the ones a rule here understands, else None."""
    keys = set(check.kwargs)
    return dict(check.kwargs) if required <= keys <= required | set(optional) else None


def _target(check: Check, part: Part) -> Column | None:
    """The checked column, or None where GX would not find it (GX raises: left to GX)."""
    if part.id_column not in part.table.column_names:
        return None
    return part.column(str(check.kwargs["column"]))


# --- one rule per expectation type ---------------------------------------------------------------

Rule = Callable[[Check, Part], Outcome | None]


def _not_null(check: Check, part: Part) -> Outcome | None:
    """Every row counts; a missing value fails (GX reports no missing count for this rule)."""
    if _kwargs(check, {"column"}) is None or (values := _target(check, part)) is None:
        return None
    return _counted(part, _missing(values), len(values))


def _null(check: Check, part: Part) -> Outcome | None:
    """Every row counts; a present value fails."""
    if _kwargs(check, {"column"}) is None or (values := _target(check, part)) is None:
        return None
    return _counted(part, ~_missing(values), len(values))


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _in_set(check: Check, part: Part) -> Outcome | None:
    """pandas ``isin`` on text against text, on integers against integers, on booleans against booleans."""
    kwargs = _kwargs(check, {"column", "value_set"})
    if kwargs is None or (values := _target(check, part)) is None:
        return None
    wanted = kwargs["value_set"]
    if not isinstance(wanted, list | tuple) or not wanted:
        return None
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        ok = all(type(v) is str for v in wanted)
    elif pa.types.is_integer(kind):
        ok = all(_plain_int(v) for v in wanted)
    elif pa.types.is_boolean(kind):
        ok = all(type(v) is bool for v in wanted)
    else:
        ok = False
    if not ok:
        return None
    missing = _missing(values)
    if pa.types.is_integer(kind):
        # the column's own type may not hold every member: compare as int64 (a cast of the column
        # never overflows, a member out of its range simply matches nothing)
        if pa.types.is_uint64(kind):
            return None
        column, members = pc.cast(values, pa.int64()), pa.array(wanted, pa.int64())
    else:
        column, members = values, pa.array(wanted, kind)
    found = _flags(pc.is_in(column, value_set=members))
    return _counted(part, ~missing & ~found, int((~missing).sum()))


def _number(value: Any, *, integer: bool) -> bool:
    if value is None:
        return True
    if integer:
        return _plain_int(value)
    return _plain_int(value) or (isinstance(value, float) and not np.isnan(value))


def _between(check: Check, part: Part) -> Outcome | None:
    """Numbers within ``min_value``/``max_value`` (``strict_*`` exclusive); missing values do not count.

    Integer columns against integer bounds (exact in Arrow and in pandas) and float64 columns
    against integer or float bounds; every other combination (a float bound on integers, which
    pandas compares as Python objects or as float64 depending on NULLs, text, dates) is left to GX.
    """
    kwargs = _kwargs(check, {"column"}, {"min_value", "max_value", "strict_min", "strict_max"})
    if kwargs is None or (values := _target(check, part)) is None:
        return None
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    strict_low, strict_high = kwargs.get("strict_min"), kwargs.get("strict_max")
    kind = values.type
    integer = pa.types.is_integer(kind) and not pa.types.is_uint64(kind)
    if not (integer or pa.types.is_float64(kind)):
        return None
    if not (_number(low, integer=integer) and _number(high, integer=integer)):
        return None
    if (low is None and high is None) or (low is not None and high is not None and low > high):
        return None  # GX raises
    if any(flag not in (None, True, False) for flag in (strict_low, strict_high)):
        return None
    if integer:
        column = pc.cast(values, pa.int64())
    else:  # numpy compares a float64 column with an int bound as float64 (NEP 50): so does Arrow here
        column = values
        low, high = (None if v is None else float(v) for v in (low, high))
    inside = np.ones(len(values), dtype=bool)
    if low is not None:
        inside &= _flags((pc.greater if strict_low else pc.greater_equal)(column, low))
    if high is not None:
        inside &= _flags((pc.less if strict_high else pc.less_equal)(column, high))
    missing = _missing(values)
    return _counted(part, ~missing & ~inside, int((~missing).sum()))


# GX matches a pattern with pandas' ``str.contains`` on the text, which for Arrow-backed strings calls
# RE2 unless the pattern needs Python's ``re`` to mean what it says (pandas decides per pattern and,
# for ``$``, on whether a value holds a newline). Python's ``re`` and RE2 agree on a pattern built
# only of ASCII literals, ASCII classes and ranges, counted repeats (up to RE2's 1000), groups and
# alternatives, anchored by ``^`` and ``$``, except that Python's ``$`` also matches before a final
# newline: such a pattern is matched by RE2 here, and the values holding a newline by ``re``. Any
# other pattern is matched by pandas itself, on the part's distinct values, as GX would match it.
_SAFE_REPEAT = 1000  # RE2's largest counted repetition


def _re2_safe(items: Any) -> bool:
    from re import _constants as c  # type: ignore[attr-defined]

    for op, arg in items:
        if op is c.LITERAL:
            if not 0x20 <= arg < 0x7F:
                return False
        elif op is c.IN:
            for inner, value in arg:
                if inner is c.LITERAL and 0x20 <= value < 0x7F:
                    continue
                if inner is c.RANGE and 0x20 <= value[0] <= value[1] < 0x7F:
                    continue
                return False
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, high, sub = arg
            if (high is not c.MAXREPEAT and high > _SAFE_REPEAT) or low > _SAFE_REPEAT or not _re2_safe(sub):
                return False
        elif op is c.SUBPATTERN:
            _, add_flags, del_flags, sub = arg
            if add_flags or del_flags or not _re2_safe(sub):
                return False
        elif op is c.BRANCH:
            if not all(_re2_safe(sub) for sub in arg[1]):
                return False
        elif op is c.AT:
            if arg not in (c.AT_BEGINNING, c.AT_END):
                return False
        else:
            return False
    return True


def re2_matches_python(pattern: str) -> bool:
    """Whether Arrow's RE2 finds ``pattern`` in a value containing no newline exactly where Python's
    ``re.search`` does.

    >>> re2_matches_python("^[0-9]{5}(?:-[0-9]{4})?$"), re2_matches_python(r"^\\d+$")
    (True, False)
    """
    try:
        from re import _parser  # type: ignore[attr-defined]

        parsed = _parser.parse(pattern)
    except (ImportError, re.error):
        return False
    return not (parsed.state.flags & ~re.UNICODE) and _re2_safe(parsed)


def _distinct(values: Column, match: Callable[[pa.Array], np.ndarray]) -> np.ndarray:
    """``match`` on the distinct values of ``values``, spread back over its rows (NULL: False)."""
    distinct = pc.unique(values.drop_null())
    if not len(distinct):
        return np.zeros(len(values), dtype=bool)
    hits = pa.array(match(distinct), pa.bool_())
    where = pc.index_in(values, value_set=distinct)
    return _flags(pc.take(hits, pc.fill_null(where, 0))) & ~_missing(values)


def _python_search(pattern: str) -> Callable[[pa.Array], np.ndarray]:
    compiled = re.compile(pattern)
    return lambda texts: np.array([compiled.search(v) is not None for v in texts.to_pylist()], dtype=bool)


def _pandas_contains(pattern: str) -> Callable[[pa.Array], np.ndarray]:
    """What GX runs (``column.astype(str).str.contains(regex)``), on the given values."""

    def match(texts: pa.Array) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "has match groups"
            found = pandas_column(texts).astype(str).str.contains(pattern)
        return np.asarray(found.fillna(False), dtype=bool)

    return match


def _match_regex(check: Check, part: Part) -> Outcome | None:
    """Text the pattern is found in (pandas' ``str.contains``, see above); missing values do not count."""
    kwargs = _kwargs(check, {"column", "regex"})
    if kwargs is None or (values := _target(check, part)) is None:
        return None
    pattern = kwargs["regex"]
    if not isinstance(pattern, str) or not (
        pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    ):
        return None
    try:
        re.compile(pattern)
    except re.error:
        return None  # GX raises
    if re2_matches_python(pattern):
        matched = _flags(pc.match_substring_regex(values, pattern))
        newline = _flags(pc.match_substring(values, "\n"))
        if newline.any():
            rows = np.flatnonzero(newline)
            held = _chunked(values).take(pa.array(rows, pa.int64()))
            matched[rows] = _distinct(held, _python_search(pattern))
    else:
        try:
            matched = _distinct(values, _pandas_contains(pattern))
        except Exception:  # RE2 refuses what Python takes ({1,2000}): GX raises, and says so
            return None
    missing = _missing(values)
    return _counted(part, ~missing & ~matched, int((~missing).sum()))


def _ordered_kinds(a: pa.DataType, b: pa.DataType) -> bool:
    """Types pandas compares as Arrow does: integers with integers, or one type of float64, date or timestamp."""
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return not (pa.types.is_uint64(a) or pa.types.is_uint64(b))
    return a == b and (pa.types.is_float64(a) or pa.types.is_date(a) or pa.types.is_timestamp(a))


def _a_greater_than_b(check: Check, part: Part) -> Outcome | None:
    """``A > B`` (``or_equal``: ``A >= B``) on the rows where both are there (``either_value_is_missing``)."""
    kwargs = _kwargs(check, {"column_A", "column_B", "ignore_row_if"}, {"or_equal"})
    if kwargs is None or kwargs["ignore_row_if"] != "either_value_is_missing":
        return None
    if kwargs.get("or_equal") not in (None, True, False) or part.id_column not in part.table.column_names:
        return None
    a, b = part.column(str(kwargs["column_A"])), part.column(str(kwargs["column_B"]))
    if a is None or b is None or not _ordered_kinds(a.type, b.type):
        return None
    if pa.types.is_integer(a.type):
        a, b = pc.cast(a, pa.int64()), pc.cast(b, pa.int64())
    both = ~_missing(a) & ~_missing(b)
    holds = _flags((pc.greater_equal if kwargs.get("or_equal") else pc.greater)(a, b))
    return _counted(part, both & ~holds, int(both.sum()))


def _unique(check: Check, part: Part) -> Outcome | None:
    """Values present more than once in the part (pandas ``duplicated(keep=False)``); missing ones do
    not count. Across parts the runner settles duplicates from hashes, as before."""
    if _kwargs(check, {"column"}) is None or (values := _target(check, part)) is None:
        return None
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
        return None
    missing = _missing(values)
    if check.name in part.settled:
        return Counted(elements=int((~missing).sum()), unexpected=0, ids=())
    counts = pc.value_counts(values.drop_null())
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    failing = (
        ~missing & _flags(pc.is_in(values, value_set=repeated)) if len(repeated) else np.zeros_like(missing)
    )
    return _counted(part, failing, int((~missing).sum()))


# GX 1.x's ExpectColumnValuesToBeInTypeList on pandas: a column with a pandas dtype other than object
# is judged once by its dtype (``_validate_pandas``: the listed names as numpy dtypes and their
# scalar types, pandas classes and extension dtypes, Python types); an object column value by
# value (``column_values.in_type_list``: isinstance of the scalar types, pandas classes, Python
# types). Python types by name, as GX's ``native_type_type_map`` gives them.
_NATIVE: dict[str, tuple[type, ...]] = {
    "none": (type(None),),
    "bool": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (float,),
    "bytes": (bytes,),
    "complex": (complex,),
    "str": (str,),
    "string_types": (str,),
    "list": (list,),
    "dict": (dict,),
}


def _dtype_types(type_list: Sequence[str]) -> list[Any]:
    """What a pandas dtype is compared with (GX's ``_validate_pandas``)."""
    import pandas as pd
    from pandas.api.extensions import ExtensionDtype

    found: list[Any] = []
    for name in type_list:
        try:
            found.append(np.dtype(name).type)
            found.append(np.dtype(name))
        except TypeError:
            pd_type = getattr(pd, name, None)
            if isinstance(pd_type, type):
                found.append(pd_type)
                try:
                    if isinstance(pd_type(), ExtensionDtype):
                        found.append(pd_type())
                except TypeError:
                    pass
            pd_type = getattr(pd.core.dtypes.dtypes, name, None)
            if isinstance(pd_type, type):
                found.append(pd_type)
        found.extend(_NATIVE.get(name.lower(), ()))
    return found


def _value_types(type_list: Sequence[str]) -> tuple[type, ...]:
    """What each value of an object column is an instance of (GX's ``column_values.in_type_list``)."""
    import pandas as pd

    found: list[type] = []
    for name in type_list:
        try:
            found.append(np.dtype(name).type)
        except TypeError:
            for home in (pd, pd.core.dtypes.dtypes):
                pd_type = getattr(home, name, None)
                if isinstance(pd_type, type):
                    found.append(pd_type)
        found.extend(_NATIVE.get(name.lower(), ()))
    return tuple(found)


def _object_kind(kind: pa.DataType) -> bool:
    """Arrow types whose values :func:`pandas_column` turns into one Python type each, when it makes
    an object column of them: integers and booleans with NULLs (int, bool), dates (``datetime.date``)
    and binary presence (bool)."""
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_date(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _in_type_list(check: Check, part: Part) -> Outcome | None:
    kwargs = _kwargs(check, {"column", "type_list"})
    if kwargs is None or (values := _target(check, part)) is None:
        return None
    type_list = kwargs["type_list"]
    if not isinstance(type_list, list | tuple) or not all(isinstance(t, str) for t in type_list):
        return None
    sample = pandas_column(_sample(values))
    if sample.dtype != np.dtype(object):
        return Verdict(success=sample.dtype in _dtype_types(type_list))
    accepted = _value_types(type_list)
    if not accepted or not _object_kind(values.type):
        return None  # GX raises on a list of unknown names; other object columns: GX decides
    missing = _missing(values)
    present = [v for v in sample if v is not None]
    if present and not isinstance(present[0], bool | int | datetime.date):
        return None
    ok = not present or isinstance(present[0], accepted)
    return _counted(part, ~missing if not ok else np.zeros_like(missing), int((~missing).sum()))


def _column_exists(check: Check, part: Part) -> Outcome | None:
    if _kwargs(check, {"column"}) is None:
        return None
    return Verdict(success=check.kwargs["column"] in part.frame_columns)


def _columns_match_set(check: Check, part: Part) -> Outcome | None:
    kwargs = _kwargs(check, {"column_set", "exact_match"})
    if (
        kwargs is None
        or kwargs["exact_match"] is not True
        or not isinstance(kwargs["column_set"], list | tuple)
    ):
        return None
    return Verdict(success=set(part.frame_columns) == set(kwargs["column_set"]))


RULES: dict[str, Rule] = {
    "ExpectColumnValuesToNotBeNull": _not_null,
    "ExpectColumnValuesToBeNull": _null,
    "ExpectColumnValuesToBeInSet": _in_set,
    "ExpectColumnValuesToBeBetween": _between,
    "ExpectColumnValuesToMatchRegex": _match_regex,
    "ExpectColumnPairValuesAToBeGreaterThanB": _a_greater_than_b,
    "ExpectColumnValuesToBeUnique": _unique,
    "ExpectColumnValuesToBeInTypeList": _in_type_list,
    "ExpectColumnToExist": _column_exists,
    "ExpectTableColumnsToMatchSet": _columns_match_set,
}
"""The expectation types computed here, each by one function."""


def evaluate(check: Check, part: Part) -> Outcome | None:
    """``check`` on ``part`` as GX would count it, or None where GX must answer (see the module)."""
    rule = RULES.get(check.expectation)
    return rule(check, part) if rule is not None else None
