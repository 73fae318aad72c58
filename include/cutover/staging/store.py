"""Object stores for staging: the same calls on a local folder or an S3 bucket.

Every object is written with its SHA-256, and every read checks it: a staged object whose bytes
do not match the checksum recorded when it was written is refused, never loaded.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from cutover.errors import ConfigError, IntegrityError, TransientError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectInfo:
    """What a manifest records of one stored object."""

    key: str
    size: int
    sha256: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store(Protocol):
    """A flat key space of immutable objects."""

    url: str

    def put(self, key: str, data: bytes) -> ObjectInfo: ...

    def get(self, key: str, *, sha256: str | None = None) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete_prefix(self, prefix: str) -> int: ...


def _verify(key: str, data: bytes, sha256: str | None) -> bytes:
    if sha256 is not None and sha256_hex(data) != sha256:
        raise IntegrityError(f"staged object {key} does not match its manifest checksum; refusing to use it")
    return data


class LocalStore:
    """A folder used as an object store; writes are atomic (write to a temp name, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ConfigError(f"object key escapes the store: {key}")
        return path

    def put(self, key: str, data: bytes) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return ObjectInfo(key, len(data), sha256_hex(data))

    def get(self, key: str, *, sha256: str | None = None) -> bytes:
        return _verify(key, self._path(key).read_bytes(), sha256)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self._path(key).unlink()
        # folders the deletion emptied go too, as on S3 where a prefix without objects is gone
        for folder in sorted({self._path(key).parent for key in keys}, key=lambda p: -len(p.parts)):
            while folder != self.root and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        return len(keys)


class S3Store:
    """An S3 bucket (AWS, MinIO or any S3 API) through boto3.

    Every object is written with server-side encryption and an explicit SHA-256 checksum, which
    S3 verifies on upload. boto3 >= 1.36 would otherwise add CRC checksums that some
    S3-compatible servers reject, so checksums are set to "when required" and SHA-256 is asked
    for on purpose; the server's answer is compared with our own digest. When ``object_lock_days`` is set, each object gets a compliance-mode retention.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        object_lock_days: int | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.object_lock_days = object_lock_days
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_name or "us-east-1",
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 5, "mode": "standard"},
            ),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> ObjectInfo:
        import datetime as dt

        from botocore.exceptions import BotoCoreError, ClientError

        digest = hashlib.sha256(data).digest()
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "Body": data,
            "ChecksumAlgorithm": "SHA256",
            "ServerSideEncryption": self.sse,
            "Metadata": {"sha256": digest.hex()},
        }
        if self.sse == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        if self.object_lock_days:
            args["ObjectLockMode"] = "COMPLIANCE"
            args["ObjectLockRetainUntilDate"] = dt.datetime.now(dt.UTC) + dt.timedelta(
                days=self.object_lock_days
            )
        try:
            response = self.client.put_object(**args)
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"S3 put failed for {key}: {type(exc).__name__}") from exc
        if response.get("ChecksumSHA256") != base64.b64encode(digest).decode():
            raise IntegrityError(f"S3 did not confirm the SHA-256 of {key}")
        return ObjectInfo(key, len(data), digest.hex())

    def get(self, key: str, *, sha256: str | None = None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"S3 get failed for {key}: {type(exc).__name__}") from exc
        return _verify(key, data, sha256)

    def head(self, key: str) -> dict[str, Any]:
        """The object's headers (encryption, checksum, retention), for verification."""
        result: dict[str, Any] = self.client.head_object(
            Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED"
        )
        return result

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[cut:] for k in keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(k)} for k in chunk]}
            )
        return len(keys)


def open_store(url: str) -> Store:
    """Open ``file:///abs/folder`` or ``s3://bucket/prefix?endpoint_url=…&region_name=…``."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    if parts.scheme == "s3":
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        lock = q.get("object_lock_days")
        return S3Store(
            parts.netloc,
            parts.path,
            endpoint_url=q.get("endpoint_url"),
            region_name=q.get("region_name"),
            aws_access_key_id=q.get("aws_access_key_id"),
            aws_secret_access_key=q.get("aws_secret_access_key"),
            sse=q.get("sse", "AES256"),
            kms_key_id=q.get("kms_key_id"),
            object_lock_days=int(lock) if lock else None,
        )
    raise ConfigError(f"staging_store: unsupported scheme {parts.scheme!r} (use file:// or s3://)")
