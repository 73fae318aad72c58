"""Each spec fills exactly the columns of its target table (no column left to a default by accident)."""

from __future__ import annotations

import psycopg

from cutover.mapping.specs import SPECS
from cutover.target import CODE_TABLES, TARGET_TABLES, upgrade


def test_specs_cover_every_target_column(pg_url: str) -> None:
    upgrade(pg_url)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'pt'"
        ).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    assert {spec.target for spec in SPECS.values()} == set(TARGET_TABLES) == set(columns) - set(CODE_TABLES)
    for spec in SPECS.values():
        produced = {"id", *(name for name, _ in spec.columns), *(ref.column for ref in spec.refs)}
        assert produced == columns[spec.target], spec.target
