"""The error hierarchy: say whether a retry can help.

Messages name tables, batches, counts and legacy ids, never patient values.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CutoverError(Exception):
    """Base of every error Cutover raises on purpose."""


class TerminalError(CutoverError):
    """Bad data, a broken contract or a refused precondition: retrying cannot help."""


class TransientError(CutoverError):
    """A network, database or storage hiccup: Airflow may retry the task."""


class ConfigError(TerminalError):
    """A connection or setting is missing or malformed."""


class IntegrityError(TerminalError):
    """A checksum, count or manifest does not match what was expected."""


class PolicyError(TerminalError):
    """The run broke a policy of thresholds.yaml (e.g. too many rejects in a table)."""


class UnknownNameError(ConfigError):
    """A name the user typed (a legacy table, a DAG) that is not one of the known ones.

    The message names it and lists the known names, closest first.

    >>> str(UnknownNameError("legacy table", "visit", ["clinics", "patients", "visits"]))
    "unknown legacy table 'visit'; known (closest first): visits, clinics, patients"
    """

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind, self.name, self.known = kind, name, closest_first(name, known)
        super().__init__(f"unknown {kind} {name!r}; known (closest first): {', '.join(self.known)}")


def closest_first(name: str, known: Iterable[str]) -> list[str]:
    """``known``, the names most like ``name`` first (difflib's ratio; ties keep their order).

    >>> closest_first("pt_bakup", ["pt_assess", "pt_cutover", "pt_backup"])
    ['pt_backup', 'pt_assess', 'pt_cutover']
    """
    names = list(known)
    score = {n: difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio() for n in names}
    return sorted(names, key=lambda n: -score[n])


# --- retry: terminal or transient, whatever raised it ---------------------------------------------

_TERMINAL_MESSAGES = (
    "password authentication failed",
    "authentication failed",
    "no password supplied",
    "access denied for user",
    "role ",  # role "x" does not exist
    "does not exist",  # database "x" does not exist
    "unknown database",
    "no pg_hba.conf entry",
    "invalid dsn",
    "invalid connection option",
    "certificate verify failed",
    "file is not a database",
    "database disk image is malformed",
    "unable to open database file",
)
"""What a driver says when the configuration, not the moment, is wrong (lower case)."""

_TERMINAL_S3_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "InvalidBucketName",
    "AuthorizationHeaderMalformed",
}


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def retry_can_help(exc: BaseException) -> bool:
    """Whether retrying the task could succeed: False for a user's mistake or bad data, True for an outage.

    The exception and its causes decide: a :class:`TerminalError` anywhere, a driver's refusal of
    the credentials or the database name (wrapped or not), a corrupt or missing file, an S3 access
    error are terminal, even under a :class:`TransientError` that wrapped a connection failure;
    a :class:`TransientError`, a refused or timed-out connection, a server that went away are
    transient; anything else is transient (Airflow's retries decide).

    >>> import sqlite3
    >>> retry_can_help(ConfigError("legacy_db: no SQLite file"))
    False
    >>> retry_can_help(TransientError("cannot connect"))
    True
    >>> try:
    ...     try:
    ...         raise OSError('FATAL:  password authentication failed for user "cutover"')
    ...     except OSError as exc:
    ...         raise TransientError("target_db: cannot connect") from exc
    ... except TransientError as wrapped:
    ...     retry_can_help(wrapped)
    False
    >>> retry_can_help(sqlite3.DatabaseError("file is not a database"))
    False
    """
    for err in _chain(exc):
        if isinstance(err, TerminalError | FileNotFoundError | PermissionError | IsADirectoryError):
            return False
        response = getattr(err, "response", None)  # botocore's ClientError
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in _TERMINAL_S3_CODES:
            return False
        text = str(err).lower()
        if any(marker in text for marker in _TERMINAL_MESSAGES) and not isinstance(err, TransientError):
            return False
    return True


def one_line(exc: BaseException) -> str:
    """The exception as one line for a log or a grid: its class and its message's first line.

    >>> one_line(ConfigError("legacy_db: no SQLite file at legacy.db\\nmore"))
    'ConfigError: legacy_db: no SQLite file at legacy.db'
    """
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
