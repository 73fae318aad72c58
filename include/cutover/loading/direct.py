"""A first load's fast path: a batch resolved in Arrow and written by binary COPY alone.

The general merge (:func:`cutover.loading.load.merge_part`) copies a batch into a temporary
table, resolves its parents by joining the crosswalk, and writes the target, the crosswalk, the
rejects and the flags with INSERT … SELECT, each a pass over the batch on the server. On a first
load (the run's constraints set aside, see :mod:`cutover.loading.bulk`) none of the batch's rows
can exist yet in the target or the ledger, so the same outcome is reached with less work: the
client reads what the ledger holds for the parents the batch refers to (their ids, or that they
were rejected), resolves the references with Arrow hash lookups, and writes each destination with
one binary
COPY of exactly its rows. The server's part is the COPY, the primary keys and the ledger's
single-outcome triggers, as for psql's ``\\copy``.

Exactly the general merge's outcome, or nothing: :func:`merge_direct` runs in the caller's
savepoint, and any refusal (a row that already exists, a CHECK the target holds, a type the
encoder does not know) raises, so the caller rolls it back and merges the batch the general way.
``tests/integration/test_bulk_load.py`` checks that both give the same target and ledger.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from cutover.ids import row_ids
from cutover.lineage import BY_REFERENCE, CASCADE, LINEAGE_COLUMNS, root_of
from cutover.loading.copy import copy_arrow, encodable
from cutover.mapping.engine import Ref, TableSpec

log = logging.getLogger(__name__)

_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)

_UUID = pa.binary(16)


@dataclass(frozen=True)
class Parent:
    """What the ledger holds so far for some legacy ids of a parent table: those in the crosswalk
    with the id a child points to (the survivor's, for a merged row), and those rejected, with the
    root cause of each (:func:`cutover.lineage.root_of`: table, legacy id, reason; NULL where unknown)."""

    keys: pa.Array
    ids: pa.Array
    rejected: pa.Array
    roots: pa.Table | None = None
    """Aligned with ``rejected``: their roots' ``root_table``, ``root_legacy_id``, ``root_reason``
    (None: not read, every root unknown)."""


def _uuids(hex32: pa.Array) -> pa.Array:
    """32-character lower-case hex strings (no NULL) → 16-byte uuids, in numpy."""
    n = len(hex32)
    if n == 0:
        return pa.array([], _UUID)
    offsets = np.frombuffer(hex32.buffers()[1], dtype=np.int32, count=n + 1, offset=hex32.offset * 4)
    if offsets[-1] - offsets[0] != 32 * n:
        raise ValueError("crosswalk ids: not one 32-digit hex string a row")
    chars = np.frombuffer(hex32.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(n, 32)
    nibbles = _HEX[chars]
    if (nibbles == 255).any():
        raise ValueError("crosswalk ids: not hex")
    data = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    return pa.FixedSizeBinaryArray.from_buffers(_UUID, n, [None, pa.py_buffer(np.ascontiguousarray(data))])


def _csv(cur: psycopg.Cursor[Any], query: sql.Composable, params: Any, names: list[str]) -> pa.Table:
    """The rows of ``query`` as an Arrow table of strings, fetched through ``COPY … TO STDOUT`` in CSV."""
    out = io.BytesIO()
    with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query), params) as copy:
        for chunk in copy:
            out.write(chunk)
    if out.tell() == 0:
        return pa.table({name: pa.array([], pa.string()) for name in names})
    return pacsv.read_csv(
        io.BytesIO(out.getvalue()),
        read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


_WALKED = sql.SQL(
    "SELECT legacy_id, replace(coalesce(merged_into, new_id)::text, '-', '') FROM migration.crosswalk"
    " WHERE legacy_system = %s AND legacy_table = %s AND legacy_id = ANY(%s::text[])"
)
_REJECTED = sql.SQL(
    "SELECT r.legacy_id, {}, {}, {} FROM migration.reject r"
    " WHERE r.legacy_system = %s AND r.legacy_table = %s AND r.legacy_id = ANY(%s::text[])"
).format(*root_of("r"))
_ROOT = ["root_table", "root_legacy_id", "root_reason"]


def parent_outcomes(cur: psycopg.Cursor[Any], system: str, parent: str, keys: pa.Array) -> Parent:
    """What the ledger holds for these legacy ids of ``parent`` (a legacy table) at this point of
    the load: only the batch's references travel, so memory is bounded by the batch."""
    wanted = (system, parent, pc.unique(keys.drop_null()).to_pylist())
    walked = _csv(cur, _WALKED, wanted, ["key", "id"])
    rejected = _csv(cur, _REJECTED, wanted, ["key", *_ROOT])
    # CSV's NULL reads as "": no root column is ever empty where one is recorded
    roots = [
        pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
        for col in (rejected[name].combine_chunks() for name in _ROOT)
    ]
    return Parent(
        keys=walked["key"].combine_chunks(),
        ids=_uuids(walked["id"].combine_chunks()),
        rejected=rejected["key"].combine_chunks(),
        roots=pa.table(roots, names=_ROOT),
    )


def _constant(value: str, n: int) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))


def _spread(values: pa.Array, where: pa.Array) -> pa.Array:
    """``values`` (one per row where ``where`` holds) back at those rows, NULL at the others."""
    at = pc.subtract(pc.cumulative_sum(pc.cast(where, pa.int64())), 1)
    return values.take(pc.if_else(where, at, pa.scalar(None, pa.int64())))


def _first(*reasons: pa.Array) -> pa.Array:
    out = reasons[0]
    for reason in reasons[1:]:
        out = pc.coalesce(out, reason)
    return out


def _resolve(ref: Ref, src: pa.Array, parent: Parent) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(the parent id or NULL, the load reason or NULL, the ``<column>_unresolved`` flag or NULL)
    of every row, as the general merge's CASE expressions decide them."""
    n = len(src)
    at = pc.index_in(src, value_set=parent.keys)
    ids = parent.ids.take(at)
    found = pc.is_valid(at)
    given = pc.is_valid(src)
    null = pa.nulls(n, pa.string())
    unresolved = pc.if_else(
        pc.fill_null(pc.is_in(src, value_set=parent.rejected), False),
        _constant("parent_rejected", n),
        _constant("orphan", n),
    )
    missing = pc.if_else(found, null, unresolved)
    if ref.required:
        return ids, pc.if_else(given, missing, _constant("ref_missing", n)), null
    if ref.strict:
        return ids, pc.if_else(given, missing, null), null
    flag = pc.if_else(pc.and_(given, pc.invert(found)), _constant(f"{ref.column}_unresolved", n), null)
    return ids, null, flag


def eligible(spec: TableSpec) -> bool:
    """Whether every target column of ``spec`` can be written by the binary COPY as it is staged.

    A spec with rules that read the target and merges too is left to the general merge: there the
    rules also judge merged rows, which this path does not write to the target.
    """
    staged = spec.staged_schema
    typed = all(encodable(kind, staged.field(name).type) for name, kind in spec.columns)
    return typed and not (spec.load_flags and spec.merges)


def _copy(cur: psycopg.Cursor[Any], schema: str, table: str, data: pa.Table, types: list[str]) -> None:
    if data.num_rows:
        copy_arrow(cur, (schema, table), data, types)


def _rejects(
    legacy_ids: pa.Array | pa.ChunkedArray,
    reasons: pa.Array,
    details: pa.Array,
    stage: str,
    refs: dict[str, pa.Array],
) -> pa.Table:
    """One (legacy id, reason, detail, stage, the parents' legacy ids ``refs``) per rejected legacy row:
    the parts of a legacy row agree on their reason, detail and parents
    (:func:`cutover.mapping.engine.map_batch`), so any part's are the row's."""
    columns = {"legacy_id": legacy_ids, "reason": reasons, "detail": details, **refs}
    grouped = pa.table(columns).group_by("legacy_id", use_threads=False)
    out = grouped.aggregate([(name, "min") for name in list(columns)[1:]]).rename_columns(list(columns))
    return out.append_column("stage", _constant(stage, out.num_rows))


def _lineage(spec: TableSpec, rejected: pa.Table, parents: dict[str, Parent]) -> dict[str, pa.Array]:
    """The lineage columns of ``rejected`` (:data:`cutover.lineage.LINEAGE_COLUMNS`), as the general
    merge's :func:`~cutover.loading.load._reject_sql` decides them: a reason a reference decided names
    the parent of the reference its detail names; a cascade's root is that parent's, any other
    reject's the row itself. Over the batch's rejects only."""
    n = rejected.num_rows
    rejected = rejected.combine_chunks()
    reason, legacy_id = rejected["reason"].combine_chunks(), rejected["legacy_id"].combine_chunks()
    null = pa.nulls(n, pa.string())
    by_reference = pc.fill_null(pc.is_in(reason, value_set=pa.array(sorted(BY_REFERENCE))), False)
    which = pc.index_in(
        rejected["detail"].combine_chunks(),
        value_set=pa.array([ref.source for ref in spec.refs], pa.string()),
    )
    which = pc.if_else(by_reference, which, pa.scalar(None, which.type))
    if spec.refs:
        parent_table = pa.array([ref.parent for ref in spec.refs], pa.string()).take(which)
        parent_id = pc.choose(which, *(rejected[f"ref_{ref.column}"].combine_chunks() for ref in spec.refs))
    else:
        parent_table = parent_id = null
    cascade = pc.fill_null(pc.equal(reason, CASCADE), False)
    root = {name: null for name in _ROOT}
    for n_ref, ref in enumerate(spec.refs):
        parent = parents.get(ref.column)
        if parent is None or parent.roots is None:
            continue
        mine = pc.and_(cascade, pc.fill_null(pc.equal(which, n_ref), False))
        at = pc.if_else(mine, pc.index_in(parent_id, value_set=parent.rejected), pa.scalar(None, pa.int32()))
        for name in root:
            root[name] = pc.coalesce(root[name], parent.roots[name].combine_chunks().take(at))
    return {
        "parent_table": parent_table,
        "parent_legacy_id": parent_id,
        "root_table": pc.if_else(cascade, root["root_table"], _constant(spec.legacy, n)),
        "root_legacy_id": pc.if_else(cascade, root["root_legacy_id"], legacy_id),
        "root_reason": pc.if_else(cascade, root["root_reason"], reason),
    }


def _about(reason: pa.Array, column: str) -> pa.Array:
    """``column`` where ``reason`` is given: the legacy column a load reason is about."""
    return pc.if_else(pc.is_valid(reason), _constant(column, len(reason)), pa.nulls(len(reason), pa.string()))


_PATIENT_OF = sql.SQL(
    "SELECT replace(id::text, '-', ''), replace(patient_id::text, '-', '') FROM pt.{}"
    " WHERE id = ANY(%s::uuid[]) AND patient_id IS NOT NULL"
)


def _patient_mismatch(
    cur: psycopg.Cursor[Any], spec: TableSpec, ids: dict[str, pa.Array]
) -> list[tuple[pa.Array, str]]:
    """Per :attr:`~cutover.mapping.engine.TableSpec.same_patient` reference: ``patient_mismatch`` where
    the parent row (as the target holds it, merges applied) belongs to another patient than the row."""
    from cutover.legacy.profile import mapping_specs

    out = []
    for column in spec.same_patient:
        ref = next(r for r in spec.refs if r.column == column)
        parents = ids[column]
        found = _csv(
            cur,
            _PATIENT_OF.format(sql.Identifier(mapping_specs()[ref.parent].target)),
            ([bytes(v).hex() for v in pc.unique(parents.drop_null()).to_pylist()],),
            ["id", "patient"],
        )
        owner = _uuids(found["patient"].combine_chunks()).take(
            pc.index_in(parents, value_set=_uuids(found["id"].combine_chunks()))
        )
        differs = pc.fill_null(pc.not_equal(owner, ids["patient_id"]), False)
        n = len(parents)
        out.append(
            (pc.if_else(differs, _constant("patient_mismatch", n), pa.nulls(n, pa.string())), ref.source)
        )
    return out


def _flag_codes(legacy_ids: pa.Array, flags: list[pa.Array]) -> pa.Table:
    """Distinct (legacy id, code) of comma-separated flag lists, empty codes dropped."""
    pieces = []
    for listed in flags:
        split = pc.split_pattern(listed, ",")
        codes = pc.list_flatten(split)
        owners = legacy_ids.take(pc.list_parent_indices(split))
        pieces.append(pa.table({"legacy_id": owners, "code": codes}))
    found = pa.concat_tables(pieces)
    found = found.filter(pc.and_(pc.is_valid(found["code"]), pc.not_equal(found["code"], "")))
    return found.group_by(["legacy_id", "code"], use_threads=False).aggregate([])


def _load_flags(
    cur: psycopg.Cursor[Any], spec: TableSpec, migrated: pa.Table, params: dict[str, Any]
) -> None:
    """The rules that read the target (a parent's values), over the batch's rows just written."""
    cur.execute("DROP TABLE IF EXISTS direct_rows")
    cur.execute("CREATE TEMP TABLE direct_rows (id uuid, legacy_id text) ON COMMIT DROP")
    copy_arrow(cur, "direct_rows", migrated.select(["id", "legacy_id"]), ["uuid", "text"])
    for rule in spec.load_flags:
        cur.execute(
            sql.SQL(
                "INSERT INTO migration.flag (legacy_system, legacy_table, legacy_id, flag_code, run_id)"
                " SELECT DISTINCT %(sys)s, %(table)s, k.legacy_id, {code}, %(run_id)s"
                " FROM direct_rows k JOIN pt.{target} r ON r.id = k.id WHERE {pred}"
                " ON CONFLICT (legacy_system, legacy_table, legacy_id, flag_code) DO UPDATE SET run_id = EXCLUDED.run_id"
            ).format(
                code=sql.Literal(rule.code), target=sql.Identifier(spec.target), pred=sql.SQL(rule.predicate)
            ),
            params,
        )


def merge_direct(
    conn: psycopg.Connection[Any],
    spec: TableSpec,
    data: pa.Table,
    params: dict[str, Any],
) -> tuple[int, int]:
    """Write one batch (with its ``id`` column) by COPY; (migrated, merged) legacy rows.

    Each reference's parents are looked up for the batch's own ids (:func:`parent_outcomes`).
    The batch is never copied whole: which rows go where is a mask per destination, applied by
    the COPY a slice at a time (a part of documents holds up to 64 MB of files).
    """
    system, table, run_id = params["sys"], params["table"], params["run_id"]
    with conn.cursor() as cur:
        mapped_reason = data["reason"].combine_chunks()
        mapped = pc.is_null(mapped_reason)  # the rows the mapping kept
        legacy_ids = data["legacy_id"].combine_chunks()
        ids: dict[str, pa.Array] = {}
        parents: dict[str, Parent] = {}
        reasons: list[pa.Array] = []
        details: list[pa.Array] = []
        flags: list[pa.Array] = [data["flags"].combine_chunks()]
        for ref in spec.refs:
            src = data[f"ref_{ref.column}"].combine_chunks().filter(mapped)
            parents[ref.column] = parent_outcomes(cur, system, ref.parent, src)
            ref_ids, reason, flag = _resolve(ref, src, parents[ref.column])
            ids[ref.column], reason, flag = (_spread(x, mapped) for x in (ref_ids, reason, flag))
            reasons.append(reason)
            details.append(_about(reason, ref.source))
            flags.append(flag)
        for reason, column in _patient_mismatch(cur, spec, ids):
            reasons.append(reason)
            details.append(_about(reason, column))
        load_reason = _first(*reasons) if reasons else pa.nulls(data.num_rows, pa.string())
        # a detail is given exactly where its reason is (_about): the first detail is the first reason's
        load_detail = _first(*details) if details else pa.nulls(data.num_rows, pa.string())
        kept = pc.and_(mapped, pc.is_null(load_reason))
        migrating = pc.and_(kept, pc.is_null(data["merge_into"].combine_chunks()))
        # the target rows
        names = ["id", *(name for name, _ in spec.columns), *(ref.column for ref in spec.refs)]
        types = ["uuid", *(kind for _, kind in spec.columns), *("uuid" for _ in spec.refs)]
        target = pa.table(
            [data["id"], *(data[name] for name, _ in spec.columns), *(ids[ref.column] for ref in spec.refs)],
            names=names,
        )
        copy_arrow(cur, ("pt", spec.target), target, types, mask=migrating)
        # the crosswalk: one row per legacy row (an exploded row by its first part)
        first = data.select(["legacy_id", "id", "merge_into"]).filter(
            pc.and_(kept, pc.equal(data["row_key"], data["legacy_id"]))
        )
        merged = pc.is_valid(first["merge_into"])
        n = first.num_rows
        crosswalk = pa.table(
            {
                "legacy_system": _constant(system, n),
                "legacy_table": _constant(table, n),
                "legacy_id": first["legacy_id"],
                "new_table": _constant(spec.target, n),
                "new_id": first["id"],
                "outcome": pc.if_else(merged, _constant("merged", n), _constant("migrated", n)),
                "merged_into": row_ids(system, table, first["merge_into"]),  # the survivor's id
                "run_id": _constant(run_id, n),
            }
        )
        _copy(cur, "migration", "crosswalk", crosswalk, ["text"] * 4 + ["uuid", "text", "uuid", "text"])
        # the rejects: the mapping's, then the load's
        refused = pc.and_(mapped, pc.is_valid(load_reason))
        unmapped = pc.invert(mapped)
        staged_refs = {f"ref_{ref.column}": data[f"ref_{ref.column}"].combine_chunks() for ref in spec.refs}
        rejected = pa.concat_tables(
            [
                _rejects(
                    legacy_ids.filter(unmapped),
                    mapped_reason.filter(unmapped),
                    data["detail"].combine_chunks().filter(unmapped),
                    "map",
                    {name: src.filter(unmapped) for name, src in staged_refs.items()},
                ),
                _rejects(
                    legacy_ids.filter(refused),
                    load_reason.filter(refused),
                    load_detail.filter(refused),
                    "load",
                    {name: src.filter(refused) for name, src in staged_refs.items()},
                ),
            ]
        )
        m = rejected.num_rows
        rejects = pa.table(
            {
                "legacy_system": _constant(system, m),
                "legacy_table": _constant(table, m),
                "legacy_id": rejected["legacy_id"],
                "reason_code": rejected["reason"],
                "stage": rejected["stage"],
                "detail": rejected["detail"],
                "run_id": _constant(run_id, m),
                **_lineage(spec, rejected, parents),
            }
        )
        _copy(cur, "migration", "reject", rejects, ["text"] * (7 + len(LINEAGE_COLUMNS)))
        # the flags of the rows that migrate or merge
        codes = _flag_codes(legacy_ids.filter(kept), [f.filter(kept) for f in flags])
        k = codes.num_rows
        _copy(
            cur,
            "migration",
            "flag",
            pa.table(
                {
                    "legacy_system": _constant(system, k),
                    "legacy_table": _constant(table, k),
                    "legacy_id": codes["legacy_id"],
                    "flag_code": codes["code"],
                    "run_id": _constant(run_id, k),
                }
            ),
            ["text"] * 5,
        )
        if spec.load_flags and pc.any(migrating).as_py():
            _load_flags(cur, spec, data.select(["id", "legacy_id"]).filter(migrating), params)
    migrated = int(pc.sum(pc.invert(merged)).as_py() or 0)
    return migrated, n - migrated
