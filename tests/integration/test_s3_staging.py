"""S3 staging against a real S3 API server on loopback (moto's server mode), boto3 over HTTP."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cutover.errors import IntegrityError
from cutover.staging.parquet import StageManifest, read_manifest, read_part, write_batches
from cutover.staging.store import LocalStore, S3Store, open_store


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


def _tampered_part(store: S3Store | LocalStore, manifest: StageManifest) -> tuple[bytes, str]:
    """The first part with one value changed, as Parquet bytes, and their SHA-256: what someone who can
    write to the store (but does not hold the pipeline's key) would put there."""
    import hashlib
    import io

    import pyarrow.parquet as pq

    table = read_part(store, manifest["parts"][0])
    changed = table.set_column(0, "id", pa.array([-1, *table["id"].to_pylist()[1:]], pa.int64()))
    sink = io.BytesIO()
    pq.write_table(changed, sink)
    return sink.getvalue(), hashlib.sha256(sink.getvalue()).hexdigest()


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_part_replaced_with_its_digest_rewritten_in_the_manifest_is_refused(
    s3_endpoint: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Issue 14, item 1: tampering with the staging store is found even when the manifest is rewritten
    too, because the manifest is signed with a key that is never stored beside it."""
    import json

    import boto3

    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    store: S3Store | LocalStore = (
        _store(s3_endpoint, bucket) if where == "s3" else LocalStore(tmp_path / "stage")
    )
    schema = pa.schema([("id", pa.int64())])
    manifest = write_batches(
        store, "runs/r/mapped/visits", [pa.record_batch([pa.array(range(100))], schema=schema)], schema=schema,
        rows_per_part=100,
    )  # fmt: skip
    assert read_manifest(store, "runs/r/mapped/visits") == manifest
    data, sha256 = _tampered_part(store, manifest)
    forged = json.loads(json.dumps(manifest))
    forged["parts"][0] |= {"sha256": sha256, "bytes": len(data)}
    forged["signature"] = "0" * 64  # whatever the forger writes: without the key it cannot be right
    part, manifest_key = manifest["parts"][0]["key"], "runs/r/mapped/visits/_manifest.json"
    if where == "s3":
        raw = boto3.client(
            "s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
        )  # fmt: skip
        raw.put_object(Bucket=bucket, Key=f"cutover/{part}", Body=data)
        raw.put_object(Bucket=bucket, Key=f"cutover/{manifest_key}", Body=json.dumps(forged).encode())
    else:
        (tmp_path / "stage" / part).write_bytes(data)
        (tmp_path / "stage" / manifest_key).write_text(json.dumps(forged))
    with pytest.raises(IntegrityError, match="not signed by this pipeline's key"):
        read_manifest(store, "runs/r/mapped/visits")
    # the forger's manifest without a signature at all is refused the same way
    del forged["signature"]
    if where == "s3":
        raw.put_object(Bucket=bucket, Key=f"cutover/{manifest_key}", Body=json.dumps(forged).encode())
    else:
        (tmp_path / "stage" / manifest_key).write_text(json.dumps(forged))
    with pytest.raises(IntegrityError, match="not signed by this pipeline's key"):
        read_manifest(store, "runs/r/mapped/visits")
