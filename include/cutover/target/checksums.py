"""Per-table row counts and content checksums of the target, computed inside PostgreSQL.

Two targets hold the same rows exactly when their checksums agree: the proof used by the
idempotence, resume, rollback and distributed-execution tests, and by ``pt_rollback``. Only
counts and digests leave the database, never a row.
"""

from __future__ import annotations

from typing import Any, TypedDict

import psycopg
from psycopg import sql

from cutover.target import TARGET_SCHEMA, TARGET_TABLES


class TableChecksum(TypedDict):
    rows: int
    checksum: str


# Order-independent: the sum and the xor of each row's 60-bit digest prefix and suffix. A row is
# hashed as its text form, so every column (and NULL against '') counts; no ORDER BY is needed,
# which keeps the scan a single streaming aggregate on millions of rows.
_CHECKSUM = """
SELECT count(*),
       coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint::numeric), 0)::text || ':' ||
       coalesce(bit_xor(('x' || substr(h, 17, 16))::bit(64)::bigint), 0)::text
FROM (SELECT md5(t::text) AS h FROM {table} AS t) AS d
"""


def table_checksum(conn: psycopg.Connection[Any], table: str, schema: str = TARGET_SCHEMA) -> TableChecksum:
    rows, checksum = conn.execute(
        sql.SQL(_CHECKSUM).format(table=sql.Identifier(schema, table))
    ).fetchone() or (0, "")
    return TableChecksum(rows=int(rows), checksum=str(checksum))


def table_checksums(
    url: str, tables: tuple[str, ...] = TARGET_TABLES, schema: str = TARGET_SCHEMA
) -> dict[str, TableChecksum]:
    """Rows and checksum of every table (``pt`` by default), in one repeatable-read snapshot."""
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            return {table: table_checksum(conn, table, schema) for table in tables}
