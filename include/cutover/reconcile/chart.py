"""Per-patient chart checksums: the legacy side from the mapped Parquet, the target side in PostgreSQL.

A patient's chart is a handful of integers, the same on both sides when the chart arrived whole:

=============  ==========================================================================
visits_n/_h    number of visits, and the sum of a 32-bit hash of each visit's date
units_n/_h     units billed, and the sum of units × hash(CPT code): units by CPT code
dx_n/_h        distinct ICD-10 codes of the patient's episodes, and the sum of their hashes
charges        sum of charges, in cents
payments       sum of payments and adjustments, in cents
safety_n/_h    legacy safety records (allergies, medications, precautions), and the sum of a
               hash of each one's table, legacy id and what it says (the allergen or "no known
               allergies", the medication, the precaution's kind)
balance        charges − payments
=============  ==========================================================================

plus a digest of all of them with the patient's key (two 32-bit halves, ``d1`` and ``d2``) for
the segment sums of :mod:`cutover.reconcile.segments`. Hashes are the first 32 bits of the MD5 of
the value's text (a date as days since 1970-01-01), so Python and PostgreSQL compute the same
numbers; values are hashed once per distinct value on the Arrow side.

The legacy side streams the mapped parts of each table once, keeping only per-patient partial
sums and the id maps a child row needs to find its patient (visit → patient, case → patient),
never the rows. The target side runs as SQL aggregates into a temporary table; only segment
sums and, for differing segments, per-patient integers leave the database.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cutover.reconcile.segments import Checksum, Segment, edges
from cutover.staging.parquet import read_manifest
from cutover.staging.store import Store

log = logging.getLogger(__name__)

COMPONENTS = (
    "visits_n",
    "visits_h",
    "units_n",
    "units_h",
    "dx_n",
    "dx_h",
    "charges",
    "payments",
    "safety_n",
    "safety_h",
)
"""The chart's integers, in digest order (after the key)."""

CHART_COLUMNS = ("key", "d1", "d2", *COMPONENTS, "balance")

KINDS: dict[str, tuple[str, ...]] = {
    "chart_visits": ("visits_n", "visits_h"),
    "chart_units": ("units_n", "units_h"),
    "chart_dx": ("dx_n", "dx_h"),
    "chart_charges": ("charges",),
    "chart_payments": ("payments",),
    "chart_balance": ("balance",),
    "chart_safety": ("safety_n", "safety_h"),
}
"""Failure kind → the chart components it compares."""

CHART_TARGETS = (
    "episode",
    "visit",
    "procedure_line",
    "diagnosis",
    "charge",
    "payment",
    "allergy",
    "medication",
    "precaution",
)
"""Target tables a chart reads (episodes only to find a diagnosis's patient); the legacy side reads the
staged rows of the legacy tables the profile maps onto them (:func:`chart_tables`). A table the
profile does not map counts zero on both sides."""


def chart_tables() -> dict[str, str | None]:
    """Target table of a chart → the legacy table the profile in use maps onto it (None: none)."""
    from cutover.legacy.profile import current

    return {target: current().mapped_to(target) for target in CHART_TARGETS}


def h32(text: str) -> int:
    """First 32 bits of MD5, signed: SQL ``('x' || left(md5(text), 8))::bit(32)::int``.

    >>> h32("97110")
    -1606415818
    """
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "big", signed=True)


def hash_values(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`h32` of every value's text (dates as days since the epoch), hashing each distinct value once."""
    if pa.types.is_date32(values.type):
        values = pc.cast(values, pa.int32())
    unique = pc.unique(values)
    # a NULL adds nothing, as SQL's sum() ignores md5(NULL)
    hashes = pa.array([0 if v is None else h32(str(v)) for v in unique.to_pylist()], pa.int64())
    return pc.take(hashes, pc.index_in(values, value_set=unique))


def digest(table: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(d1, d2): the two unsigned 32-bit halves of MD5 over ``key|visits_n|…|payments``.

    The SQL twin is ``md5(concat_ws('|', key, visits_n, …, payments))``.
    """
    text = pc.binary_join_element_wise(
        *(pc.cast(table.column(c), pa.string()) for c in ("key", *COMPONENTS)), "|"
    )
    d1: list[int] = []
    d2: list[int] = []
    for line in text.to_pylist():
        raw = hashlib.md5(line.encode()).digest()
        d1.append(int.from_bytes(raw[:4], "big"))
        d2.append(int.from_bytes(raw[4:8], "big"))
    return pa.array(d1, pa.int64()), pa.array(d2, pa.int64())


def finish(table: pa.Table) -> pa.Table:
    """Add the balance and the digest to a table of ``key`` and the components."""
    d1, d2 = digest(table)
    balance = pc.subtract(table.column("charges"), table.column("payments"))
    return pa.table(
        {"key": table.column("key"), "d1": d1, "d2": d2}
        | {c: table.column(c) for c in COMPONENTS}
        | {"balance": balance}
    )


# legacy side -----------------------------------------------------------------------------------


def read_columns(store: Store, prefix: str, columns: Sequence[str]) -> Iterator[pa.Table]:
    """The given columns of every staged part, each part verified against its manifest checksum."""
    for part in read_manifest(store, prefix)["parts"]:
        yield pq.read_table(io.BytesIO(store.get(part["key"], sha256=part["sha256"])), columns=list(columns))


def lookup(values: pa.Array | pa.ChunkedArray, ids: pa.Array, keys: pa.Array) -> pa.Array:
    """``keys`` at the position of each value in ``ids`` (null where absent); ``ids`` unique."""
    return pc.take(keys, pc.index_in(values, value_set=ids))


def _migrated(part: pa.Table, rejected: pa.Array) -> pa.Table:
    """Rows the load carried: mapped without a reason, and not rejected by the load either."""
    keep = pc.and_(pc.is_null(part.column("reason")), pc.invert(pc.is_in(part.column("legacy_id"), rejected)))
    return part.filter(keep)


def _fold(
    running: pa.Table | None, rows: pa.Table, *, sums: Sequence[str] = (), distinct: bool = False
) -> pa.Table:
    """Fold rows into per-key sums (or distinct rows), so memory grows with patients, not rows."""
    both = rows if running is None else pa.concat_tables([running, rows])
    if distinct:
        return both.group_by(both.column_names).aggregate([])
    out = both.group_by("key").aggregate([(c, "sum") for c in sums])
    return out.select(["key", *(f"{c}_sum" for c in sums)]).rename_columns(["key", *sums])


class LegacyCharts:
    """Builds the legacy side's charts from one run's mapped Parquet."""

    def __init__(
        self,
        store: Store,
        mapped_prefix: str,
        patient_ids: pa.Array,
        patient_keys: pa.Array,
        rejected: Mapping[str, pa.Array],
    ) -> None:
        """``patient_ids``/``patient_keys``: every legacy patient id in scope → its survivor's key."""
        self.store = store
        self.prefix = mapped_prefix.rstrip("/")
        self.patient_ids = patient_ids
        self.patient_keys = patient_keys
        self.rejected = rejected

    def _parts(self, target: str, columns: Sequence[str], *, every: bool = False) -> Iterator[pa.Table]:
        """The migrated rows of the legacy table mapped onto ``target`` (none when none is); ``every``:
        every legacy row, rejected or not."""
        table = chart_tables()[target]
        if table is None:
            return
        empty = pa.array([], pa.string())
        for part in read_columns(self.store, f"{self.prefix}/{table}", ["legacy_id", "reason", *columns]):
            yield part if every else _migrated(part, self.rejected.get(table, empty))

    def _safety(self, by_patient: Any) -> pa.Table:
        """Per patient: every legacy safety record, rejected or not (a record its patient's chart lacks
        is what the check is for), and the sum of :func:`safety_hash` of each. A row the legacy system
        itself flags removed (an extract's export flag) is set aside, as the accounting sets it aside:
        it is no longer the chart's, and waits for a person (the delta report lists it)."""
        from cutover.policy import SET_ASIDE

        aside = pa.array(sorted(SET_ASIDE), pa.string())
        running: pa.Table | None = None
        for target, said in SAFETY_SAYS.items():
            for part in self._parts(target, ["ref_patient_id", *said], every=True):
                part = part.filter(
                    pc.invert(pc.fill_null(pc.is_in(part.column("reason"), value_set=aside), False))
                )
                key = by_patient(part)
                rows = pa.table(
                    {
                        "key": key,
                        "safety_n": pa.array(np.ones(part.num_rows, dtype=np.int64)),
                        "safety_h": safety_hash(target, part.column("legacy_id"), _says(target, part)),
                    }
                )
                running = _fold(running, rows.filter(pc.is_valid(key)), sums=("safety_n", "safety_h"))
        return running if running is not None else _empty(("safety_n", "safety_h"))

    def _sums(
        self,
        table: str,
        columns: Sequence[str],
        key_of: Any,
        values: Any,
        sums: Sequence[str],
        id_map: tuple[list[Any], list[Any]] | None = None,
    ) -> pa.Table:
        """Per-patient sums over one table's migrated rows, in one pass over its parts.

        ``id_map``, when given, collects each row's legacy id and patient key on the way, so a
        parent table (visits for procedures, cases for diagnoses) is read once.
        """
        running: pa.Table | None = None
        for part in self._parts(table, columns):
            key = key_of(part)
            known = pc.is_valid(key)
            if id_map is not None:
                id_map[0].append(pc.filter(part.column("legacy_id"), known))
                id_map[1].append(pc.filter(key, known))
            rows = pa.table({"key": key} | {s: v for s, v in zip(sums, values(part), strict=True)})
            running = _fold(running, rows.filter(known), sums=sums)
        return running if running is not None else _empty(sums)

    def build(self) -> pa.Table:
        """Every in-scope patient's chart (components, balance, digest), one row per survivor key."""

        def by_patient(part: pa.Table) -> pa.Array:
            return lookup(part.column("ref_patient_id"), self.patient_ids, self.patient_keys)

        def one(part: pa.Table) -> pa.Array:
            return pa.array(np.ones(part.num_rows, dtype=np.int64))

        cases: tuple[list[Any], list[Any]] = ([], [])
        self._sums("episode", ["ref_patient_id"], by_patient, lambda p: (), (), id_map=cases)
        case_ids, case_keys = _concat(cases[0], pa.string()), _concat(cases[1], pa.int64())
        visit_map: tuple[list[Any], list[Any]] = ([], [])
        visits = self._sums(
            "visit",
            ["visit_date", "ref_patient_id"],
            by_patient,
            lambda p: (one(p), hash_values(p.column("visit_date"))),
            ("visits_n", "visits_h"),
            id_map=visit_map,
        )
        visit_ids, visit_keys = _concat(visit_map[0], pa.string()), _concat(visit_map[1], pa.int64())
        units = self._sums(
            "procedure_line",
            ["cpt_code", "units", "ref_visit_id"],
            lambda p: lookup(p.column("ref_visit_id"), visit_ids, visit_keys),
            lambda p: (
                pc.cast(p.column("units"), pa.int64()),
                pc.multiply(pc.cast(p.column("units"), pa.int64()), hash_values(p.column("cpt_code"))),
            ),
            ("units_n", "units_h"),
        )
        charges = self._sums(
            "charge",
            ["amount_cents", "ref_patient_id"],
            by_patient,
            lambda p: (pc.cast(p.column("amount_cents"), pa.int64()),),
            ("charges",),
        )
        payments = self._sums(
            "payment",
            ["amount_cents", "ref_patient_id"],
            by_patient,
            lambda p: (pc.cast(p.column("amount_cents"), pa.int64()),),
            ("payments",),
        )
        pairs: pa.Table | None = None
        for part in self._parts("diagnosis", ["icd10_code", "ref_episode_id"]):
            key = lookup(part.column("ref_episode_id"), case_ids, case_keys)
            rows = pa.table({"key": key, "h": hash_values(part.column("icd10_code"))}).filter(
                pc.is_valid(key)
            )
            pairs = _fold(pairs, rows, distinct=True)
        if pairs is None:
            pairs = pa.table({"key": pa.array([], pa.int64()), "h": pa.array([], pa.int64())})
        dx = (
            pairs.group_by("key")
            .aggregate([("h", "count"), ("h", "sum")])
            .select(["key", "h_count", "h_sum"])
            .rename_columns(["key", "dx_n", "dx_h"])
        )
        safety = self._safety(by_patient)
        chart = pa.table({"key": pc.unique(self.patient_keys)})
        for component in (visits, units, dx, charges, payments, safety):
            chart = chart.join(component, "key", join_type="left outer")
        chart = pa.table({"key": chart.column("key")} | {c: _zero(chart.column(c)) for c in COMPONENTS})
        log.info("legacy charts: %d patients", chart.num_rows)
        return finish(chart)


SAFETY_SAYS: dict[str, tuple[str, ...]] = {
    "allergy": ("no_known_allergies", "substance"),
    "medication": ("name",),
    "precaution": ("kind",),
}
"""The mapped columns of a safety record its chart hash covers (what the record says)."""


def _says(target: str, part: pa.Table) -> pa.Array:
    """What one safety record says, as text in ASCII upper case (a merge compares text without letter
    case: "Warfarin" and "WARFARIN" are one record): its SQL twin is in :data:`TARGET_CHART_SQL`."""
    if target == "allergy":
        nka = pc.fill_null(part.column("no_known_allergies"), False)
        return pc.if_else(nka, "NKA", pc.ascii_upper(pc.fill_null(part.column("substance"), "")))
    return pc.ascii_upper(pc.fill_null(part.column(SAFETY_SAYS[target][0]), ""))


def safety_hash(
    target: str, legacy_ids: pa.Array | pa.ChunkedArray, says: pa.Array | pa.ChunkedArray
) -> pa.Array:
    """:func:`h32` of ``target|legacy id|what it says``, per record (SQL: over ``unnest(source_records)``)."""
    text = pc.binary_join_element_wise(target, pc.cast(legacy_ids, pa.string()), says, "|")
    return hash_values(text)


def _concat(arrays: Sequence[pa.Array | pa.ChunkedArray], kind: pa.DataType) -> pa.Array:
    """One array of all chunks (``concat_arrays``: ``ChunkedArray.combine_chunks`` takes seconds on strings)."""
    chunks = [c for a in arrays for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])]
    return pa.concat_arrays([c.cast(kind) for c in chunks]) if chunks else pa.array([], kind)


def _empty(columns: Sequence[str]) -> pa.Table:
    return pa.table({"key": pa.array([], pa.int64())} | {c: pa.array([], pa.int64()) for c in columns})


def _zero(column: pa.ChunkedArray) -> pa.Array:
    return pc.fill_null(pc.cast(column, pa.int64()), 0).combine_chunks()


# target side -----------------------------------------------------------------------------------

_H = "('x' || left(md5({}), 8))::bit(32)::int"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
"""ASCII letters: ``translate`` upper-cases them alone, as ``pyarrow.compute.ascii_upper`` does, whatever
the database's collation would make of another letter."""

TARGET_CHART_SQL = f"""
CREATE TEMP TABLE rc_chart ON COMMIT DROP AS
WITH v AS (
    SELECT v.patient_id, count(*) AS n,
           sum({_H.format("(v.visit_date - DATE '1970-01-01')::text")}) AS h
      FROM pt.visit v JOIN rc_patient p ON p.patient_id = v.patient_id GROUP BY 1
), u AS (
    SELECT v.patient_id, sum(l.units) AS n, sum(l.units::bigint * {_H.format("l.cpt_code::text")}) AS h
      FROM pt.procedure_line l JOIN pt.visit v ON v.id = l.visit_id
      JOIN rc_patient p ON p.patient_id = v.patient_id GROUP BY 1
), d AS (
    SELECT patient_id, count(*) AS n, sum({_H.format("icd10_code")}) AS h
      FROM (SELECT DISTINCT e.patient_id, g.icd10_code
              FROM pt.diagnosis g JOIN pt.episode e ON e.id = g.episode_id
              JOIN rc_patient p ON p.patient_id = e.patient_id) AS x
     GROUP BY 1
), c AS (
    SELECT c.patient_id, sum(c.amount_cents) AS s FROM pt.charge c JOIN rc_patient p USING (patient_id) GROUP BY 1
), y AS (
    SELECT y.patient_id, sum(y.amount_cents) AS s FROM pt.payment y JOIN rc_patient p USING (patient_id) GROUP BY 1
), s AS (
    SELECT patient_id, count(*) AS n, sum({_H.format(f"t || '|' || src || '|' || translate(says, '{_LOWER}', '{_LOWER.upper()}')")}) AS h
      FROM (SELECT a.patient_id, 'allergy' AS t, src,
                   CASE WHEN a.no_known_allergies THEN 'NKA' ELSE coalesce(a.substance, '') END AS says
              FROM pt.allergy a, unnest(a.source_records) AS src
            UNION ALL
            SELECT m.patient_id, 'medication', src, coalesce(m.name, '')
              FROM pt.medication m, unnest(m.source_records) AS src
            UNION ALL
            SELECT c.patient_id, 'precaution', src, c.kind
              FROM pt.precaution c, unnest(c.source_records) AS src) AS x
      JOIN rc_patient p USING (patient_id)
     GROUP BY 1
), chart AS (
    SELECT p.key, p.patient_id,
           coalesce(v.n, 0)::bigint AS visits_n, coalesce(v.h, 0)::bigint AS visits_h,
           coalesce(u.n, 0)::bigint AS units_n, coalesce(u.h, 0)::bigint AS units_h,
           coalesce(d.n, 0)::bigint AS dx_n, coalesce(d.h, 0)::bigint AS dx_h,
           coalesce(c.s, 0)::bigint AS charges, coalesce(y.s, 0)::bigint AS payments,
           coalesce(s.n, 0)::bigint AS safety_n, coalesce(s.h, 0)::bigint AS safety_h
      FROM rc_patient p
      LEFT JOIN v USING (patient_id) LEFT JOIN u USING (patient_id) LEFT JOIN d USING (patient_id)
      LEFT JOIN c USING (patient_id) LEFT JOIN y USING (patient_id) LEFT JOIN s USING (patient_id)
)
SELECT key, patient_id, ('x' || substr(m, 1, 8))::bit(32)::bigint AS d1,
       ('x' || substr(m, 9, 8))::bit(32)::bigint AS d2,
       {", ".join(COMPONENTS)}, charges - payments AS balance
  FROM (SELECT *, md5(concat_ws('|', key, {", ".join(COMPONENTS)})) AS m FROM chart) AS z
"""


class TargetCharts:
    """The target side: charts aggregated into a temporary table, queried by segment.

    Needs ``rc_patient (patient_id uuid, key bigint)`` in the session: the surviving patients in
    scope. Only counts, sums and per-patient integers are read back.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        conn.execute(TARGET_CHART_SQL)
        conn.execute("CREATE INDEX ON rc_chart (key)")
        conn.execute("ANALYZE rc_chart")

    def checksums(self, parts: Sequence[Segment]) -> list[Checksum]:
        if not parts:
            return []
        bounds, buckets = edges(parts)
        rows = self.conn.execute(
            "SELECT width_bucket(key, %s::bigint[]), count(*), sum(d1), sum(d2) FROM rc_chart"
            " WHERE key BETWEEN %s AND %s GROUP BY 1",
            (bounds, parts[0].lo, parts[-1].hi),
        ).fetchall()
        found = {int(b): (int(n), int(s1), int(s2)) for b, n, s1, s2 in rows}
        return [found.get(b, (0, 0, 0)) for b in buckets]

    def charts(self, parts: Sequence[Segment]) -> pa.Table:
        columns = list(CHART_COLUMNS)
        if not parts:
            return _empty(columns[1:])
        bounds, buckets = edges(parts)
        cur = self.conn.execute(
            f"SELECT {', '.join(columns)} FROM rc_chart"
            " WHERE key BETWEEN %s AND %s AND width_bucket(key, %s::bigint[]) = ANY(%s)",
            (parts[0].lo, parts[-1].hi, bounds, buckets),
        )
        rows = cur.fetchall()
        return pa.table({c: pa.array([r[i] for r in rows], pa.int64()) for i, c in enumerate(columns)})
