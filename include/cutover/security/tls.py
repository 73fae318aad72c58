"""TLS to PostgreSQL (45 CFR 164.312(e): transmission security).

libpq does the work: ``sslmode=verify-full`` checks that the server's certificate chains to
``sslrootcert`` *and* that the host name in the URL is in its subject alternative names. The
options travel in the URL's query (``cutover.config`` carries them from an Airflow connection's
extras), so every part of the pipeline that takes a target URL uses them unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict
from urllib.parse import parse_qs, urlsplit

import psycopg

from cutover.errors import ConfigError

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
SSL_MODES: tuple[SslMode, ...] = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

TLS_PARAMS: tuple[str, ...] = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "sslcertmode",
    "sslnegotiation",
)
"""libpq's TLS connection parameters (PostgreSQL 17 names; older servers ignore none of them: they are
client-side)."""


class ConnectionSecurity(TypedDict):
    """What a connection's transport is, as the server sees it: no secret, no patient value."""

    ssl: bool
    version: str | None
    cipher: str | None
    bits: int | None
    sslmode: str


def sslmode(url: str) -> str:
    """The ``sslmode`` a URL asks for; libpq's default ``prefer`` when it names none.

    >>> sslmode("postgresql://u@db/pt?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem")
    'verify-full'
    >>> sslmode("postgresql://u@db/pt")
    'prefer'
    """
    values = parse_qs(urlsplit(url).query).get("sslmode")
    return values[-1] if values else "prefer"


def require_verified_tls(url: str) -> None:
    """Refuse a URL that would send patient data without a verified server: only ``verify-full`` passes.

    A unix-socket URL (``?host=/path``: the embedded default) never leaves the machine and passes.

    >>> require_verified_tls("postgresql://u@db/pt?sslmode=verify-full")
    >>> require_verified_tls("postgresql://u@db/pt?sslmode=require")
    Traceback (most recent call last):
    ...
    cutover.errors.ConfigError: target_db: sslmode=require does not verify the server; use sslmode=verify-full with sslrootcert
    """
    parts = urlsplit(url)
    hosts = parse_qs(parts.query).get("host", [])
    if not parts.hostname and hosts and all(h.startswith("/") for h in hosts):
        return
    mode = sslmode(url)
    if mode not in SSL_MODES:
        raise ConfigError(f"target_db: unknown sslmode {mode!r}")
    if mode != "verify-full":
        raise ConfigError(
            f"target_db: sslmode={mode} does not verify the server; use sslmode=verify-full with sslrootcert"
        )


def connection_security(url: str) -> ConnectionSecurity:
    """Ask the server how this connection is protected (``pg_stat_ssl``), for a run's evidence."""
    with psycopg.connect(url) as conn:
        row: tuple[Any, ...] | None = conn.execute(
            "SELECT ssl, version, cipher, bits FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    ssl, version, cipher, bits = row or (False, None, None, None)
    return ConnectionSecurity(
        ssl=bool(ssl), version=version, cipher=cipher, bits=int(bits) if bits else None, sslmode=sslmode(url)
    )
