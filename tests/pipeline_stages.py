"""The pipeline's stages called as a cutover DAG's tasks call them, without Airflow: every table
extracted and mapped, then every table loaded (parents first, the order of ``migrated_tables``)."""

from __future__ import annotations

from datetime import date

from cutover import pipeline

AS_OF = date(2026, 11, 27)


def extract_map_load(legacy: str, target: str, store: str, run_id: str, *, as_of: date = AS_OF) -> None:
    for table in pipeline.migrated_tables():
        pipeline.extract_table(legacy, store, run_id, table)
        pipeline.map_table(store, run_id, table, as_of=as_of)
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(target, store, run_id, table)
