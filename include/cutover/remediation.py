"""The remediation loop: a rejected chart is not the end of it.

A root reject (a legacy row rejected for a defect of its own, not a cascade: V011's lineage) is a
legacy defect a person can act on, tracked across runs in ``migration.remediation`` (V012) until it
is closed:

1. **Worklist.** Every run's evidence holds ``remediation.csv``: each open root reject's table,
   legacy id, the legacy column(s) at fault, its reason, how many rejected rows depend on it and since
   which run it is open. Ids, names, codes and counts: never a value.
2. **Corrections.** ``cutover remediation correct TABLE ID COLUMN`` (or ``import`` of a CSV file with
   ``legacy_table,legacy_id,column,value``) records a corrected legacy value. The corrections live in
   the staging store, sealed with AES-256-GCM under the staging key (:data:`CORRECTIONS`); every
   change is an audit-log entry naming the person and the correction's keyed digest (no value), and a
   run refuses a correction the audit log does not vouch for (an attacker who can write to the store
   cannot plant one).
3. **The next run.** ``pt_remediate`` moves exactly the corrected rows and the rejects that depend on
   them (their patients' table whole, so that the duplicate matcher sees the same people); the
   mapping applies the corrections as an overlay on the extracted rows (:func:`overlay`), so the
   extract stays the legacy system's own copy. Every other run (a later wave) applies them too.
4. **Closing.** Each run's evidence step (:func:`track`) opens the new root rejects, closes the
   tracked rows the ledger now carries, and reopens a correction its run carried that was rejected
   again. A row a named person accepts as not carried (``cutover remediation accept``, with a reason
   code) is no longer open; the worklist still lists it, last, with who accepted it.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from cutover.config import LEGACY_SYSTEM
from cutover.errors import ConfigError, CutoverError, IntegrityError, UnknownNameError
from cutover.legacy.profile import legacy_tables, mapping_specs
from cutover.legacy.source import ARROW_TYPES
from cutover.lineage import CASCADE
from cutover.staging.store import Store, seal, staging_key, unseal

log = logging.getLogger(__name__)

CORRECTIONS = "remediation/corrections.enc"
"""The corrections, in the staging store: JSON sealed under the staging key (AES-256-GCM, the object's
key as associated data), on every kind of store; ``.enc`` so a local store keeps it as sealed here."""

WORKLIST = "remediation.csv"
"""The worklist's file in every run's evidence."""

WORKLIST_COLUMNS = (
    "legacy_table",
    "legacy_id",
    "field",
    "reason",
    "dependants",
    "status",
    "opened_run",
    "decided_by",
)


class NothingToRemediate(CutoverError):
    """No correction waits for a run: every corrected row is carried already, or none was corrected."""


@dataclass(frozen=True)
class Correction:
    """One corrected legacy value: ``value`` replaces ``column`` of the legacy row (None: NULL)."""

    legacy_table: str
    legacy_id: str
    column: str
    value: str | None
    by: str
    at: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.legacy_table, self.legacy_id, self.column)

    def digest(self, key: bytes) -> str:
        """HMAC-SHA-256 of the whole correction under a key derived from the staging key: what the
        audit log records, so it vouches for the value without holding it (a bare hash of a birth
        date is guessed in a second)."""
        body = json.dumps(asdict(self), sort_keys=True).encode()
        return hmac.new(key, body, hashlib.sha256).hexdigest()


def _digest_key() -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cutover corrections v1").derive(
        staging_key()
    )


# --- the sealed corrections ---------------------------------------------------------------------


def load_corrections(store: Store, name: str = CORRECTIONS) -> list[Correction]:
    """The corrections sealed at ``name`` (none when there is no such object)."""
    if not store.exists(name):
        return []
    body = json.loads(unseal(store.get(name), staging_key(), name))
    return [Correction(**entry) for entry in body["corrections"]]


def _save(store: Store, corrections: Sequence[Correction], name: str = CORRECTIONS) -> None:
    body = json.dumps({"corrections": [asdict(c) for c in corrections]}, sort_keys=True).encode()
    store.put(name, seal(body, staging_key(), name))


def _cast(column_type: str, value: str | None) -> pa.Array:
    """``value`` as the legacy column's Arrow type; ConfigError naming the type (never the value)."""
    try:
        return pa.array([value], pa.string()).cast(ARROW_TYPES[column_type])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ConfigError(
            f"a corrected value must be a legacy {column_type} value; this one is not"
        ) from None


def _check(legacy_table: str, column: str, value: str | None) -> None:
    """Refuse an unknown table or column, the key, and a value the column's type cannot hold."""
    tables = legacy_tables()
    if legacy_table not in mapping_specs():
        raise UnknownNameError("legacy table", legacy_table, mapping_specs())
    spec = tables[legacy_table]
    if column not in spec.column_names:
        raise UnknownNameError(f"column of legacy table {legacy_table}", column, spec.column_names)
    if column == spec.key:
        raise ConfigError(
            f"{legacy_table}.{column} is the row's key: a correction cannot change which row it is"
        )
    _cast(spec.column_type(column), value)


def _rejected_root(conn: psycopg.Connection[Any], legacy_table: str, legacy_id: str) -> str:
    """The reason a legacy row is rejected for a defect of its own; ConfigError when it is not."""
    row = conn.execute(
        "SELECT reason_code, root_table, root_legacy_id FROM migration.reject"
        " WHERE legacy_system = %s AND legacy_table = %s AND legacy_id = %s",
        (LEGACY_SYSTEM, legacy_table, legacy_id),
    ).fetchone()
    if row is None:
        carried = conn.execute(
            "SELECT outcome FROM migration.crosswalk WHERE legacy_system = %s AND legacy_table = %s"
            " AND legacy_id = %s",
            (LEGACY_SYSTEM, legacy_table, legacy_id),
        ).fetchone()
        state = f"{carried[0]}: correct it in the new system" if carried else "not in the ledger"
        raise ConfigError(f"legacy {legacy_table} {legacy_id} is not rejected ({state})")
    reason, root_table, root_id = row
    if reason == CASCADE:
        where = f": its root is {root_table} {root_id}" if root_table else ""
        raise ConfigError(
            f"legacy {legacy_table} {legacy_id} is rejected {CASCADE} (a parent's defect{where}); "
            "correct the root, and this row follows it"
        )
    return str(reason)


def correct(
    target_url: str,
    store: Store,
    entries: Iterable[tuple[str, str, str, str | None]],
    *,
    actor: str,
) -> list[Correction]:
    """Record corrections (legacy table, legacy id, column, value) by ``actor``: checked, audited, sealed.

    Each must name a rejected root row and a column its type can hold the value in. A later correction
    of the same (table, id, column) replaces the earlier one. All or nothing: the audit entries and the
    rows' ``corrected`` status commit only once the sealed file is written.
    """
    at = datetime.now(UTC).isoformat(timespec="seconds")
    new = [Correction(t, str(i), c, v, actor, at) for t, i, c, v in entries]
    for c in new:
        _check(c.legacy_table, c.column, c.value)
    key = _digest_key()
    with psycopg.connect(target_url) as conn:
        # one writer of the sealed file at a time, wherever `cutover remediation` runs
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('cutover.remediation.corrections'))")
        for c in new:
            reason = _rejected_root(conn, c.legacy_table, c.legacy_id)
            conn.execute(
                "INSERT INTO migration.audit_log (actor, action, detail) VALUES (%s, 'correct', %s)",
                (
                    actor,
                    json.dumps(
                        {
                            "legacy_table": c.legacy_table,
                            "legacy_id": c.legacy_id,
                            "column": c.column,
                            "digest": c.digest(key),
                        }
                    ),
                ),
            )
            conn.execute(
                "INSERT INTO migration.remediation AS m (legacy_system, legacy_table, legacy_id, reason_code,"
                " status, decided_by, decided_at, columns) VALUES (%s, %s, %s, %s, 'corrected', %s, now(), %s)"
                " ON CONFLICT (legacy_system, legacy_table, legacy_id) DO UPDATE SET status = 'corrected',"
                " decided_by = EXCLUDED.decided_by, decided_at = EXCLUDED.decided_at, note = NULL,"
                " columns = ARRAY(SELECT DISTINCT unnest(coalesce(m.columns, '{}') || EXCLUDED.columns) ORDER BY 1)",
                (LEGACY_SYSTEM, c.legacy_table, c.legacy_id, reason, actor, [c.column]),
            )
        kept = {c.key: c for c in load_corrections(store)}
        kept.update({c.key: c for c in new})
        _save(store, sorted(kept.values(), key=lambda c: c.key))
    log.info("recorded %d correction(s) by %s", len(new), actor)
    return new


def read_corrections_csv(path: Path) -> list[tuple[str, str, str, str | None]]:
    """A corrections file: ``legacy_table,legacy_id,column,value`` with a header; an empty value is
    kept as the empty text, a value of ``\\N`` means NULL. Errors name the line, never its value."""
    if not path.is_file():
        raise ConfigError(f"corrections file {path} not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        wanted = ["legacy_table", "legacy_id", "column", "value"]
        if reader.fieldnames != wanted:
            raise ConfigError(f"{path}: the header must be {','.join(wanted)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or any(row[k] is None for k in wanted):
                raise ConfigError(f"{path} line {line}: expected 4 fields")
            value = None if row["value"] == "\\N" else row["value"]
            rows.append((row["legacy_table"], row["legacy_id"], row["column"], value))
    return rows


def accept(target_url: str, legacy_table: str, legacy_id: str, *, note: str, actor: str) -> None:
    """``actor`` accepts that a rejected root row is not carried, for the reason ``note`` (a code)."""
    if legacy_table not in mapping_specs():
        raise UnknownNameError("legacy table", legacy_table, mapping_specs())
    if (
        not note
        or not note[0].isalpha()
        or not all(ch.islower() or ch.isdigit() or ch in "_." for ch in note)
    ):
        raise ConfigError("the note must be a lower-case code such as duplicate_chart or test_patient")
    with psycopg.connect(target_url) as conn:
        reason = _rejected_root(conn, legacy_table, legacy_id)
        conn.execute(
            "INSERT INTO migration.audit_log (actor, action, detail) VALUES (%s, 'accept not carried', %s)",
            (actor, json.dumps({"legacy_table": legacy_table, "legacy_id": legacy_id, "note": note})),
        )
        conn.execute(
            "INSERT INTO migration.remediation (legacy_system, legacy_table, legacy_id, reason_code, status,"
            " decided_by, decided_at, note) VALUES (%s, %s, %s, %s, 'accepted', %s, now(), %s)"
            " ON CONFLICT (legacy_system, legacy_table, legacy_id) DO UPDATE SET status = 'accepted',"
            " decided_by = EXCLUDED.decided_by, decided_at = EXCLUDED.decided_at, note = EXCLUDED.note",
            (LEGACY_SYSTEM, legacy_table, legacy_id, reason, actor, note),
        )


Verdict = str
"""A decision on a duplicate pair: ``same`` (one person: merge) or ``different`` (never merge)."""

VERDICTS = ("same", "different")


def decide(
    target_url: str, legacy_table: str, left_id: str, right_id: str, verdict: Verdict, *, actor: str
) -> None:
    """``actor``'s verdict on an ambiguous duplicate pair of ``legacy_table`` (a table whose duplicates
    the matcher merges): applied by every later run that maps the pair. Refused for a pair already
    carried into the target (one of them migrated or merged): merge or split those in the new system."""
    from cutover.matching.match import pair_key

    specs = mapping_specs()
    matched = [t for t, spec in specs.items() if spec.merges and not spec.merge_same]
    if legacy_table not in matched:
        raise UnknownNameError("legacy table whose duplicates are matched", legacy_table, matched)
    if verdict not in VERDICTS:
        raise UnknownNameError("decision", verdict, VERDICTS)
    if left_id == right_id:
        raise ConfigError("a duplicate pair names two different legacy rows")
    left, right = pair_key(str(left_id), str(right_id))
    with psycopg.connect(target_url) as conn:
        carried = conn.execute(
            "SELECT legacy_id, outcome FROM migration.crosswalk WHERE legacy_system = %s AND legacy_table = %s"
            " AND legacy_id = ANY(%s) ORDER BY 1",
            (LEGACY_SYSTEM, legacy_table, [left, right]),
        ).fetchall()
        if carried:
            which = ", ".join(f"{i} {o}" for i, o in carried)
            raise ConfigError(
                f"legacy {legacy_table} {left} and {right}: already carried ({which}); merge or split them "
                "in the new system"
            )
        conn.execute(
            "INSERT INTO migration.audit_log (actor, action, detail) VALUES (%s, 'decide duplicate pair', %s)",
            (
                actor,
                json.dumps(
                    {"legacy_table": legacy_table, "left_id": left, "right_id": right, "decision": verdict}
                ),
            ),
        )
        conn.execute(
            "INSERT INTO migration.duplicate_decision (legacy_system, legacy_table, left_id, right_id, decision,"
            " decided_by) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (legacy_system, legacy_table, left_id,"
            " right_id) DO UPDATE SET decision = EXCLUDED.decision, decided_by = EXCLUDED.decided_by,"
            " decided_at = now()",
            (LEGACY_SYSTEM, legacy_table, left, right, verdict, actor),
        )


# --- a run: its scope, its copy of the corrections, the overlay ---------------------------------


def vouched(target_url: str, corrections: Sequence[Correction]) -> None:
    """Refuse corrections the audit log does not record (by digest): a sealed file replaced by an older
    one, or written by anyone but ``cutover remediation``."""
    if not corrections:
        return
    with psycopg.connect(target_url) as conn:
        known = {
            digest
            for (digest,) in conn.execute(
                "SELECT detail->>'digest' FROM migration.audit_log WHERE action = 'correct'"
            )
        }
    key = _digest_key()
    unknown = [c for c in corrections if c.digest(key) not in known]
    if unknown:
        names = ", ".join(f"{c.legacy_table} {c.legacy_id} {c.column}" for c in unknown[:5])
        raise IntegrityError(
            f"{len(unknown)} correction(s) in the staging store are not in the audit log ({names}); "
            "refusing to apply any: record corrections with `cutover remediation correct`"
        )


def run_copy(run_key: str) -> str:
    """Where a run keeps the corrections it applies: every stage of the run reads the same ones."""
    return f"runs/{run_key}/corrections.enc"


def decisions_copy(run_key: str) -> str:
    """Where a run keeps the duplicate decisions it applies (ids only: plain JSON)."""
    return f"runs/{run_key}/duplicate_decisions.json"


def bind_run(store: Store, audit_url: str, run_key: str) -> int:
    """Copy the corrections, vouched for by the audit log of ``audit_url`` (the target), and the
    duplicate decisions recorded there, under the run (a retried task copies them again: a run not
    yet mapping may take a correction made since). The number of corrections copied."""
    corrections = load_corrections(store)
    vouched(audit_url, corrections)
    if corrections:
        _save(store, corrections, run_copy(run_key))
    decided = _decisions(audit_url)
    if decided:
        store.put(decisions_copy(run_key), json.dumps(decided, sort_keys=True).encode())
    return len(corrections)


def _decisions(target_url: str) -> dict[str, list[list[str]]]:
    """Legacy table → its decided pairs, ``[left, right, verdict]``; none where the target has no
    ledger yet (a first cutover's trial)."""
    try:
        with psycopg.connect(target_url) as conn:
            rows = conn.execute(
                "SELECT legacy_table, left_id, right_id, decision FROM migration.duplicate_decision"
                " WHERE legacy_system = %s ORDER BY 1, 2, 3",
                (LEGACY_SYSTEM,),
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}
    decided: dict[str, list[list[str]]] = {}
    for table, left, right, verdict in rows:
        decided.setdefault(table, []).append([left, right, verdict])
    return decided


def decisions(store: Store, run_key: str, table: str) -> dict[tuple[str, str], str]:
    """The duplicate decisions a run applies to ``table``: (left, right) → verdict."""
    name = decisions_copy(run_key)
    if not store.exists(name):
        return {}
    return {(left, right): verdict for left, right, verdict in json.loads(store.get(name)).get(table, [])}


def plan_remediation(store: Store, target_url: str, prefix: str) -> dict[str, Any]:
    """Stage the scope of a remediation run at ``prefix``: the corrected rows still rejected, and every
    reject whose root is one of them; their tables of :func:`~cutover.scope.whole_in_delta` whole.
    Counts only. NothingToRemediate when no correction waits."""
    from cutover.scope import Scope, whole_in_delta

    corrections = load_corrections(store)
    vouched(target_url, corrections)
    roots = sorted({(c.legacy_table, c.legacy_id) for c in corrections})
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(
            "SELECT r.legacy_table, r.legacy_id FROM migration.reject r"
            " JOIN unnest(%(tables)s::text[], %(ids)s::text[]) AS c(t, i)"
            "   ON (r.legacy_table = c.t AND r.legacy_id = c.i) OR (r.root_table = c.t AND r.root_legacy_id = c.i)"
            " WHERE r.legacy_system = %(sys)s",
            {"sys": LEGACY_SYSTEM, "tables": [t for t, _ in roots], "ids": [i for _, i in roots]},
        ).fetchall()
    if not rows:
        raise NothingToRemediate("no correction waits for a run: every corrected row is carried already")
    ids: dict[str, list[str]] = {}
    for table, legacy_id in rows:
        ids.setdefault(table, []).append(legacy_id)
    whole = tuple(sorted(t for t in whole_in_delta() if t in ids))
    scope = Scope(
        "rows",
        {t: pa.array(sorted(v), pa.string()) for t, v in ids.items()},
        label="remediation",
        whole=whole,
    )
    scope.save(store, prefix)
    carried_roots = {(t, i) for t, i in rows} & set(roots)
    log.info("remediation: %d corrected rows, %d rows in scope", len(carried_roots), len(rows))
    return {
        "corrected_rows": len(carried_roots),
        "rows": {t: len(v) for t, v in sorted(ids.items())},
        "whole": list(whole),
    }


def plan_run(store_url: str, target_url: str, run_id: str) -> dict[str, Any]:
    """``pt_remediate``'s first step: :func:`plan_remediation` under the run's prefix."""
    from cutover.evidence import run_key
    from cutover.staging.store import open_store

    return plan_remediation(open_store(store_url), target_url, f"runs/{run_key(run_id)}")


_CARRIED = """
SELECT s.t, coalesce(c.outcome, CASE WHEN r.legacy_id IS NOT NULL THEN 'rejected' END, 'absent'), count(*)
  FROM unnest(%(tables)s::text[], %(ids)s::text[]) AS s(t, i)
  LEFT JOIN migration.crosswalk c
    ON c.legacy_system = %(sys)s AND c.legacy_table = s.t AND c.legacy_id = s.i
  LEFT JOIN migration.reject r
    ON r.legacy_system = %(sys)s AND r.legacy_table = s.t AND r.legacy_id = s.i
 GROUP BY 1, 2
"""


def write_report(target_url: str, store_url: str, run_id: str, planned: dict[str, Any]) -> dict[str, Any]:
    """``remediation_report.json`` in the run's evidence: what became of every row of its scope (the
    rejects it set out to carry; a table taken whole counts only those), per table and outcome."""
    from cutover.evidence import run_key, writable
    from cutover.scope import Scope
    from cutover.staging.store import open_store

    scope = Scope.load(open_store(store_url), f"runs/{run_key(run_id)}")
    tables = [t for t, ids in scope.ids.items() for _ in range(len(ids))]
    ids = [i for v in scope.ids.values() for i in v.to_pylist()]
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(_CARRIED, {"sys": LEGACY_SYSTEM, "tables": tables, "ids": ids}).fetchall()
    outcomes: dict[str, dict[str, int]] = {}
    for table, outcome, count in rows:
        outcomes.setdefault(table, {})[outcome] = int(count)
    carried = sum(n for per in outcomes.values() for o, n in per.items() if o in ("migrated", "merged"))
    report = {
        "run_id": run_id,
        "corrected_rows": planned["corrected_rows"],
        "scope_rows": len(ids),
        "carried": carried,
        "rejected_again": sum(per.get("rejected", 0) for per in outcomes.values()),
        "tables": dict(sorted(outcomes.items())),
    }
    (writable(run_id) / "remediation_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    log.info("remediation %s: %d of %d rows carried", run_id, carried, len(ids))
    return report


@dataclass(frozen=True)
class Overlay:
    """One table's corrections, by column: the legacy ids (text) and their values (the column's type)."""

    table: str
    columns: dict[str, tuple[pa.Array, pa.Array]]


def overlay(store: Store, run_key: str, table: str) -> Overlay | None:
    """The corrections a run applies to ``table``, None when it has none."""
    name = run_copy(run_key)
    mine = [c for c in load_corrections(store, name) if c.legacy_table == table] if store.exists(name) else []
    if not mine:
        return None
    spec = legacy_tables()[table]
    columns: dict[str, tuple[pa.Array, pa.Array]] = {}
    for column in sorted({c.column for c in mine}):
        chosen = [c for c in mine if c.column == column]
        ids = pa.array([c.legacy_id for c in chosen], pa.string())
        values = pa.concat_arrays([_cast(spec.column_type(column), c.value) for c in chosen])
        columns[column] = (ids, values)
    return Overlay(table, columns)


def apply(batch: pa.RecordBatch | pa.Table, over: Overlay | None) -> pa.RecordBatch | pa.Table:
    """``batch`` with the corrected values in place of the legacy ones (rows matched by their key as
    text); the extract itself is never changed."""
    if over is None or not batch.num_rows:
        return batch
    key = legacy_tables()[over.table].key
    keys = pc.cast(batch.column(key), pa.string())
    for column, (ids, values) in over.columns.items():
        at = pc.index_in(keys, value_set=ids)
        hit = pc.is_valid(at)
        if not pc.any(hit).as_py():
            continue
        where = batch.schema.get_field_index(column)
        current = batch.column(where)
        corrected = pc.if_else(hit, pc.take(values.cast(current.type), pc.fill_null(at, 0)), current)
        batch = batch.set_column(where, batch.schema.field(where), corrected)
    return batch


# --- tracking, the worklist ---------------------------------------------------------------------

_OPEN = """
INSERT INTO migration.remediation (legacy_system, legacy_table, legacy_id, reason_code, opened_run)
SELECT legacy_system, legacy_table, legacy_id, reason_code, run_id
  FROM migration.reject
 WHERE legacy_system = %(sys)s AND reason_code <> %(cascade)s
ON CONFLICT (legacy_system, legacy_table, legacy_id) DO UPDATE
   SET status = 'open', reason_code = EXCLUDED.reason_code, closed_run = NULL, closed_at = NULL
 WHERE migration.remediation.status = 'closed'
"""
"""Every root reject is tracked; a closed row rejected again (a later edit broke it) opens again."""

_REOPEN = """
UPDATE migration.remediation AS m
   SET status = 'open', reason_code = r.reason_code
  FROM migration.reject AS r
 WHERE m.status = 'corrected' AND r.legacy_system = m.legacy_system AND r.legacy_table = m.legacy_table
   AND r.legacy_id = m.legacy_id AND r.run_id = %(run)s AND r.reason_code <> %(cascade)s
   AND m.decided_at < (SELECT started_at FROM migration.run WHERE run_id = %(run)s)
"""
"""A correction this run carried (made before it started) whose row it rejected again."""

_CLOSE = """
UPDATE migration.remediation AS m
   SET status = 'closed', closed_run = c.run_id, closed_at = now()
  FROM migration.crosswalk AS c
 WHERE m.status IN ('open', 'corrected') AND c.legacy_system = m.legacy_system
   AND c.legacy_table = m.legacy_table AND c.legacy_id = m.legacy_id
"""


_FRESH_ROOTS = """
UPDATE migration.reject AS r
   SET root_reason = root.reason_code
  FROM migration.reject AS root
 WHERE r.legacy_system = %(sys)s AND r.reason_code = %(cascade)s
   AND root.legacy_system = r.legacy_system AND root.legacy_table = r.root_table
   AND root.legacy_id = r.root_legacy_id AND r.root_reason IS DISTINCT FROM root.reason_code
"""
"""A cascade copies its root's reason when it is rejected; a later run (a delta, a remediation) that
rejects the root for another reason without reloading the cascade would leave the old one."""


def track(target_url: str, run_id: str) -> dict[str, int]:
    """After a run: refresh the cascades' root reasons, open the run's new root rejects, reopen
    corrections it rejected again, close what the ledger now carries. The count of tracked rows per
    status."""
    params = {"sys": LEGACY_SYSTEM, "cascade": CASCADE, "run": run_id}
    with psycopg.connect(target_url) as conn:
        conn.execute(_FRESH_ROOTS, params)
        conn.execute(_REOPEN, params)
        conn.execute(_OPEN, params)
        conn.execute(_CLOSE, params)
        counts: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM migration.remediation WHERE legacy_system = %s GROUP BY 1",
                (LEGACY_SYSTEM,),
            ).fetchall()
        )
    return {status: int(counts.get(status, 0)) for status in ("open", "corrected", "accepted", "closed")}


_WORKLIST = """
SELECT m.legacy_table, m.legacy_id, r.detail, m.reason_code, coalesce(d.n, 0), m.status, m.opened_run,
       m.decided_by
  FROM migration.remediation m
  LEFT JOIN migration.reject r
    ON r.legacy_system = m.legacy_system AND r.legacy_table = m.legacy_table AND r.legacy_id = m.legacy_id
  LEFT JOIN (SELECT root_table, root_legacy_id, count(*) AS n FROM migration.reject
              WHERE legacy_system = %(sys)s AND reason_code = %(cascade)s GROUP BY 1, 2) d
    ON d.root_table = m.legacy_table AND d.root_legacy_id = m.legacy_id
 WHERE m.legacy_system = %(sys)s AND m.status IN ('open', 'corrected', 'accepted')
 ORDER BY m.status <> 'open', coalesce(d.n, 0) DESC, m.legacy_table, length(m.legacy_id), m.legacy_id
"""


def worklist(target_url: str) -> list[dict[str, Any]]:
    """The tracked rows not yet closed, open ones first, the most costly first: legacy ids, the column
    at fault (the reject's ``detail``), codes, counts and people; never a value."""
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(_WORKLIST, {"sys": LEGACY_SYSTEM, "cascade": CASCADE}).fetchall()
    return [dict(zip(WORKLIST_COLUMNS, row, strict=True)) for row in rows]


REVIEW = "duplicate_review.csv"
"""The ambiguous duplicate pairs a run sent for review, in its evidence (legacy ids and scores)."""


def write_review(store: Store, run_key: str, folder: Path) -> int:
    """``duplicate_review.csv``: every pair the run's duplicate matching left to a person (table, the
    two legacy ids, score, reason code), from the review lists staged beside the mapped tables. The
    number of pairs."""
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(("legacy_table", "left_id", "right_id", "score", "reason"))
    pairs = 0
    for table, spec in mapping_specs().items():
        key = f"runs/{run_key}/mapped/{table}/_review.json"
        if not spec.merges or not store.exists(key):
            continue
        for pair in json.loads(store.get(key)).get("pairs", []):
            writer.writerow((table, pair["left_id"], pair["right_id"], pair["score"], pair.get("reason", "")))
            pairs += 1
    (folder / REVIEW).write_text(sink.getvalue())
    return pairs


def write_worklist(folder: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """``remediation.csv`` in an evidence folder."""
    sink = io.StringIO()
    writer = csv.DictWriter(sink, fieldnames=WORKLIST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = folder / WORKLIST
    path.write_text(sink.getvalue())
    return path
