"""Profile a legacy table, column by column, the way OHDSI WhiteRabbit scans a source: without showing PHI.

:func:`profile_table` streams the table in Arrow batches (bounded memory) and keeps, per column:
the logical type, rows, NULLs and null-token spellings (``N/A``, ``NULL``, ``''``…, as defined by
:func:`cutover.mapping.normalize.null_tokens`), the distinct count (exact up to a bound, then an
estimate, and which it is), lengths (text), sizes (binary) or the value range (ids), the format
patterns with their counts (see :func:`value_patterns`), and the most frequent values, but only
for the code columns of :mod:`cutover.assess.privacy`, and only values seen at least
:data:`~cutover.assess.privacy.MIN_COUNT` times. PHI columns get patterns and counts, never values.

Work is done once per *distinct* value of a batch (``dictionary_encode``), so a repetitive legacy
column costs what its distinct values cost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.assess.privacy import MIN_COUNT, is_phi, values_shown
from cutover.errors import ConfigError
from cutover.legacy.profile import legacy_tables
from cutover.legacy.schema import ColumnType
from cutover.legacy.source import read_batches
from cutover.mapping.normalize import null_tokens

log = logging.getLogger(__name__)

PATTERN_WIDTH: Final = 40
"""Characters of a value read for its pattern; a longer value's pattern ends with ``…``."""
LETTER_RUN: Final = 4
"""Runs of same-case letters longer than this are shortened to it: names fall into a few patterns."""
TOP_PATTERNS: Final = 12
TOP_VALUES: Final = 15
EXACT_DISTINCT_LIMIT: Final = 1_000_000
"""Distinct counts are exact (64-bit hashes) up to this many values, then a KMV estimate."""
KMV_K: Final = 16_384
"""Hashes kept by the KMV distinct estimate: relative standard error about 1/sqrt(k), 0.8 %."""
MAX_TRACKED: Final = 50_000
"""Patterns or values counted per column; beyond, new ones are counted as "other"."""

DistinctMethod = Literal["exact", "approximate"]
ValuePolicy = Literal["shown", "phi", "key", "id"]
"""``shown``: frequent values listed; ``phi``: never shown; ``key``: the table's key, unique by design;
``id``: ids that lead to a patient, whose frequencies are not listed (see :mod:`cutover.assess.privacy`)."""

_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"%PDF-", "PDF"),
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
    (b"PK\x03\x04", "ZIP/Office"),
    (b"{\\rtf", "RTF"),
)
"""File signatures (magic bytes) that stand in for the pattern of a binary column."""


@dataclass(frozen=True)
class ColumnProfile:
    """What the profile shows of one column. Counts are rows; ``values`` only for allowed columns."""

    column: str
    logical_type: ColumnType
    phi: bool
    rows: int
    nulls: int
    null_tokens: int
    """Non-NULL values that mean "missing" (``N/A``, ``''``…; empty bytes for binary)."""
    distinct: int
    """Distinct non-empty values."""
    distinct_method: DistinctMethod
    values_policy: ValuePolicy
    min_length: int | None = None
    max_length: int | None = None
    mean_length: float | None = None
    """Characters for text, bytes for binary."""
    min_value: int | None = None
    max_value: int | None = None
    patterns: list[tuple[str, int]] = field(default_factory=list)
    """Most frequent patterns of non-empty values with their counts (all counts, rare ones too)."""
    distinct_patterns: int = 0
    other_patterns: int = 0
    """Rows whose pattern is not listed."""
    empty_spellings: list[tuple[str, int]] = field(default_factory=list)
    """How missing values are spelled (``NULL`` for a real NULL), each seen at least MIN_COUNT times."""
    values: list[tuple[str, int]] = field(default_factory=list)
    """Most frequent values, each seen at least MIN_COUNT times; empty unless ``values_policy == 'shown'``."""
    hidden_rare: int = 0
    """Rows whose value was seen fewer than MIN_COUNT times (never shown), for ``shown`` columns."""

    @property
    def empty(self) -> int:
        return self.nulls + self.null_tokens

    @property
    def empty_fraction(self) -> float:
        return self.empty / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["empty_fraction"] = round(self.empty_fraction, 6)
        for name in ("patterns", "empty_spellings"):
            out[name] = [
                {"pattern" if name == "patterns" else "spelling": p, "count": c} for p, c in out[name]
            ]
        out["values"] = [{"value": v, "count": c} for v, c in self.values]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["patterns"] = [(d["pattern"], d["count"]) for d in data.get("patterns", [])]
        data["empty_spellings"] = [(d["spelling"], d["count"]) for d in data.get("empty_spellings", [])]
        data["values"] = [(d["value"], d["count"]) for d in data.get("values", [])]
        return cls(**data)


@dataclass(frozen=True)
class TableProfile:
    """The profile of one legacy table."""

    table: str
    key: str
    rows: int
    columns: list[ColumnProfile]
    batches: int
    seconds: float

    def column(self, name: str) -> ColumnProfile:
        for col in self.columns:
            if col.column == name:
                return col
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": self.key,
            "rows": self.rows,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableProfile:
        return cls(
            table=data["table"],
            key=data["key"],
            rows=data["rows"],
            batches=data["batches"],
            seconds=data["seconds"],
            columns=[ColumnProfile.from_dict(c) for c in data["columns"]],
        )


# --- patterns -----------------------------------------------------------------------------------

_PATTERN_STEPS: Final[tuple[tuple[str, str], ...]] = (
    (r"[\p{Lu}\p{Lt}]", "A"),
    (r"[\p{Ll}\p{Lm}\p{Lo}]", "a"),
    (r"\p{Nd}", "9"),
    (r"[\p{Cc}\p{Cf}]", "^"),
    (rf"A{{{LETTER_RUN + 1},}}", "A" * LETTER_RUN),
    (rf"a{{{LETTER_RUN + 1},}}", "a" * LETTER_RUN),
)


def value_patterns(values: pa.Array) -> pa.Array:
    """The format pattern of each value: upper-case letters -> ``A``, lower-case -> ``a``, digits ->
    ``9``, control characters -> ``^``, punctuation and spaces kept; runs of more than four same-case
    letters shortened to four. Only the first :data:`PATTERN_WIDTH` characters are read (``…`` marks
    the rest). Digits keep their count: a ZIP that lost its zero (``9999``) stands out from ``99999``.

    A pattern carries no letter or digit of the value, so it may be shown for PHI columns. Upper and
    lower case stay apart (unlike WhiteRabbit's ``A`` for every letter) because ``AAAA, AAAA`` versus
    ``Aaaa, Aaaa`` is exactly the all-caps name mess a mapping must handle.

    >>> value_patterns(pa.array(["03/07/2019", "SMITH, JOHN Q", "Smith, John", "0213", None])).to_pylist()
    ['99/99/9999', 'AAAA, AAAA A', 'Aaaaa, Aaaa', '9999', None]
    """
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    out = pc.utf8_slice_codeunits(values, 0, PATTERN_WIDTH)
    for regex, replacement in _PATTERN_STEPS:
        out = pc.replace_substring_regex(out, regex, replacement)
    longer = pc.greater(pc.utf8_length(values), PATTERN_WIDTH)
    return pc.if_else(longer, pc.binary_join_element_wise(out, "…", ""), out)


def _signatures(values: pa.Array) -> pa.Array:
    """A file-type name for each non-empty binary value (``PDF``, ``PNG``…, else ``other``)."""
    out = pa.array(np.full(len(values), "other", dtype=object), pa.string())
    for magic, name in reversed(_SIGNATURES):
        hit = pc.fill_null(pc.starts_with(values, magic), False)
        out = pc.if_else(hit, pa.scalar(name), out)
    return out


# --- accumulators -------------------------------------------------------------------------------


class DistinctCounter:
    """Distinct count over 64-bit hashes: exact up to ``limit`` values, then a k-minimum-values estimate.

    >>> counter = DistinctCounter(limit=1_000, k=256)
    >>> counter.add(np.arange(500, dtype=np.uint64) * 7919)
    >>> counter.count, counter.exact
    (500, True)
    """

    def __init__(self, limit: int, k: int = KMV_K) -> None:
        self.limit = max(limit, k)
        self.k = k
        self.hashes = np.empty(0, dtype=np.uint64)
        self.exact = True

    def add(self, hashes: np.ndarray) -> None:
        if hashes.size == 0:
            return
        if self.exact:
            self.hashes = np.union1d(self.hashes, hashes)
            if self.hashes.size > self.limit:
                self.exact = False
                self.hashes = self.hashes[: self.k]
        else:
            hashes = np.unique(hashes)
            self.hashes = np.union1d(self.hashes, hashes[hashes <= self.hashes[-1]])[: self.k]

    @property
    def count(self) -> int:
        if self.exact:
            return int(self.hashes.size)
        # KMV: the k-th smallest of n uniform hashes sits near k/n of the range
        return round((self.k - 1) / (float(self.hashes[-1]) / 2.0**64))


class _Tally:
    """Counts of labels (patterns or values), bounded: labels beyond ``limit`` go to ``other``."""

    def __init__(self, limit: int = MAX_TRACKED) -> None:
        self.counts: Counter[str] = Counter()
        self.other = 0
        self.limit = limit

    def add(self, labels: list[str], counts: np.ndarray) -> None:
        for label, count in zip(labels, counts.tolist(), strict=True):
            if label in self.counts or len(self.counts) < self.limit:
                self.counts[label] += count
            else:
                self.other += count

    def top(self, n: int, *, min_count: int = 1) -> tuple[list[tuple[str, int]], int]:
        """(the ``n`` most frequent labels seen at least ``min_count`` times, rows of all the others)."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = [(k, v) for k, v in ranked if v >= min_count][:n]
        rest = sum(self.counts.values()) + self.other - sum(v for _, v in shown)
        return shown, rest


def _hashes(values: pa.Array) -> np.ndarray:
    series = pd.Series(values.to_pandas(types_mapper=pd.ArrowDtype))
    return pd.util.hash_pandas_object(series, index=False).to_numpy(dtype=np.uint64)


def _counts(encoded: pa.DictionaryArray) -> np.ndarray:
    """Rows per dictionary entry (NULLs not counted)."""
    idx = pc.drop_null(encoded.indices).to_numpy(zero_copy_only=False)
    return np.bincount(idx, minlength=len(encoded.dictionary)).astype(np.int64)


def _policy(table: str, column: str, kind: ColumnType, *, is_key: bool) -> ValuePolicy:
    if is_key:
        return "key"
    if values_shown(table, column):
        return "shown"
    return "id" if kind == "int" else "phi"


class _Column:
    """Running profile of one column."""

    def __init__(
        self, table: str, column: str, kind: ColumnType, *, is_key: bool, distinct_limit: int
    ) -> None:
        self.column, self.kind = column, kind
        self.phi = is_phi(table, column)
        self.policy = _policy(table, column, kind, is_key=is_key)
        self.rows = self.nulls = self.tokens = 0
        self.distinct = DistinctCounter(distinct_limit)
        self.patterns = _Tally()
        self.spellings = _Tally()
        self.values = _Tally()
        self.min_len: int | None = None
        self.max_len: int | None = None
        self.total_len = 0
        self.min_value: int | None = None
        self.max_value: int | None = None

    def _lengths(self, lengths: np.ndarray, counts: np.ndarray) -> None:
        if lengths.size == 0:
            return
        lo, hi = int(lengths.min()), int(lengths.max())
        self.min_len = lo if self.min_len is None else min(self.min_len, lo)
        self.max_len = hi if self.max_len is None else max(self.max_len, hi)
        self.total_len += int((lengths * counts).sum())

    def add(self, arr: pa.Array) -> None:
        self.rows += len(arr)
        self.nulls += arr.null_count
        if self.kind == "int":
            self._add_ints(arr)
        elif self.kind == "blob":
            self._add_blobs(arr)
        else:
            self._add_text(arr)

    def _add_ints(self, arr: pa.Array) -> None:
        values = pc.drop_null(arr).to_numpy(zero_copy_only=False)
        if values.size == 0:
            return
        lo, hi = int(values.min()), int(values.max())
        self.min_value = lo if self.min_value is None else min(self.min_value, lo)
        self.max_value = hi if self.max_value is None else max(self.max_value, hi)
        uniques, counts = np.unique(values, return_counts=True)
        self.distinct.add(pd.util.hash_array(uniques))
        if self.policy == "shown":
            self.values.add([str(v) for v in uniques.tolist()], counts)

    def _add_blobs(self, arr: pa.Array) -> None:
        encoded = pc.dictionary_encode(arr)
        uniques, counts = encoded.dictionary, _counts(encoded)
        lengths = pc.binary_length(uniques).to_numpy(zero_copy_only=False)
        empty = lengths == 0
        self.tokens += int(counts[empty].sum())
        if empty.any():
            self.spellings.add(["(empty)"], np.array([counts[empty].sum()]))
        keep = np.flatnonzero(~empty)
        uniques, counts, lengths = uniques.take(pa.array(keep)), counts[keep], lengths[keep]
        self._lengths(lengths, counts)
        self.distinct.add(pd.util.hash_array(uniques.to_numpy(zero_copy_only=False)))
        self._add_patterns(_signatures(uniques), counts)

    def _add_text(self, arr: pa.Array) -> None:
        encoded = pc.dictionary_encode(arr)
        uniques, counts = encoded.dictionary, _counts(encoded)
        series = pd.Series(uniques.to_pandas(types_mapper=pd.ArrowDtype))
        token = null_tokens(series).values.isna().to_numpy(dtype=bool)
        if token.any():
            spell = np.flatnonzero(token)
            self.tokens += int(counts[spell].sum())
            # a null token is one of a fixed vocabulary (N/A, NULL, ''): its spelling is no patient's value
            self.spellings.add([repr(s) for s in uniques.take(pa.array(spell)).to_pylist()], counts[spell])
        keep = np.flatnonzero(~token)
        if keep.size < len(uniques):
            uniques, counts = uniques.take(pa.array(keep)), counts[keep]
        if len(uniques) == 0:
            return
        self._lengths(pc.utf8_length(uniques).to_numpy(zero_copy_only=False), counts)
        self.distinct.add(_hashes(uniques))
        self._add_patterns(value_patterns(uniques), counts)
        if self.policy == "shown":
            self.values.add(uniques.to_pylist(), counts)

    def _add_patterns(self, patterns: pa.Array, counts: np.ndarray) -> None:
        grouped = (
            pa.table({"p": patterns, "c": pa.array(counts, pa.int64())})
            .group_by("p")
            .aggregate([("c", "sum")])
        )
        self.patterns.add(grouped["p"].to_pylist(), grouped["c_sum"].to_numpy())

    def result(self) -> ColumnProfile:
        patterns, other_patterns = self.patterns.top(TOP_PATTERNS)
        spellings = (
            [("NULL", self.nulls), *self.spellings.counts.items()]
            if self.nulls
            else list(self.spellings.counts.items())
        )
        spellings = sorted(((s, c) for s, c in spellings if c >= MIN_COUNT), key=lambda sc: (-sc[1], sc[0]))
        values: list[tuple[str, int]] = []
        hidden = 0
        if self.policy == "shown":
            values, _ = self.values.top(TOP_VALUES, min_count=MIN_COUNT)
            hidden = sum(c for c in self.values.counts.values() if c < MIN_COUNT) + self.values.other
        non_empty = self.rows - self.nulls - self.tokens
        return ColumnProfile(
            column=self.column,
            logical_type=self.kind,
            phi=self.phi,
            rows=self.rows,
            nulls=self.nulls,
            null_tokens=self.tokens,
            distinct=self.distinct.count,
            distinct_method="exact" if self.distinct.exact else "approximate",
            values_policy=self.policy,
            min_length=self.min_len,
            max_length=self.max_len,
            mean_length=round(self.total_len / non_empty, 2) if non_empty and self.kind != "int" else None,
            min_value=self.min_value,
            max_value=self.max_value,
            patterns=patterns,
            distinct_patterns=len(self.patterns.counts) + (1 if self.patterns.other else 0),
            other_patterns=other_patterns,
            empty_spellings=spellings,
            values=values,
            hidden_rare=hidden,
        )


def profile_table(
    legacy_url: str,
    table: str,
    *,
    batch_rows: int = 50_000,
    distinct_limit: int = EXACT_DISTINCT_LIMIT,
) -> TableProfile:
    """Profile every column of one legacy table, streaming it ``batch_rows`` rows at a time.

    ``distinct_limit``: distinct counts are exact up to this many values per column, then estimated
    (``distinct_method`` says which).

    >>> import tempfile, os
    >>> from cutover.simulate import simulate
    >>> path = os.path.join(tempfile.mkdtemp(), "legacy.db")
    >>> _ = simulate(f"sqlite:///{path}", patients=40, seed=1)
    >>> p = profile_table(f"sqlite:///{path}", "patients")
    >>> sex = p.column("sex")
    >>> sex.values_policy, sex.values[0][0] in {"M", "F"}, p.column("pat_name").values
    ('shown', True, [])
    """
    spec = legacy_tables().get(table)
    if spec is None:
        raise ConfigError(f"assess: {table!r} is not a legacy table")
    started = time.perf_counter()
    columns = [
        _Column(table, name, kind, is_key=name == spec.key, distinct_limit=distinct_limit)
        for name, kind in spec.columns
    ]
    batches = rows = 0
    for batch in read_batches(legacy_url, spec.source_name, spec.columns, spec.key, batch_rows=batch_rows):
        batches += 1
        rows += batch.num_rows
        for acc, arr in zip(columns, batch.columns, strict=True):
            acc.add(arr)
    seconds = time.perf_counter() - started
    log.info(
        "profiled %s: %d rows, %d columns, %d batches, %.2fs", table, rows, len(columns), batches, seconds
    )
    return TableProfile(
        table=table,
        key=spec.key,
        rows=rows,
        columns=[acc.result() for acc in columns],
        batches=batches,
        seconds=seconds,
    )
