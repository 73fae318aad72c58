"""Run one validation gate: GX Core suites over the staged Parquet (streamed) or the target (in SQL).

The extract and mapped gates validate part by part: of each staged part only the columns the
suite reads are decoded (an attachment only as whether a value is there, a few thousand rows at a
time); every other column becomes an all-NULL column of the same name, so the column-set checks
still see it. The part is validated, its counts added up, and it is let go before the next is
read, so memory holds one part at a time whatever the size of the table. Each check of a part is
computed in Arrow (:mod:`cutover.validation.arrow_eval`), counted exactly as GX's pandas engine
would count it on the frame of :func:`_frame`; a check Arrow cannot promise that for is validated
by GX on that frame (a suite of those checks alone), and a part with none never reaches GX. GX's
fixed cost per expectation and part is gone (a 1.1M-row clinic's extract and mapped gates: 2.6 and
6.0 s of computation by GX, 0.5 and 1.2 s in Arrow, the measurement in :mod:`~cutover.validation.arrow_eval`).
GX remains the definition (the suites) and the record (the results store and data docs). Key uniqueness
across parts is settled from a 64-bit hash per key (8 bytes a row): only the keys whose hash
repeats are read back and counted exactly (:func:`_settle_duplicates`). The mapped gate checks
only rows that will load (``reason`` and ``merge_into`` NULL). The
target gate is computed by PostgreSQL, one statement per table that evaluates its rules once and
returns counts and up to ten failing ids per rule (:func:`~cutover.validation.target_rules.count_query`,
where the measurement is); GX records it as it records the Parquet gates.

Fixed cost per gate task: the suites go into GX's context as the JSON GX reads (:func:`_add_suites`);
the GX import is paid once per worker process where the worker preloads
:mod:`cutover.validation.preload`.

PHI: GX is asked for ids only (``unexpected_index_column_names`` with
``exclude_unexpected_values``), and its raw results never leave memory. What is stored, rendered
into data docs and written as JSON is rebuilt from a whitelist: counts, shares and at most ten
record ids per expectation. The unexpected-value column of the data docs reads ``withheld``; an
observed value (a column's minimum, a type name, a column list) is never copied. Expectation
arguments are code sets, formats and ranges from the catalog, never a patient value.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cutover.errors import IntegrityError, TerminalError, TransientError
from cutover.legacy.profile import legacy_tables, mapping_specs
from cutover.pipeline import run_key
from cutover.staging.parquet import PartInfo, StageManifest, read_manifest
from cutover.staging.store import Store, open_store
from cutover.validation.arrow_eval import Counted, Outcome, Part, evaluate, pandas_column
from cutover.validation.catalog import DERIVED, GATES, Check, Gate, catalog
from cutover.validation.config import Severity, policy
from cutover.validation.suites import description, suite_document, suite_name

log = logging.getLogger(__name__)

# GX logs every function it registers as it is imported (214 of a gate task's 227 log lines): keep
# its warnings only, set before any GX import of the process (here, not where GX is first used)
logging.getLogger("great_expectations").setLevel(logging.WARNING)

MAX_IDS = 10
"""Failing record ids kept per expectation."""
WITHHELD = "withheld"
"""What the data docs show in place of an unexpected value."""
DOCS_SITE = "cutover"
"""The GX data docs site of a gate's folder (``data_docs/``)."""

Status = Literal["ok", "tolerated", "finding", "failed"]
"""One meaning each, counted the same in the gate's log line, its JSON, the report and the data docs:

- ``ok``: no row failed the rule;
- ``tolerated``: some rows failed, no more than the rule's threshold allows (gates.yaml);
- ``finding``: a *warning* rule failed beyond its threshold: reported, first in the report, and
  unsuccessful in the data docs, but it does not stop the run;
- ``failed``: a *fatal* rule failed beyond its threshold, or could not be evaluated: the gate fails.
"""


def status_of(
    severity: Severity, share: float, threshold: float, *, failing: int, evaluated: bool = True
) -> Status:
    """The :data:`Status` of a rule's result.

    >>> status_of("warning", 0.4, 0.05, failing=40), status_of("fatal", 0.01, 0.02, failing=1)
    ('finding', 'tolerated')
    >>> status_of("fatal", 0.4, 0.05, failing=40), status_of("warning", 0.0, 0.0, failing=0)
    ('failed', 'ok')
    """
    if not evaluated:
        return "failed"
    if not failing:
        return "ok"
    if share <= threshold:
        return "tolerated"
    return "failed" if severity == "fatal" else "finding"


class GateFailed(TerminalError):
    """A fatal expectation failed on more rows than its threshold allows; the message holds counts only."""


@dataclass(frozen=True)
class ExpectationResult:
    table: str
    expectation: str
    severity: Severity
    threshold: float
    element_count: int
    """Rows the rule applied to (NULLs excluded where the rule ignores them)."""
    unexpected_count: int
    unexpected_share: float
    failing_ids: tuple[str, ...]
    """Up to ten legacy ids (target gate: legacy ids through the crosswalk, else the target uuid)."""
    dimension: str
    """Kahn data-quality dimension: conformance, completeness or plausibility."""
    evaluated: bool
    """False when GX raised while evaluating it: the gate could not verify the rule, so it fails."""
    status: Status
    """ok, tolerated, finding or failed (:data:`Status`)."""
    rule: str = ""
    """The rule in an auditor's words (:func:`cutover.validation.suites.description`), as the data docs say it."""


@dataclass(frozen=True)
class GateReport:
    gate: Gate
    run_id: str
    passed: bool
    results: tuple[ExpectationResult, ...]
    seconds: float
    data_docs: str
    """Path of the data docs index page."""
    table_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds spent validating each table; the rest of ``seconds`` is the gate's own (GX's context,
    the data docs). The trial run scales the former by table size (:mod:`cutover.sample`)."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["results"] = [{**asdict(r), "failing_ids": list(r.failing_ids)} for r in self.results]
        return out

    @property
    def failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def findings(self) -> list[ExpectationResult]:
        """Warning rules broken beyond their threshold, worst share first."""
        found = [r for r in self.results if r.status == "finding"]
        return sorted(found, key=lambda r: (-r.unexpected_share, -r.unexpected_count, r.table, r.expectation))

    @property
    def tolerated(self) -> list[ExpectationResult]:
        return [r for r in self.results if r.status == "tolerated"]


@dataclass
class _Tally:
    """Counts of one expectation summed over parts."""

    elements: int = 0
    unexpected: int = 0
    ids: list[str] = field(default_factory=list)
    errors: int = 0

    def add_ids(self, ids: list[str]) -> None:
        """Keep the first ten distinct ids (the rows of one legacy record, or a duplicated key, share one)."""
        for i in ids:
            if len(self.ids) < MAX_IDS and i not in self.ids:
                self.ids.append(i)


# --- GX context ----------------------------------------------------------------------------------


def _context(out_dir: Path) -> Any:
    """An in-memory GX context whose only files are the sanitised results store and the data docs.

    Datasources (and the target's credentials) stay in memory; the default temporary docs site
    is not created. The data docs site opens offline (:mod:`cutover.validation.datadocs`).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    from cutover.validation.datadocs import site_config

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={DOCS_SITE: site_config(out_dir / "data_docs")},
    )
    config.stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(out_dir / "results"),
        },
    }
    return gx.get_context(project_config=config, mode="ephemeral")


def _add_suites(ctx: Any) -> None:
    """Every gate's suites into the context's expectations store, so that rebuilding the docs keeps
    the pages of the gates run before (GX's index drops a page whose suite its store lacks).

    Each is stored as the JSON document GX's own file context reads (:func:`~cutover.validation.suites.suite_document`,
    the committed ``expectations/`` files), which GX parses only for the suites it is asked for:
    adding all 54 as GX objects (``ctx.suites.add``, which serialises each through marshmallow)
    took 0.7-0.8 s of every gate task on a quiet machine, this takes about 0.03 s (the mapped gate
    task on a 1.07M-row clinic: 4.6 -> 3.4 s, median of three at load average 3.5-4).
    """
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    store = ctx.expectations_store
    for gate in GATES:
        for table in catalog().by_gate[gate]:
            key = store.key_to_tuple(ExpectationSuiteIdentifier(name=suite_name(gate, table)))
            store.store_backend.set(key, json.dumps(suite_document(gate, table)))


def _result_format(id_column: str) -> dict[str, Any]:
    # SUMMARY: counts and up to partial_unexpected_count failing ids (a LIMIT in the database, a slice in
    # pandas), so a bad batch never streams every failing id into Python; no index query (for pandas it
    # would list every failing index)
    return {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": [id_column],
        "exclude_unexpected_values": True,
        "partial_unexpected_count": MAX_IDS,
        "include_unexpected_rows": False,
        "return_unexpected_index_query": False,
    }


def _validator(definition: Any, id_column: str, **batch_parameters: Any) -> Any:
    """GX's validator of one batch (``validate_expectation_suite``), which gets its batch once.

    GX's ``Batch.validate`` builds the batch a second time: for pandas it hashes the whole frame
    again, for a query asset it materialises the query again.
    """
    from great_expectations.validator.v1_validator import Validator

    return Validator(
        batch_definition=definition,
        batch_parameters=batch_parameters or None,
        result_format=_result_format(id_column),
    )


def _ids(result: dict[str, Any], id_column: str) -> list[str]:
    found: list[str] = []
    for key in ("unexpected_index_list", "partial_unexpected_index_list"):
        for entry in result.get(key) or []:
            if isinstance(entry, dict):
                value = entry.get(id_column)
                found.extend(str(v) for v in (value if isinstance(value, list) else [value]))
        if found:
            break
    return found[:MAX_IDS]


def _exception_class(info: dict[str, Any]) -> str:
    """The exception's class name from GX's traceback text; the message may quote data, so it is dropped."""
    lines = str(info.get("exception_traceback") or "").strip().splitlines()
    return lines[-1].split(":", 1)[0] if lines else "an exception"


def _tally(tallies: dict[str, _Tally], validation: Any, id_column: str) -> None:
    """Add one batch's GX results to the tallies (counts and ids only; nothing else is read)."""
    for r in validation.results:
        name = r.expectation_config.meta["name"]
        tally = tallies.setdefault(name, _Tally())
        if r.exception_info and r.exception_info.get("raised_exception"):
            tally.errors += 1
            tally.elements += 1
            tally.unexpected += 1
            log.error("gate expectation %s raised %s inside GX", name, _exception_class(r.exception_info))
            continue
        result = r.result or {}
        if "unexpected_count" in result:
            tally.elements += int(result.get("element_count") or 0) - int(result.get("missing_count") or 0)
            tally.unexpected += int(result["unexpected_count"] or 0)
            tally.add_ids(_ids(result, id_column))
        else:  # a table-level verdict (or a column's dtype): one element per table, failed by any part
            tally.elements = max(tally.elements, 1)
            tally.unexpected = max(tally.unexpected, 0 if r.success else 1)


# --- Parquet gates -------------------------------------------------------------------------------


def _loadable(table: pa.Table) -> pa.Table:
    """Rows that will become target rows: not rejected by the mapping and not merged into a survivor."""
    return table.filter(pc.and_(pc.is_null(table["reason"]), pc.is_null(table["merge_into"])))


def _referenced(checks: list[Check]) -> set[str]:
    columns = set()
    for c in checks:
        for key in ("column", "column_A", "column_B"):
            if key in c.kwargs:
                columns.add(str(c.kwargs[key]))
    return columns


_column = pandas_column
"""One checked column as GX's pandas engine reads it (:func:`cutover.validation.arrow_eval.pandas_column`)."""


def _derived(table: pa.Table, checks: list[Check]) -> dict[str, pa.Array]:
    """The derived ``check__*`` columns of ``checks`` on ``table``, by name."""
    return {str(c.kwargs["column"]): DERIVED[c.derived](table) for c in checks if c.derived}


def _frame(
    table: pa.Table,
    checks: list[Check],
    id_column: str,
    names: list[str] | None = None,
    derived: dict[str, pa.Array] | None = None,
) -> Any:
    """The pandas frame GX validates: the checked columns (see :func:`_column`) and derived checks
    (``derived``: already computed); every other column of ``names`` (default: the table's) an
    all-NULL placeholder of the same name, for the column-set check, whether or not ``table`` holds it."""
    import pandas as pd

    needed = _referenced(checks) | {id_column}
    placeholder = np.full(table.num_rows, np.nan)
    columns: dict[str, Any] = {
        name: _column(table[name]) if name in needed else placeholder
        for name in (table.column_names if names is None else names)
    }
    for name, flags in (_derived(table, checks) if derived is None else derived).items():
        columns[name] = flags.to_pandas(types_mapper=lambda _: pd.BooleanDtype())
    return pd.DataFrame(columns)


def _read(
    store: Store,
    part: PartInfo,
    *,
    columns: list[str] | None = None,
    whole: Collection[str] = (),
    typed: Collection[str] = (),
) -> tuple[pa.Table, list[str]]:
    """One staged part, verified against its manifest, decoded only as far as the gate needs it,
    and the names of all its columns.

    ``columns``: the columns decoded, those the part has (default: every one). A binary column
    (an attachment) not named in ``whole`` arrives as whether a value is there (``True`` or NULL,
    what :func:`_column` makes of it), decoded a few thousand rows at a time, so it is never held
    whole. A text column named in ``typed`` (only its type is checked, which for pandas' string
    dtype GX reads from the dtype, never the values) is not decoded: it arrives all NULL.
    """
    parquet = pq.ParquetFile(pa.BufferReader(pa.py_buffer(store.get(part["key"], sha256=part["sha256"]))))
    if parquet.metadata.num_rows != part["rows"]:
        raise IntegrityError(
            f"staged part {part['key']} has {parquet.metadata.num_rows} rows, manifest says {part['rows']}"
        )
    schema = parquet.schema_arrow
    names = schema.names if columns is None else [n for n in columns if n in schema.names]
    kinds = {n: schema.field(n).type for n in names}
    present = {
        n
        for n in names
        if n not in whole and (pa.types.is_binary(kinds[n]) or pa.types.is_large_binary(kinds[n]))
    }
    empty = {
        n
        for n in typed
        if n in kinds and (pa.types.is_string(kinds[n]) or pa.types.is_large_string(kinds[n]))
    }
    table = parquet.read(columns=[n for n in names if n not in present | empty])
    for name in sorted(present):
        table = table.append_column(name, _presence(parquet, name))
    for name in sorted(empty):
        table = table.append_column(name, pa.nulls(table.num_rows, kinds[name]))
    return table.select(names), schema.names


_PRESENT_BATCH = 4096
"""Rows of a binary column decoded at a time when only whether a value is there matters."""


def _presence(parquet: pq.ParquetFile, name: str) -> pa.ChunkedArray:
    """Whether each row of a binary column has a value (``True``) or not (NULL).

    A row group whose statistics count no NULL (or only NULLs) is answered from them, undecoded;
    any other is decoded a few thousand rows at a time.
    """
    meta = parquet.metadata
    index = parquet.schema_arrow.get_field_index(name)
    chunks: list[pa.Array] = []
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        stats = meta.row_group(group).column(index).statistics
        nulls = stats.null_count if stats is not None and stats.has_null_count else None
        if nulls == 0:
            chunks.append(pa.array(np.ones(rows, np.bool_)))
        elif nulls == rows:
            chunks.append(pa.nulls(rows, pa.bool_()))
        else:
            batches = parquet.iter_batches(batch_size=_PRESENT_BATCH, row_groups=[group], columns=[name])
            chunks.extend(
                pc.if_else(pc.is_valid(b.column(0)), True, pa.scalar(None, pa.bool_())) for b in batches
            )
    return pa.chunked_array(chunks, pa.bool_())


def _parts(
    store: Store,
    manifest: StageManifest,
    *,
    mapped: bool,
    columns: list[str] | None,
    whole: Collection[str],
    typed: Collection[str],
) -> Iterator[tuple[list[str], pa.Table]]:
    """Each part's column names, and its rows (the mapped gate: loadable ones) as :func:`_read` gives them."""
    for part in manifest["parts"]:
        table, names = _read(store, part, columns=columns, whole=whole, typed=typed)
        if mapped:
            table = _loadable(table)
        yield names, table
        del table  # before the next part is read


def _key_values(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A key column's non-NULL values, in row order."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.drop_null()


_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_BYTE_WEIGHT = np.uint64(0x100000001B3)


def _mix64(h: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: spreads every input bit over the 64 output bits (in place)."""
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(30)
        h *= _MIX[0]
        h ^= h >> np.uint64(27)
        h *= _MIX[1]
        h ^= h >> np.uint64(31)
    return h


def _key_hashes(values: pa.Array) -> np.ndarray:
    """A 64-bit hash (``uint64``, 8 bytes a row) of each key of :func:`_key_values`, in row order.

    Keys are compared as text (an integer key by its value, which is the same); equal keys get
    equal hashes, two different keys rarely do, and :func:`_settle_duplicates` compares the keys
    behind every repeated hash exactly, so a collision never counts as a duplicate.
    """
    if pa.types.is_integer(values.type):
        wide = pa.uint64() if pa.types.is_unsigned_integer(values.type) else pa.int64()
        return _mix64(pc.cast(values, wide).to_numpy().astype(np.uint64))
    text = pc.cast(values, pa.large_string())
    n = len(text)
    if not n:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(text.buffers()[1], np.int64)[text.offset : text.offset + n + 1]
    first = int(offsets[0])
    raw = np.frombuffer(text.buffers()[2] or b"", np.uint8)[first : int(offsets[-1])]
    lengths = np.diff(offsets)
    starts = offsets[:-1] - first
    # a polynomial hash of each key's bytes: byte i of a key is weighted by W**i (mod 2**64)
    weights = np.cumprod(np.full(int(lengths.max()) + 1, _BYTE_WEIGHT, np.uint64)) if raw.size else None
    with np.errstate(over="ignore"):
        sums = np.zeros(n + 1, np.uint64)
        if weights is not None:
            position = np.arange(raw.size, dtype=np.int64) - np.repeat(starts, lengths)
            terms = (raw.astype(np.uint64) + np.uint64(1)) * weights[position]
            cumulative = np.concatenate([np.zeros(1, np.uint64), np.cumsum(terms, dtype=np.uint64)])
            sums[:n] = cumulative[starts + lengths] - cumulative[starts]
        h = sums[:n] ^ (lengths.astype(np.uint64) * _MIX[1])
    return _mix64(h)


def _repeated(hashes: list[np.ndarray]) -> np.ndarray:
    """The hashes that occur more than once over all parts, sorted; empties ``hashes``, whose
    arrays go as soon as they are joined (one copy of 8 bytes a row, sorted in place)."""
    every = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    hashes.clear()
    every.sort()
    return np.unique(every[1:][every[1:] == every[:-1]])


def _settle_duplicates(
    store: Store, manifest: StageManifest, column: str, repeated: np.ndarray, tally: _Tally, *, mapped: bool
) -> None:
    """Replace a per-part uniqueness count by the count over all parts, from the keys whose hash repeats.

    Only those keys are read back (the key column, and what says whether a row loads); they are
    counted exactly, in order of first appearance, so the count and the first ten duplicated keys
    are those of counting every key at once.
    """
    counts: dict[str, int] = {}
    if repeated.size:
        columns = [column, "reason", "merge_into"] if mapped else [column]
        for part in manifest["parts"]:
            table, _ = _read(store, part, columns=list(dict.fromkeys(columns)), whole=[column])
            keys = _key_values((_loadable(table) if mapped else table)[column])
            hashes = _key_hashes(keys)
            found = np.searchsorted(repeated, hashes)
            hit = repeated[np.minimum(found, repeated.size - 1)] == hashes
            if not hit.any():
                continue
            part_counts = pc.value_counts(pc.cast(keys.filter(pa.array(hit)), pa.string()))
            for value, count in zip(
                part_counts.field("values").to_pylist(), part_counts.field("counts").to_pylist(), strict=True
            ):
                counts[value] = counts.get(value, 0) + count
    dup = [value for value, count in counts.items() if count > 1]
    tally.unexpected = sum(counts[value] for value in dup)
    tally.ids = [str(value).split("#")[0] for value in dup[:MAX_IDS]]


def _forget_batch(source: Any) -> None:
    """Let the part just validated by GX go before the next is read.

    The data source's execution engine keeps its last batch (the frame, and the Arrow data it
    wraps) until the next one replaces it, which would hold two parts at once.
    """
    manager = source.get_execution_engine().batch_manager
    manager.batch_data_cache.clear()
    manager.reset_batch_cache()
    _release()


def _release() -> None:
    """Give back what the part just validated freed: Arrow's allocator keeps freed pages for reuse
    unless asked to give them back, and so does the C heap."""
    pa.default_memory_pool().release_unused()
    _trim()


def _trim() -> None:
    """Give the C heap's free pages back to the system (glibc only), so that what one part freed
    does not stay resident under the next."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def _no_frame_fingerprint() -> Iterator[None]:
    """GX's pandas engine hashes every frame it is given, whole, for a batch marker (a fingerprint)
    that no result of ours reads: about a fifth of a Parquet gate's time. Frames below its
    ``HASH_THRESHOLD`` bytes are hashed; with the threshold at 0, none is."""
    from great_expectations.execution_engine import pandas_execution_engine as engine

    if not hasattr(engine, "HASH_THRESHOLD"):  # a GX without the setting: fingerprint as it does
        log.warning("GX has no HASH_THRESHOLD: Parquet gates fingerprint every frame (slower, same results)")
        yield
        return
    saved = engine.HASH_THRESHOLD
    engine.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        engine.HASH_THRESHOLD = saved


def _add(tally: _Tally, outcome: Outcome) -> None:
    """Add one part's Arrow outcome to a tally exactly as :func:`_tally` adds GX's result."""
    if isinstance(outcome, Counted):
        tally.elements += outcome.elements
        tally.unexpected += outcome.unexpected
        tally.add_ids(list(outcome.ids[:MAX_IDS]))
    else:  # a table-level verdict (or a column's dtype): one element per table, failed by any part
        tally.elements = max(tally.elements, 1)
        tally.unexpected = max(tally.unexpected, 0 if outcome.success else 1)


class _GxParts:
    """GX's pandas data source of one table, made when a part first has a check Arrow leaves to GX
    (:mod:`cutover.validation.arrow_eval`), and a suite of those checks only per set of them."""

    def __init__(self, ctx: Any, gate: Gate, table: str, id_column: str) -> None:
        self.ctx, self.gate, self.table, self.id_column = ctx, gate, table, id_column
        self.source: Any = None
        self.definition: Any = None
        self.suites: dict[frozenset[str], Any] = {}

    def validate(self, frame: Any, names: frozenset[str]) -> Any:
        import great_expectations as gx

        if self.source is None:
            self.source = self.ctx.data_sources.add_pandas(f"{self.gate}_{self.table}")
            asset = self.source.add_dataframe_asset(self.table)
            self.definition = asset.add_batch_definition_whole_dataframe("part")
        if names not in self.suites:
            whole = self.ctx.suites.get(suite_name(self.gate, self.table))
            chosen = [e for e in whole.expectations if e.meta["name"] in names]
            self.suites[names] = (
                whole
                if len(chosen) == len(whole.expectations)
                else gx.ExpectationSuite(name=whole.name, expectations=[copy.copy(e) for e in chosen])
            )
        validator = _validator(self.definition, self.id_column, dataframe=frame)
        with _no_frame_fingerprint():
            validation = validator.validate_expectation_suite(self.suites[names])
        _forget_batch(self.source)
        return validation

    def close(self) -> None:
        # the data source's execution engine keeps its last batch (the frame) cached: let it go
        if self.source is not None:
            self.ctx.data_sources.delete(self.source.name)


def _validate_part(
    tallies: dict[str, _Tally],
    part: pa.Table,
    names: list[str],
    checks: list[Check],
    id_column: str,
    gx_parts: _GxParts,
    settled: frozenset[str] = frozenset(),
) -> None:
    """Add one part to the tallies: each check computed in Arrow where
    :func:`~cutover.validation.arrow_eval.evaluate` can (GX's counts exactly), the others by GX on
    the part's frame (GX is not called when none remains). ``settled``: the uniqueness checks whose
    duplicates :func:`_settle_duplicates` counts over all parts afterwards."""
    derived = _derived(part, checks)
    columns = tuple(dict.fromkeys([*names, *derived]))
    arrow = Part(part, id_column, columns, derived, MAX_IDS, settled)
    rest: list[Check] = []
    for c in checks:
        outcome = evaluate(c, arrow)
        if outcome is None:
            log.debug("gate check %s on a part of %s: left to GX", c.name, c.table)
            rest.append(c)
        else:
            _add(tallies.setdefault(c.name, _Tally()), outcome)
    if rest:
        # the frame holds every derived column (a column-set check left to GX sees them all)
        frame = _frame(part, rest, id_column, names, derived)
        validation = gx_parts.validate(frame, frozenset(c.name for c in rest))
        _tally(tallies, validation, id_column)
        del frame, validation


def _reading(
    checks: list[Check], id_column: str, *, mapped: bool
) -> tuple[list[str] | None, set[str], set[str]]:
    """What :func:`_parts` reads of a table's parts for ``checks``: the columns (None: all), those read
    whole, and the text columns whose type alone is checked (not decoded)."""
    unique = [c for c in checks if c.expectation == "ExpectColumnValuesToBeUnique"]
    whole = {id_column} | {str(c.kwargs["column"]) for c in unique}
    # the columns a check reads, and what says whether a row loads; a derived check reads the table
    columns, typed = None, set()
    if not any(c.derived for c in checks):
        columns = sorted(_referenced(checks) | whole | ({"reason", "merge_into"} if mapped else set()))
        typed = _referenced([c for c in checks if c.expectation == "ExpectColumnValuesToBeInTypeList"])
        typed -= (
            _referenced([c for c in checks if c.expectation != "ExpectColumnValuesToBeInTypeList"]) | whole
        )
    return columns, whole, typed


def _validate_parquet(ctx: Any, gate: Gate, table: str, store: Store, run_id: str) -> dict[str, _Tally]:
    checks = catalog().by_gate[gate][table]
    mapped = gate == "mapped"
    id_column = "legacy_id" if mapped else legacy_tables()[table].key
    unique = [c for c in checks if c.expectation == "ExpectColumnValuesToBeUnique"]
    hashes: dict[str, list[np.ndarray]] = {c.name: [] for c in unique}
    tallies: dict[str, _Tally] = {}
    manifest = read_manifest(store, f"runs/{run_key(run_id)}/{gate}/{table}")
    columns, whole, typed = _reading(checks, id_column, mapped=mapped)
    gx_parts = _GxParts(ctx, gate, table, id_column)
    # over several parts a key's duplicates are counted from hashes afterwards, not part by part
    settled = frozenset(c.name for c in unique) if len(manifest["parts"]) > 1 else frozenset()
    try:
        for names, part in _parts(store, manifest, mapped=mapped, columns=columns, whole=whole, typed=typed):
            _validate_part(tallies, part, names, checks, id_column, gx_parts, settled)
            for c in unique:
                hashes[c.name].append(_key_hashes(_key_values(part[str(c.kwargs["column"])])))
            del part
            _release()
    finally:
        gx_parts.close()
    if len(manifest["parts"]) > 1:
        for c in unique:
            repeated = _repeated(hashes.pop(c.name))
            _settle_duplicates(
                store, manifest, str(c.kwargs["column"]), repeated, tallies[c.name], mapped=mapped
            )
    return tallies


# --- target gate ---------------------------------------------------------------------------------


def _connect(target_url: str) -> Any:
    """A session on the target for the gate's statements (autocommit: one failing rule's statement
    does not abort the next table's)."""
    import psycopg

    try:
        return psycopg.connect(target_url, autocommit=True, application_name="cutover target gate")
    except psycopg.Error as exc:  # the message may quote the host and user: never chain it
        raise TransientError(
            f"target gate: cannot reach the target database ({type(exc).__name__})"
        ) from None


def _unreachable(exc: BaseException) -> bool:
    """Whether a database error is about the connection (a retry may help) rather than the query."""
    import psycopg

    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def _validate_target(conn: Any, table: str) -> dict[str, _Tally]:
    """The table's rules computed by PostgreSQL in one statement (:func:`~cutover.validation.target_rules.count_query`):
    per rule the rows it applies to, the rows that break it and up to ten of their target ids, as
    GX's evaluation of the table's suite counts them (``tests/integration/test_target_sql.py``)."""
    from cutover.validation import target_rules

    checks = catalog().by_gate["target"][table]
    try:
        row = conn.execute(target_rules.count_query(table, MAX_IDS)).fetchone()
    except Exception as exc:  # the message quotes the SQL: only the class name is kept
        if conn.broken or _unreachable(exc):
            raise TransientError(
                f"target gate: cannot reach the target database ({type(exc).__name__})"
            ) from None
        log.error("target gate: the rules of %s could not be evaluated (%s)", table, type(exc).__name__)
        return {c.name: _Tally(elements=1, unexpected=1, errors=1) for c in checks}
    if row is None or len(row) != 1 + 3 * len(checks):
        raise IntegrityError(f"target gate: the rules' statement of {table} does not answer every rule")
    return {
        c.name: _Tally(elements=int(applies), unexpected=int(failing), ids=list(ids or ()))
        for c, (applies, failing, ids) in zip(
            checks, (row[i : i + 3] for i in range(1, len(row), 3)), strict=True
        )
    }


def _legacy_ids(conn: Any, tallies: dict[str, dict[str, _Tally]]) -> None:
    """Replace target uuids by legacy ids (crosswalk) in place; one small query for all failing ids."""
    uuids = sorted({i for by_name in tallies.values() for t in by_name.values() for i in t.ids})
    if not uuids:
        return
    rows = conn.execute(
        "SELECT new_id::text, legacy_id FROM migration.crosswalk WHERE new_id = ANY(%s::uuid[])"
        " AND outcome = 'migrated'",
        (uuids,),
    ).fetchall()
    legacy: dict[str, str] = {str(new): str(old) for new, old in rows}
    for by_name in tallies.values():
        for t in by_name.values():
            t.ids = [legacy.get(i, i) for i in t.ids]


def _validate_targets(
    target_url: str, names: list[str], timings: dict[str, float]
) -> dict[str, dict[str, _Tally]]:
    """Every named target table's rules, then their failing ids as legacy ids, on one session."""
    with contextlib.closing(_connect(target_url)) as conn:
        tallies = {t: _timed(timings, t, _validate_target, conn, t) for t in names}
        try:
            _legacy_ids(conn, tallies)
        except Exception as exc:
            if conn.broken or _unreachable(exc):
                raise TransientError(
                    f"target gate: cannot reach the target database ({type(exc).__name__})"
                ) from None
            raise
    return tallies


# --- results, data docs, verdict -----------------------------------------------------------------


def _verdict(check: Check, tally: _Tally) -> ExpectationResult:
    found = policy(check.name)
    share = tally.unexpected / tally.elements if tally.elements else 0.0
    status = status_of(
        found.severity, share, found.threshold, failing=tally.unexpected, evaluated=not tally.errors
    )
    return ExpectationResult(
        table=check.table,
        expectation=check.name,
        severity=found.severity,
        threshold=found.threshold,
        element_count=tally.elements,
        unexpected_count=tally.unexpected,
        unexpected_share=round(share, 6),
        failing_ids=tuple(tally.ids),
        dimension=check.dimension,
        rule=description(check),
        evaluated=not tally.errors,
        status=status,
    )


def _sanitised(check: Check, result: ExpectationResult, id_column: str) -> dict[str, Any]:
    """The only result fields that reach a file: counts, the share and ids, values withheld."""
    if check.table_level:
        return {"observed_value": "as expected" if not result.unexpected_count else "not as expected"}
    if check.expectation == "UnexpectedRowsExpectation":
        # GX's result of this expectation: the rows its query returns, counted (the data docs show
        # this observed value as it is: here the count, the rows the rule applied to, which GX does not
        # count, and the first ids) and (COMPLETE) listed, here by their ids alone
        observed = (
            f"{result.unexpected_count:,} of {result.element_count:,} rows ({result.unexpected_share:.2%})"
        )
        if result.failing_ids:
            observed += f"; {id_column} {', '.join(result.failing_ids)}"
        rows: dict[str, Any] = {
            "observed_value": observed,
            "element_count": result.element_count,
            "unexpected_count": result.unexpected_count,
            "unexpected_percent": round(100 * result.unexpected_share, 4),
        }
        if result.failing_ids:
            rows["details"] = {"unexpected_rows": [{id_column: i} for i in result.failing_ids]}
        return rows
    out: dict[str, Any] = {
        "element_count": result.element_count,
        "unexpected_count": result.unexpected_count,
        "unexpected_percent": round(100 * result.unexpected_share, 4),
        "missing_count": 0,
    }
    if result.unexpected_count:
        out["partial_unexpected_counts"] = [{"value": WITHHELD, "count": result.unexpected_count}]
        out["partial_unexpected_list"] = [WITHHELD]
        if result.failing_ids:
            out["unexpected_index_column_names"] = [id_column]
            out["unexpected_index_list"] = [{"value": WITHHELD, id_column: i} for i in result.failing_ids]
    return out


def _store_for_docs(ctx: Any, gate: Gate, table: str, results: list[ExpectationResult], run_id: str) -> Any:
    """Store one suite's sanitised result for the data docs; returns its key."""
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    name = suite_name(gate, table)
    suite = ctx.suites.get(name)
    checks = {c.name: c for c in catalog().by_gate[gate][table]}
    by_name = {r.expectation: r for r in results}
    entries = []
    for expectation in suite.expectations:
        check = checks[expectation.meta["name"]]
        result = by_name[check.name]
        entries.append(
            ExpectationValidationResult(
                success=result.status in ("ok", "tolerated"),  # a finding is a rule that failed
                expectation_config=expectation.configuration,
                result=_sanitised(check, result, "legacy_id"),
            )
        )
    ok = sum(bool(e.success) for e in entries)
    run = RunIdentifier(run_name=run_key(run_id), run_time=datetime.now(UTC))
    document = ExpectationSuiteValidationResult(
        # the suite's verdict is the gate's (no fatal rule broken); its findings count as unsuccessful
        success=not any(r.status == "failed" for r in results),
        results=entries,
        suite_name=name,
        statistics={
            "evaluated_expectations": len(entries),
            "successful_expectations": ok,
            "unsuccessful_expectations": len(entries) - ok,
            "success_percent": 100.0 * ok / len(entries) if entries else 100.0,
        },
        meta={
            "run_id": run,
            "active_batch_definition": {"datasource_name": gate, "data_asset_name": table},
            "validation_time": run.run_time.isoformat(),
            "fatal_failures": sum(r.status == "failed" for r in results),
            "findings": sum(r.status == "finding" for r in results),
        },
    )
    key = ValidationResultIdentifier(ExpectationSuiteIdentifier(name=name), run, f"{gate}-gate")
    ctx.validation_results_store.set(key, document)
    return key


def _suite_pages(out_dir: Path, gate: Gate) -> list[Any]:
    """The suite pages to render: this gate's, and another gate's where ``out_dir`` does not hold it yet.

    A suite page shows the suite alone, which is generated from the code: the pages an earlier gate of
    the run rendered into the folder are the same pages (rendering all 48 took about a second a gate).
    """
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    pages = out_dir / "data_docs" / "expectations"
    return [
        ExpectationSuiteIdentifier(name=suite_name(g, t))
        for g in GATES
        for t in catalog().by_gate[g]
        if g == gate or not (pages / g / f"{t}.html").exists()
    ]


def _target_tables(tables: list[str] | None) -> list[str]:
    known = list(catalog().by_gate["target"])
    if tables is None:
        return known
    wanted = {mapping_specs()[t].target if t in mapping_specs() else t for t in tables}
    return [t for t in known if t in wanted]


_T = TypeVar("_T")


def _timed(timings: dict[str, float], table: str, validate: Callable[..., _T], *args: Any) -> _T:
    started = time.perf_counter()
    try:
        return validate(*args)
    finally:
        timings[table] = round(time.perf_counter() - started, 3)


def run_gate(
    gate: Gate,
    *,
    store_url: str,
    run_id: str,
    target_url: str | None,
    tables: list[str] | None = None,
    out_dir: Path,
) -> GateReport:
    """Validate one gate of a run; write ``gate_<gate>.json`` and the GX data docs into ``out_dir``.

    ``tables``: legacy tables for the extract and mapped gates (default: every mapped table);
    target or legacy table names for the target gate (default: every table with rules). Raises
    :class:`GateFailed` (after writing the results and docs) when a fatal expectation fails on a
    larger share of rows than its threshold; the message names the gate, expectations, tables and
    counts, never a value.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = _context(out_dir)
    timings: dict[str, float] = {}
    _add_suites(ctx)
    if gate == "target":
        if not target_url:
            raise TerminalError("the target gate needs target_url")
        names = _target_tables(tables)
        tallies = _validate_targets(target_url, names, timings)
    else:
        store = open_store(store_url)
        names = [t for t in catalog().by_gate[gate] if tables is None or t in tables]
        tallies = {t: _timed(timings, t, _validate_parquet, ctx, gate, t, store, run_id) for t in names}
    results: list[ExpectationResult] = []
    keys = []
    for table in names:
        found = [_verdict(c, tallies[table].get(c.name, _Tally())) for c in catalog().by_gate[gate][table]]
        keys.append(_store_for_docs(ctx, gate, table, found, run_id))
        results.extend(found)
    # this gate's result and suite pages are rendered, and the other gates' suite pages the folder lacks;
    # the index lists every gate's suites and results in out_dir
    keys += _suite_pages(out_dir, gate)
    from cutover.validation.datadocs import build_data_docs

    docs = build_data_docs(ctx, DOCS_SITE, out_dir / "data_docs", keys)
    report = GateReport(
        gate=gate,
        run_id=run_id,
        passed=not any(r.status == "failed" for r in results),
        results=tuple(results),
        seconds=round(time.perf_counter() - started, 3),
        data_docs=str(docs),
        table_seconds=timings,
    )
    (out_dir / f"gate_{gate}.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    log.info(
        "%s gate: %d expectations on %d tables, %d failed, %d findings, %d tolerated within threshold, %.1fs",
        gate,
        len(results),
        len(names),
        len(report.failures),
        len(report.findings),
        len(report.tolerated),
        report.seconds,
    )
    if not report.passed:
        detail = "; ".join(
            f"{r.expectation} on {r.table}: {r.unexpected_count}/{r.element_count} rows"
            f" ({r.unexpected_share:.2%} > {r.threshold:.2%})"
            if r.evaluated
            else f"{r.expectation} on {r.table}: could not be evaluated (GX raised; see the log)"
            for r in report.failures
        )
        raise GateFailed(f"{gate} gate failed: {detail}")
    return report
