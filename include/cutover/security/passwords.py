"""Password verifiers computed on the client, so a role's clear-text password never reaches the server.

``CREATE ROLE … PASSWORD 'secret'`` sends the password over the wire and may write it to the server
log (``log_statement``); both PostgreSQL and MariaDB accept a pre-hashed verifier instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SCRAM_ITERATIONS = 4096
"""PostgreSQL's default ``scram_iterations``."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scram_sha256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores in ``pg_authid.rolpassword`` (RFC 5802/7677).

    PostgreSQL applies SASLprep to the password before hashing; for printable ASCII that is the
    identity, which is why :func:`check_password` insists on it.

    >>> scram_sha256_verifier("secret", salt=bytes(16)).split("$")[0]
    'SCRAM-SHA-256'
    """
    check_password(password)
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def mysql_native_hash(password: str) -> str:
    """The ``mysql_native_password`` hash for ``IDENTIFIED BY PASSWORD '…'`` (MariaDB, MySQL 5.x).

    >>> mysql_native_hash("secret")
    '*14E65567ABDB5135D0CFD9A70B3032C179A49EE7'
    """
    check_password(password)
    return "*" + hashlib.sha1(hashlib.sha1(password.encode("utf-8")).digest()).hexdigest().upper()


def check_password(password: str) -> None:
    """Refuse a password the verifiers above would hash differently from the server (non-ASCII, empty)."""
    if not password or not password.isascii() or not password.isprintable():
        raise ValueError("a role password must be non-empty printable ASCII")
