"""Where one legacy record went: ``cutover trace LEGACY_TABLE LEGACY_ID``.

The auditor's question "where did patient X's record go?" answered from the migration ledger
alone — ``migration.crosswalk`` (migrated, or merged into which surviving record),
``migration.reject`` (reason code, stage, and for a row the target refused the constraint's name;
for a cascade the chain of rejected parents down to its root cause, :mod:`cutover.lineage`) and
``migration.flag`` — plus, for a legacy row the mapping exploded into several target rows (a
free-text CPT line), every one of them. Ids and codes only: the answer never reads a chart.

Every lookup is written to ``migration.audit_log`` (actor, action ``trace``, the table and id
asked for) before the ledger is read, so even a lookup that fails half-way leaves its trace: the
audit control of 45 CFR 164.312(b). Access itself is the target database's: whoever can read the
``migration`` schema can trace, and the log says who did.
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import json
import logging
import os
import sys
from typing import Any, Literal, TypedDict

import psycopg
from psycopg import sql

from cutover.config import LEGACY_SYSTEM
from cutover.errors import ConfigError, TransientError, UnknownNameError
from cutover.ids import legacy_uuid
from cutover.legacy.profile import mapping_specs
from cutover.lineage import CASCADE, Step, chain, pulled_along

log = logging.getLogger(__name__)

Outcome = Literal["migrated", "merged", "rejected", "unknown"]

PARTS_PER_QUERY = 32
"""Exploded parts looked up per query; a row with more parts takes another round."""


class TraceResult(TypedDict):
    """Where one legacy row went. Ids are text (uuids of the target, legacy keys of the legacy system)."""

    legacy_system: str
    legacy_table: str
    legacy_id: str
    outcome: Outcome
    run_id: str | None
    """The run that recorded the outcome."""
    new_table: str | None
    """``pt.<table>`` that carries the row (for a rejected row: where it would have gone)."""
    new_id: str | None
    """The row's own deterministic id; for a merged row it is not in the target."""
    merged_into: str | None
    """For a merged row: the id of the surviving target row that carries it."""
    survivor_legacy_id: str | None
    """For a merged row: the legacy id of the surviving record."""
    merged_from: list[str]
    """For a surviving record: legacy ids of the duplicates merged into it."""
    reason_code: str | None
    stage: str | None
    detail: str | None
    """Non-PHI detail of a reject: the constraint the target refused the row with, a column name."""
    parent_table: str | None
    parent_legacy_id: str | None
    """For a reject a reference decided: the parent it names (rejected, missing, another patient's)."""
    root_table: str | None
    root_legacy_id: str | None
    root_reason: str | None
    """For a reject: its root cause (itself unless it is a cascade); None where the ledger has none."""
    lineage: list[Step]
    """For a reject: the row, its rejected parents down to the root, and a parent the root names."""
    pulled_along: dict[str, int]
    """For a reject that is its own root: per legacy table, the rejects it pulled along."""
    flags: list[str]
    target_rows: list[str]
    """Ids of the target rows that carry the legacy row: its own id and, for an exploded row, one per
    further part; for a merged row, the survivor."""
    in_target: bool
    """Every id of ``target_rows`` is present in the target table."""


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"uid:{os.getuid()}"


def _check_table(legacy_table: str) -> str:
    """The target table of a legacy table; an unknown name is refused with the known ones, closest first."""
    if legacy_table not in mapping_specs():
        raise UnknownNameError("legacy table", legacy_table, mapping_specs())
    return mapping_specs()[legacy_table].target


def _connect(target_url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(target_url)
    except psycopg.OperationalError as exc:  # the message may carry the host; the URL its password
        raise TransientError(f"target database unreachable ({type(exc).__name__})") from exc


def _audit(target_url: str, actor: str, legacy_table: str, legacy_id: str) -> None:
    """Record the lookup in its own committed transaction, before anything is read.

    A role that may read the ledger but not write the audit log cannot trace at all: it fails here,
    before a single ledger row is read.
    """
    with _connect(target_url) as conn:
        try:
            conn.execute(
                "INSERT INTO migration.audit_log (actor, action, detail) VALUES (%s, 'trace', %s)",
                (actor, json.dumps({"legacy_table": legacy_table, "legacy_id": legacy_id})),
            )
        except psycopg.errors.UndefinedTable as exc:
            raise ConfigError(
                "the target database has no migration ledger (migration.audit_log): "
                "no cutover has run against it; run `cutover migrate` or a cutover first"
            ) from exc


def _exploded_parts(
    conn: psycopg.Connection[Any], target: str, legacy_table: str, legacy_id: str
) -> list[str]:
    """Ids of parts 2, 3, … of an exploded legacy row (``<id>#<seq>`` row keys), as far as they exist."""
    found: list[str] = []
    for start in itertools.count(2, PARTS_PER_QUERY):
        ids = [
            legacy_uuid(LEGACY_SYSTEM, legacy_table, f"{legacy_id}#{n}")
            for n in range(start, start + PARTS_PER_QUERY)
        ]
        have = {
            row[0]
            for row in conn.execute(
                sql.SQL("SELECT id FROM pt.{} WHERE id = ANY(%s)").format(sql.Identifier(target)), (ids,)
            ).fetchall()
        }
        run = list(itertools.takewhile(have.__contains__, ids))
        found += [str(i) for i in run]
        if len(run) < PARTS_PER_QUERY:
            return found
    return found  # pragma: no cover - itertools.count never ends


def _present(conn: psycopg.Connection[Any], target: str, ids: list[str]) -> bool:
    if not ids:
        return False
    (count,) = conn.execute(
        sql.SQL("SELECT count(*) FROM pt.{} WHERE id = ANY(%s::uuid[])").format(sql.Identifier(target)),
        (ids,),
    ).fetchone() or (0,)
    return int(count) == len(ids)


def trace(target_url: str, legacy_table: str, legacy_id: str, *, actor: str) -> TraceResult:
    """Where one legacy record went: migrated (new id), merged (into which record), or rejected (why).

    The lookup is written to ``migration.audit_log`` first. A legacy id with no outcome in the
    ledger comes back as outcome ``unknown`` (no run has loaded it, or it does not exist).
    """
    if not actor:
        raise ConfigError("trace needs the actor: who looks the record up goes to the audit log")
    legacy_id = legacy_id.strip()
    target = _check_table(legacy_table)
    _audit(target_url, actor, legacy_table, legacy_id)
    key = {"sys": LEGACY_SYSTEM, "table": legacy_table, "id": legacy_id}
    result = TraceResult(
        legacy_system=LEGACY_SYSTEM,
        legacy_table=legacy_table,
        legacy_id=legacy_id,
        outcome="unknown",
        run_id=None,
        new_table=f"pt.{target}",
        new_id=None,
        merged_into=None,
        survivor_legacy_id=None,
        merged_from=[],
        reason_code=None,
        stage=None,
        detail=None,
        parent_table=None,
        parent_legacy_id=None,
        root_table=None,
        root_legacy_id=None,
        root_reason=None,
        lineage=[],
        pulled_along={},
        flags=[],
        target_rows=[],
        in_target=False,
    )
    with _connect(target_url) as conn:
        crossed = conn.execute(
            "SELECT new_table, new_id, outcome, merged_into, run_id FROM migration.crosswalk"
            " WHERE legacy_system = %(sys)s AND legacy_table = %(table)s AND legacy_id = %(id)s",
            key,
        ).fetchone()
        rejected = conn.execute(
            "SELECT reason_code, stage, detail, run_id, parent_table, parent_legacy_id,"
            " root_table, root_legacy_id, root_reason FROM migration.reject"
            " WHERE legacy_system = %(sys)s AND legacy_table = %(table)s AND legacy_id = %(id)s",
            key,
        ).fetchone()
        result["flags"] = [
            code
            for (code,) in conn.execute(
                "SELECT flag_code FROM migration.flag"
                " WHERE legacy_system = %(sys)s AND legacy_table = %(table)s AND legacy_id = %(id)s ORDER BY 1",
                key,
            ).fetchall()
        ]
        if crossed is not None:
            _fill_crosswalk(conn, result, crossed)
        elif rejected is not None:
            reason, stage, detail, run_id, *lineage = rejected
            result["outcome"], result["run_id"] = "rejected", run_id
            result["reason_code"], result["stage"], result["detail"] = reason, stage, detail
            (
                result["parent_table"],
                result["parent_legacy_id"],
                result["root_table"],
                result["root_legacy_id"],
                result["root_reason"],
            ) = lineage
            result["lineage"] = chain(conn, legacy_table, legacy_id)
            if (result["root_table"], result["root_legacy_id"]) == (legacy_table, legacy_id):
                result["pulled_along"] = pulled_along(conn, legacy_table, legacy_id)
    log.info("trace by %s: %s %s → %s", actor, legacy_table, legacy_id, result["outcome"])
    return result


def _fill_crosswalk(conn: psycopg.Connection[Any], result: TraceResult, crossed: tuple[Any, ...]) -> None:
    new_table, new_id, outcome, merged_into, run_id = crossed
    target = _check_target(new_table)
    legacy_table = result["legacy_table"]
    result["outcome"], result["run_id"] = outcome, run_id
    result["new_table"], result["new_id"] = f"pt.{target}", str(new_id)
    if outcome == "merged":
        survivor = conn.execute(
            "SELECT legacy_id FROM migration.crosswalk WHERE new_table = %s AND new_id = %s"
            " AND legacy_system = %s AND legacy_table = %s AND outcome = 'migrated'",
            (new_table, merged_into, LEGACY_SYSTEM, legacy_table),
        ).fetchone()
        result["merged_into"] = str(merged_into)
        result["survivor_legacy_id"] = survivor[0] if survivor else None
        result["target_rows"] = [str(merged_into)]
    else:
        result["merged_from"] = [
            legacy_id
            for (legacy_id,) in conn.execute(
                "SELECT legacy_id FROM migration.crosswalk WHERE merged_into = %s"
                " AND legacy_system = %s AND legacy_table = %s ORDER BY length(legacy_id), legacy_id",
                (new_id, LEGACY_SYSTEM, legacy_table),
            ).fetchall()
        ]
        parts = (
            _exploded_parts(conn, target, legacy_table, result["legacy_id"])
            if mapping_specs()[legacy_table].explode
            else []
        )
        result["target_rows"] = [str(new_id), *parts]
    result["in_target"] = _present(conn, target, result["target_rows"])


def _check_target(new_table: str) -> str:
    """The crosswalk's target table, refused unless a spec names it (it is used as an identifier)."""
    if new_table not in {spec.target for spec in mapping_specs().values()}:
        raise ConfigError(f"crosswalk names an unknown target table {new_table!r}")
    return new_table


def format_chain(steps: list[Step]) -> str:
    """A reject's chain on one line, the row first and its root cause last.

    >>> format_chain([
    ...     Step(legacy_table="charges", legacy_id="119", outcome="rejected", reason_code="parent_rejected"),
    ...     Step(legacy_table="visits", legacy_id="551", outcome="rejected", reason_code="parent_rejected"),
    ...     Step(legacy_table="patients", legacy_id="11", outcome="rejected", reason_code="date_impossible"),
    ... ])
    'charges 119: rejected parent_rejected ← visits 551 (parent_rejected) ← patients 11 (date_impossible)'
    >>> format_chain([
    ...     Step(legacy_table="coverage", legacy_id="7", outcome="rejected", reason_code="orphan"),
    ...     Step(legacy_table="patients", legacy_id="2205", outcome="absent", reason_code=None),
    ... ])
    'coverage 7: rejected orphan ← patients 2205 (no outcome in the ledger)'
    """
    if not steps:
        return ""
    first, *parents = steps
    links = [f"{first['legacy_table']} {first['legacy_id']}: rejected {first['reason_code']}"]
    for step in parents:
        if step["outcome"] == "rejected":
            state = step["reason_code"]
        elif step["outcome"] == "absent":
            state = "no outcome in the ledger" if step["legacy_id"] is not None else "none given"
        else:
            state = step["outcome"]
        links.append(f"{step['legacy_table']} {step['legacy_id'] or ''}".rstrip() + f" ({state})")
    return " ← ".join(links)


def format_trace(result: TraceResult) -> str:
    """The trace for a terminal: one headline, then the ids that answer it."""
    r = result
    head = f"{r['legacy_table']} {r['legacy_id']} (legacy system {r['legacy_system']}): "
    lines: list[str] = []
    if r["outcome"] == "unknown":
        return head + "no outcome in the migration ledger (not loaded by any run, or no such legacy row)"
    if r["outcome"] == "rejected":
        lines.append(head + f"REJECTED at {r['stage']}: {r['reason_code']}")
        if r["detail"]:
            lines.append(f"  detail       {r['detail']}")
        if len(r["lineage"]) > 1:
            lines.append(f"  lineage      {format_chain(r['lineage'])}")
        own_root = (r["root_table"], r["root_legacy_id"]) == (r["legacy_table"], r["legacy_id"])
        if r["root_table"] is not None and not own_root:
            lines.append(f"  root cause   {r['root_table']} {r['root_legacy_id']}: {r['root_reason']}")
        elif r["root_table"] is None and r["reason_code"] == CASCADE:
            lines.append("  root cause   not recorded (rejected before the ledger kept lineage)")
        if r["pulled_along"]:
            pulled = ", ".join(f"{n:,} {table}" for table, n in r["pulled_along"].items())
            lines.append(f"  pulled along {pulled}")
        lines.append(f"  would go to  {r['new_table']}")
    elif r["outcome"] == "merged":
        survivor = r["survivor_legacy_id"] or "unknown"
        lines.append(head + f"MERGED into {r['new_table']} {r['merged_into']}")
        lines.append(f"  survivor     legacy {r['legacy_table']} {survivor}")
        lines.append(f"  own id       {r['new_id']} (not in the target: merged)")
    else:
        lines.append(head + f"MIGRATED to {r['new_table']} {r['new_id']}")
        if len(r["target_rows"]) > 1:
            lines.append(f"  exploded     {len(r['target_rows'])} target rows:")
            lines += [f"    part {n}     {row}" for n, row in enumerate(r["target_rows"], start=1)]
        if r["merged_from"]:
            lines.append(f"  merged here  legacy {r['legacy_table']} {', '.join(r['merged_from'])}")
    if r["outcome"] != "rejected":
        lines.append(
            f"  in target    {'yes' if r['in_target'] else 'NO: the ledger names rows the target lacks'}"
        )
    if r["flags"]:
        lines.append(f"  flags        {', '.join(r['flags'])}")
    lines.append(f"  run          {r['run_id'] or 'unknown'}")
    return "\n".join(lines)


def cmd_trace(args: argparse.Namespace) -> int:
    """``cutover trace``: print where the record went; 0 when the ledger has an outcome for it, else 1."""
    from cutover.config import configured_url
    from cutover.embedded import default_url

    _check_table(args.legacy_table)  # a typo is refused before the target database is started or reached
    url = configured_url("target_db") or default_url("target_db")
    result = trace(url, args.legacy_table, args.legacy_id, actor=args.actor or _actor())
    out = json.dumps(result, indent=2) if args.json else format_trace(result)
    sys.stdout.write(out + "\n")
    return 0 if result["outcome"] != "unknown" else 1
