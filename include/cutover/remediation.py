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
3. **The next run** (:mod:`cutover.remediation_run`). ``pt_remediate`` moves exactly the corrected
   rows and the rejects that depend on them (their patients' table whole, so that the duplicate
   matcher sees the same people); the mapping applies the corrections as an overlay on the extracted
   rows, so the extract stays the legacy system's own copy. Every other run (a later wave) applies
   them too, and a person's decisions on duplicate pairs (:func:`decide`).
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
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa

from cutover.config import LEGACY_SYSTEM
from cutover.errors import ConfigError, CutoverError, IntegrityError, UnknownNameError
from cutover.legacy.profile import legacy_tables, mapping_specs
from cutover.legacy.source import ARROW_TYPES, as_int
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


NOTE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
"""What an acceptance's note may be: a code, as ``migration.remediation``'s CHECK has it (V012)."""


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


def save_corrections(store: Store, corrections: Sequence[Correction], name: str = CORRECTIONS) -> None:
    body = json.dumps({"corrections": [asdict(c) for c in corrections]}, sort_keys=True).encode()
    store.put(name, seal(body, staging_key(), name))


def cast_value(column_type: str, value: str | None) -> pa.Array:
    """``value`` as the legacy column's Arrow type; ConfigError naming the type (never the value). An
    int is read as the extract reads a legacy one (:func:`~cutover.legacy.source.as_int`): a whole
    number within int64, never Arrow's wider reading (``0x10`` is no id)."""
    if column_type == "int" and value is not None:
        number, valid = as_int(value)
        if not valid:
            raise ConfigError(f"a corrected value must be a legacy {column_type} value; this one is not")
        return pa.array([number], ARROW_TYPES[column_type])
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
    cast_value(spec.column_type(column), value)


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
        save_corrections(store, sorted(kept.values(), key=lambda c: c.key))
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
    if not NOTE.fullmatch(note):
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
