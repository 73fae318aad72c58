"""Parquet staging in an object store: a local folder by default, S3 through boto3."""

from __future__ import annotations

from cutover.staging.parquet import read_table_objects, write_batches
from cutover.staging.store import LocalStore, ObjectInfo, S3Store, Store, open_store

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "S3Store",
    "Store",
    "open_store",
    "read_table_objects",
    "write_batches",
]
