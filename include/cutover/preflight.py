"""A DAG's first task: is everything it needs configured and reachable? One line if not, before any work.

Each check opens what a later task would open — the legacy database, the target, the staging store,
the cutover plan — and does nothing else (a ``SELECT 1``, a listing). A mistake (a wrong password, a
database or file that does not exist, a malformed plan) is a :class:`~cutover.errors.ConfigError`
naming every one found, so the run fails in seconds with nothing touched and is not retried; a
server that does not answer is a :class:`~cutover.errors.TransientError`, retried as any outage.
Messages name the connection and the kind of failure, never a password or a value.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from cutover.errors import ConfigError, CutoverError, TransientError, one_line, retry_can_help

log = logging.getLogger(__name__)


def _legacy(url: str, profile_ref: str | None = None) -> None:
    """The legacy database answers; or, for a CSV delivery, its folder lists and every file the
    profile names is there with every column (nothing is fetched yet); and the profile reads what
    ``legacy_db`` is (a database or a delivery)."""
    from cutover.legacy.profile import current, load_profile
    from cutover.legacy.source import connect, dialect_of
    from cutover.legacy.transport import is_delivery, open_delivery

    profile = load_profile(profile_ref) if profile_ref is not None else current()
    if is_delivery(url) != (profile.source_format == "csv"):
        given = "a CSV delivery" if is_delivery(url) else "a database"
        raise ConfigError(
            f"legacy_db names {given}, but profile {profile.name} reads "
            f"{'CSV files' if profile.source_format == 'csv' else 'a database'}"
        )
    if is_delivery(url):
        from cutover.legacy.delivery import check_source

        with open_delivery(url) as source:
            check_source(source, profile)
        return
    with connect(url) as conn:
        cur = conn.cursor()
        try:
            cur.execute("SELECT 1 FROM sqlite_master LIMIT 1" if dialect_of(url) == "sqlite" else "SELECT 1")
            cur.fetchall()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"legacy_db: not a readable SQLite database ({type(exc).__name__})") from exc
        finally:
            cur.close()


def _target(url: str) -> None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        raise TransientError(f"target_db: cannot connect ({type(exc).__name__})") from exc


def _store(url: str) -> None:
    from cutover.staging.store import open_store

    open_store(url).exists("_preflight")


def _plan() -> None:
    from cutover.plan import load_plan, plan_path

    try:
        load_plan()
    except CutoverError:
        raise
    except Exception as exc:  # a YAML or a value error: the file is wrong, not the moment
        raise ConfigError(f"cutover plan {plan_path().name} is malformed ({type(exc).__name__})") from exc


def _profile(ref: str, parsed_tables: list[str] | None) -> None:
    """The profile ``ref`` names holds (:mod:`cutover.legacy.profile_check`), and the DAG was built
    over its tables (task groups are made when Airflow parses a DAG)."""
    from cutover.legacy.profile import load_profile

    profile = load_profile(ref)  # a ProfileError: file:line: field: what is wrong
    if parsed_tables is not None and profile.mapped_tables != list(parsed_tables):
        raise ConfigError(
            f"profile {profile.name} maps the legacy tables {', '.join(profile.mapped_tables)}, but the DAG was "
            f"parsed with {', '.join(parsed_tables) or 'none'}: set CUTOVER_PROFILE (or the legacy_db "
            "extra) for the deployment so Airflow builds the DAGs over this profile"
        )


def check_configuration(
    *,
    legacy_url: str | None = None,
    target_url: str | None = None,
    store_url: str | None = None,
    plan: bool = False,
    profile_ref: str | None = None,
    parsed_tables: list[str] | None = None,
) -> dict[str, str]:
    """Check what is given; ``{name: "ok"}``, or raise naming every problem (terminal when any is).

    The legacy profile first (``profile_ref``; with ``parsed_tables``, the DAG's tables must be the
    profile's): a broken profile is refused before any database is touched.
    """
    if profile_ref is not None:
        _profile(profile_ref, parsed_tables)
    checks: list[tuple[str, Callable[[], None]]] = []
    if legacy_url is not None:
        checks.append(("legacy_db", lambda: _legacy(legacy_url, profile_ref)))
    if target_url is not None:
        checks.append(("target_db", lambda: _target(target_url)))
    if store_url is not None:
        checks.append(("staging_store", lambda: _store(store_url)))
    if plan:
        checks.append(("cutover plan", _plan))
    problems: list[tuple[str, BaseException]] = []
    for name, check in checks:
        try:
            check()
        except Exception as exc:  # every failure is reported, classified below
            problems.append((name, exc))
    if not problems:
        return {name: "ok" for name, _ in checks}
    line = "; ".join(_describe(name, exc) for name, exc in problems)
    if any(not retry_can_help(exc) for _, exc in problems):
        raise ConfigError(f"configuration check failed: {line}")
    raise TransientError(f"configuration check: not reachable yet: {line}")


def _describe(name: str, exc: BaseException) -> str:
    """``name``: what went wrong, from a Cutover error's own message, else the cause's kind only
    (a driver's message may quote a user name or a value)."""
    if isinstance(exc, CutoverError):
        text = one_line(exc).split(": ", 1)[-1]
        cause = exc.__cause__
        if cause is not None and not retry_can_help(cause):
            text += f" — {_kind(cause)}"
        return text if text.startswith(name) else f"{name}: {text}"
    return f"{name}: {_kind(exc)}"


def _kind(exc: BaseException) -> str:
    """What kind of refusal a driver error is, in words, never its message."""
    text = str(exc).lower()
    for marker, words in (
        ("password authentication failed", "the password was refused"),
        ("access denied", "the credentials were refused"),
        ("no password supplied", "no password given"),
        ("does not exist", "the database or role does not exist"),
        ("unknown database", "the database does not exist"),
        ("unable to open database file", "no such file"),
        ("file is not a database", "the file is not a database"),
        ("malformed", "the file is corrupt"),
        ("certificate verify failed", "the server's certificate was not trusted"),
    ):
        if marker in text:
            return words
    return type(exc).__name__
