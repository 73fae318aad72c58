"""Deterministic target ids: the same legacy row gets the same new id in every clean run.

A name-based UUID (RFC 9562 version 8, the SHA-256 variant of version 5): the first 16 bytes
of SHA-256 over ``system/table/legacy_id``, with the version and variant bits set. The
database computes the same id with ``migration.legacy_uuid(system, table, legacy_id)``, so
set-based SQL merges and Python agree.
"""

from __future__ import annotations

import hashlib
import uuid


def legacy_uuid(system: str, table: str, legacy_id: str | int) -> uuid.UUID:
    """>>> str(legacy_uuid("legacy", "patients", 1))
    '0d69361d-fdc7-8983-92b9-ae78c9cf495d'
    """
    digest = bytearray(hashlib.sha256(f"{system}/{table}/{legacy_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(digest))
