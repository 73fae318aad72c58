"""S3 staging against a real S3 API server on loopback (moto's server mode), boto3 over HTTP."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cutover.errors import IntegrityError
from cutover.staging.parquet import read_manifest, read_part, write_batches
from cutover.staging.store import S3Store, open_store


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    import uuid

    import boto3

    name = f"stage-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _store(endpoint: str, bucket: str, **extra: str) -> S3Store:
    query = "&".join(
        f"{k}={v}"
        for k, v in {
            "endpoint_url": endpoint,
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
            **extra,
        }.items()
    )
    store = open_store(f"s3://{bucket}/cutover?{query}")
    assert isinstance(store, S3Store)
    return store


def test_parquet_round_trip_with_encryption_and_sha256(s3_endpoint: str, bucket: str) -> None:
    store = _store(s3_endpoint, bucket)
    schema = pa.schema([("id", pa.int64())])
    batch = pa.record_batch([pa.array(range(1_000))], schema=schema)
    manifest = write_batches(store, "runs/r/extract/t", [batch], schema=schema, rows_per_part=400)
    assert [p["rows"] for p in manifest["parts"]] == [400, 400, 200]
    head = store.head(manifest["parts"][0]["key"])
    assert head["ServerSideEncryption"] == "AES256"
    import base64

    assert base64.b64decode(head["ChecksumSHA256"]).hex() == manifest["parts"][0]["sha256"]
    assert read_part(store, read_manifest(store, "runs/r/extract/t")["parts"][2]).num_rows == 200


def test_object_lock_retention_is_set(s3_endpoint: str, bucket: str) -> None:
    store = _store(s3_endpoint, bucket, object_lock_days="7")
    store.put("evidence/summary.json", b"{}")
    head = store.head("evidence/summary.json")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] is not None


def test_object_not_matching_manifest_is_refused(s3_endpoint: str, bucket: str) -> None:
    store = _store(s3_endpoint, bucket)
    info = store.put("x.parquet", b"original")
    store.client.put_object(Bucket=bucket, Key="cutover/x.parquet", Body=b"tampered")
    with pytest.raises(IntegrityError):
        store.get("x.parquet", sha256=info.sha256)
