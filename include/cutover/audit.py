"""The audit log's hash chain: verify it, and read its head to anchor it elsewhere.

``migration.audit_log`` is written by the loader role, which may only INSERT into it and read it
(:mod:`cutover.security.roles`); a trigger refuses UPDATE, DELETE and TRUNCATE from anyone. Neither
binds the schema's owner: the owner may disable the trigger and change rows. What the owner cannot
do is change history *without leaving a trace*: since V007 each entry stores the id and hash of the
entry before it and its own hash, ``sha256(prev_hash || content)``, computed by a BEFORE INSERT
trigger under a transaction advisory lock (so concurrent inserts chain in commit order, with
consecutive ids). :func:`verify` recomputes the chain here, in Python, from the rows alone — not with
the database's own functions, which the owner could redefine — and names the first entry that is
missing, altered, reordered or unchained.

What still holds against an owner who recomputes the whole chain after a change: the head
(:func:`audit_head`, count, last id and hash) recorded outside the database — ``cutover audit verify``
prints it, and each run's evidence records it at the end of the run — no longer matches: pass an
earlier head as ``anchor`` and :func:`verify` checks that entry is still there with that hash.

>>> content(1, None, datetime(2026, 11, 27, 18, 0, tzinfo=UTC), "ops", "start pt_cutover", "r1", None)
'1:1|N|26:2026-11-27T18:00:00.000000|3:ops|16:start pt_cutover|2:r1|N'
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from cutover.errors import TransientError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""


def os_user() -> str:
    """The operating-system user of this process: the actor of what a person runs at a terminal
    (``cutover run``, ``cutover trace``), never a module's name."""
    import getpass
    import os

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's bare uid)
        return f"uid {os.getuid()}"


def content(
    entry_id: int,
    prev_id: int | None,
    at: datetime,
    actor: str,
    action: str,
    run_id: str | None,
    detail: str | None,
) -> str:
    """An entry's canonical text, as ``migration.audit_content`` computes it in the database.

    Every field length-prefixed (``N`` for NULL) and joined by ``|``; the time in UTC with
    microseconds; ``detail`` as PostgreSQL's own ``jsonb`` text (read as ``detail::text``).
    """
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    fields = (str(entry_id), None if prev_id is None else str(prev_id), stamp, actor, action, run_id, detail)
    return "|".join("N" if f is None else f"{len(f)}:{f}" for f in fields)


def entry_hash(prev_hash: str, text: str) -> str:
    """sha256 (hex) of the previous entry's hash followed by this entry's canonical text.

    >>> entry_hash(GENESIS, "x") == hashlib.sha256((GENESIS + "x").encode()).hexdigest()
    True
    """
    return hashlib.sha256((prev_hash + text).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify` found: ``ok``, the entries checked and the head, or the first break."""

    ok: bool
    count: int
    last_id: int | None
    last_hash: str | None
    broken_id: int | None = None
    problem: str | None = None

    def line(self) -> str:
        """One line for the terminal: ids and hashes only."""
        if self.ok:
            return f"audit log OK: {self.count} entries, head id {self.last_id} hash {self.last_hash}"
        return f"audit log BROKEN at id {self.broken_id}: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "last_id": self.last_id,
            "last_hash": self.last_hash,
            "broken_id": self.broken_id,
            "problem": self.problem,
        }


_ROWS = (
    "SELECT id, prev_id, prev_hash, hash, at, actor, action, run_id, detail::text"
    " FROM migration.audit_log ORDER BY id"
)


def _connect(target_url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(target_url, application_name="cutover-audit")
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot connect to the target database ({type(exc).__name__})") from exc


def verify(target_url: str, *, anchor: tuple[int, str] | None = None) -> ChainReport:
    """Recompute the audit log's chain in id order; the first break, or the head.

    A break is named by the entry it is found at: ``missing`` (an entry chains to an id that is
    not there: that id was deleted), ``altered`` (an entry's hash is not that of its content, or
    is not the hash the next entry chained to), ``out of order`` (an entry chains to another than
    the one before it), ``unchained`` (no hash: written with the chain's trigger disabled).
    ``anchor`` (id, hash) is a head recorded earlier: that entry must still be there, unchanged.
    """
    count, prev_id, prev_hash = 0, None, GENESIS
    seen: set[int] = set()
    with _connect(target_url) as conn, conn.cursor(name="audit_chain") as rows:
        rows.itersize = 10_000
        rows.execute(_ROWS)
        for entry_id, link_id, link_hash, stored, at, actor, action, run_id, detail in rows:
            problem = _break(entry_id, link_id, link_hash, stored, prev_id, prev_hash, seen)
            if problem is None:
                text = content(entry_id, link_id, at, actor, action, run_id, detail)
                if stored != entry_hash(link_hash, text):
                    problem = entry_id, "altered: its content does not match its hash"
                elif anchor is not None and entry_id == anchor[0] and stored != anchor[1]:
                    problem = entry_id, "altered: its hash differs from the anchor recorded earlier"
            if problem is not None:
                return ChainReport(False, count, prev_id, prev_hash, *problem)
            seen.add(entry_id)
            count, prev_id, prev_hash = count + 1, entry_id, stored
    if anchor is not None and anchor[0] not in seen:
        return ChainReport(False, count, prev_id, prev_hash, anchor[0], "missing: the anchor's entry is gone")
    return ChainReport(True, count, prev_id, prev_hash if count else None)


def _break(
    entry_id: int,
    link_id: int | None,
    link_hash: str | None,
    stored: str | None,
    prev_id: int | None,
    prev_hash: str,
    seen: set[int],
) -> tuple[int, str] | None:
    """How an entry's link to the entry before it is broken, if it is: (the id to name, what is wrong)."""
    if stored is None or link_hash is None:
        return entry_id, "unchained: no hash (written with the chain's trigger disabled)"
    if link_id != prev_id:
        if link_id is not None and link_id not in seen:
            return link_id, f"missing: entry {link_id} is gone (entry {entry_id} chains to it)"
        return entry_id, f"out of order: chains to entry {link_id}, but follows entry {prev_id}"
    if link_hash != prev_hash:
        return prev_id or entry_id, f"altered: its hash is not the one entry {entry_id} chained to"
    return None


def audit_head(target_url: str) -> dict[str, Any]:
    """The chain's head, to record outside the database (a run's ``summary.json``): entry count,
    last id and last hash. Not a verification: :func:`verify` an earlier head as its ``anchor``.
    """
    with _connect(target_url) as conn:
        row = conn.execute(
            "SELECT count(*), (SELECT id FROM migration.audit_log ORDER BY id DESC LIMIT 1),"
            " (SELECT hash FROM migration.audit_log ORDER BY id DESC LIMIT 1) FROM migration.audit_log"
        ).fetchone()
    count, last_id, last_hash = row if row else (0, None, None)
    return {"count": int(count), "last_id": last_id, "last_hash": last_hash}


def parse_anchor(text: str) -> tuple[int, str]:
    """``ID:HASH`` as :func:`verify` takes it.

    >>> parse_anchor("12:" + "ab" * 32)[0]
    12
    """
    from cutover.errors import ConfigError

    entry, _, digest = text.partition(":")
    if not entry.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError("--anchor takes ID:HASH, the head printed by an earlier audit verify")
    return int(entry), digest
