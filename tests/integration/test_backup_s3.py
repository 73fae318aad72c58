"""Backups on S3 (moto's server on loopback, boto3 over HTTP): every object carries server-side
encryption, S3's SHA-256 checksum and, when configured, a compliance-mode Object Lock retention;
the restore test and the gate work on the bucket; a replaced object fails the restore test."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cutover.backup import BackupGateError, back_up, require_verified_backup, scratch_on, verify_backup
from cutover.backup.crypto import load_key, new_key
from cutover.errors import IntegrityError
from cutover.simulate import simulate
from cutover.staging.store import S3Store, open_store

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
KEY = load_key(new_key())


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("legacy") / "legacy.db"
    return f"sqlite:///{path}", simulate(f"sqlite:///{path}", patients=60, seed=81)


def _bucket_url(endpoint: str, **extra: str) -> str:
    import boto3

    name = f"backup-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    ).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    query = "&".join(
        f"{k}={v}"
        for k, v in {
            "endpoint_url": endpoint,
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
            **extra,
        }.items()
    )
    return f"s3://{name}/cutover?{query}"


def test_backup_objects_are_encrypted_checksummed_and_locked(
    s3_endpoint: str, legacy: tuple[str, dict[str, Any]], cutover_home: Path
) -> None:
    url = _bucket_url(s3_endpoint, object_lock_days="7")
    manifest = back_up(legacy[0], url, "s3run", KEY, now=NOW)
    store = open_store(url)
    assert isinstance(store, S3Store)
    keys = store.list("runs/s3run/backup")
    assert keys == ["runs/s3run/backup/legacy.db.enc", "runs/s3run/backup/manifest.json"]
    for key in keys:
        head = store.head(key)
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=6)
    [obj] = manifest["objects"]
    assert base64.b64decode(store.head(obj["key"])["ChecksumSHA256"]).hex() == obj["sha256"]

    with pytest.raises(BackupGateError, match="backup s3run: not verified"):
        require_verified_backup(url, legacy[0], max_age=timedelta(hours=1), now=NOW)
    assert verify_backup(url, "s3run", scratch_on(None), key=KEY, now=NOW).ok
    assert store.head("runs/s3run/backup/verified.json")["ObjectLockMode"] == "COMPLIANCE"
    assert require_verified_backup(url, legacy[0], max_age=timedelta(hours=1), now=NOW).run_key == "s3run"


def test_replaced_object_fails_the_restore_test(
    s3_endpoint: str, legacy: tuple[str, dict[str, Any]], cutover_home: Path
) -> None:
    url = _bucket_url(s3_endpoint)
    manifest = back_up(legacy[0], url, "s3bad", KEY, now=NOW)
    store = open_store(url)
    assert isinstance(store, S3Store)
    key = manifest["objects"][0]["key"]
    data = bytearray(store.get(key))
    data[100] ^= 0xFF
    store.client.put_object(Bucket=store.bucket, Key=f"cutover/{key}", Body=bytes(data))
    with pytest.raises(IntegrityError, match="does not match its manifest checksum"):
        verify_backup(url, "s3bad", scratch_on(None), key=KEY, now=NOW)
    assert not store.exists("runs/s3bad/backup/verified.json")
