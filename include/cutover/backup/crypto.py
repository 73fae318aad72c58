"""Encryption at rest for backups: AES-256-GCM over fixed-size chunks, streamed.

File layout: ``CUTOVERBK1`` magic, a 4-byte chunk size, an 8-byte random nonce prefix, then
chunks, each the GCM ciphertext of up to ``chunk`` plaintext bytes with its 16-byte tag. The
nonce of chunk *i* is the prefix followed by *i* (4 bytes), and the associated data says whether
the chunk is the last one, so chunks cannot be reordered, dropped or truncated without the
decryption failing. Memory holds one chunk at a time, so a backup of many GB encrypts in a few MB.

Where the key comes from (:func:`backup_key`), in order: the ``backup_key`` extra of the
``staging_store`` connection, ``CUTOVER_BACKUP_KEY`` (base64 of 32 bytes), else the embedded
default ``<state folder>/backup.key`` (mode 0600, created once). The trade-off of the default: it
keeps ``cutover run pt_backup`` working on a laptop with nothing configured, and the key is never
stored with the backup (the staging store holds only :func:`key_id`, a one-way fingerprint), but
whoever can read the state folder can decrypt; and losing that folder loses every backup. A real
cutover configures the key (a secrets backend behind the Airflow connection) and keeps a copy
offline.

>>> import io, tempfile, pathlib
>>> key = load_key(new_key())
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "plain").write_bytes(b"chart" * 1000)
>>> sealed = encrypt_file(folder / "plain", folder / "enc", key, chunk=1024)
>>> sealed.plain_bytes, sealed.chunks
(5000, 5)
>>> decrypt_file(folder / "enc", folder / "out", key) == sealed.plain_sha256
True
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cutover.config import KEY_ENV as KEY_ENV  # re-exported: where the key is configured
from cutover.config import key_text
from cutover.errors import ConfigError, IntegrityError

MAGIC = b"CUTOVERBK1"
CHUNK = 4 * 1024 * 1024
TAG = 16
HEADER = len(MAGIC) + 4 + 8


@dataclass(frozen=True)
class Sealed:
    """What encrypting one file produced: sizes and SHA-256 of both sides (hex)."""

    plain_bytes: int
    plain_sha256: str
    sealed_bytes: int
    sealed_sha256: str
    chunks: int


def load_key(value: str, what: str = "backup key") -> bytes:
    """A 32-byte key from its base64 text (``CUTOVER_BACKUP_KEY``); ``what`` names it in an error."""
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except ValueError as exc:
        raise ConfigError(f"{what}: not base64") from exc
    if len(key) != 32:
        raise ConfigError(f"{what}: must be 32 bytes (AES-256)")
    return key


def new_key() -> str:
    """A fresh random key, as base64 text."""
    return base64.b64encode(os.urandom(32)).decode()


def key_id(key: bytes) -> str:
    """A one-way fingerprint of a key, recorded in the manifest to tell keys apart (not secret).

    >>> key_id(bytes(32))
    '37d13e9bee4353d1'
    """
    return hashlib.sha256(b"cutover-backup-key-id\x00" + key).hexdigest()[:16]


def backup_key(configured: str | None = None) -> bytes:
    """The backup key: ``configured`` (a connection extra), ``CUTOVER_BACKUP_KEY``, else the state
    file (:func:`cutover.config.key_text`)."""
    return load_key(key_text(configured))


def _chunks(src: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    current = src.read(size)
    while True:
        following = src.read(size)
        yield current, not following
        if not following:
            return
        current = following


def encrypt_file(src: Path, dst: Path, key: bytes, *, chunk: int = CHUNK) -> Sealed:
    """Encrypt ``src`` into ``dst`` chunk by chunk, hashing both sides on the way."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, prefix = AESGCM(key), os.urandom(8)
    plain_hash, sealed_hash = hashlib.sha256(), hashlib.sha256()
    plain_bytes = sealed_bytes = chunks = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        header = MAGIC + struct.pack(">I", chunk) + prefix
        fout.write(header)
        sealed_hash.update(header)
        sealed_bytes += len(header)
        for index, (plain, last) in enumerate(_chunks(fin, chunk)):
            sealed = aead.encrypt(prefix + struct.pack(">I", index), plain, b"last" if last else b"more")
            fout.write(sealed)
            plain_hash.update(plain)
            sealed_hash.update(sealed)
            plain_bytes += len(plain)
            sealed_bytes += len(sealed)
            chunks += 1
    return Sealed(plain_bytes, plain_hash.hexdigest(), sealed_bytes, sealed_hash.hexdigest(), chunks)


def decrypt_file(src: Path, dst: Path, key: bytes) -> str:
    """Decrypt and authenticate every chunk; returns the plaintext's SHA-256 (hex).

    Any change, reorder or truncation, or the wrong key, raises IntegrityError naming the chunk.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, plain_hash = AESGCM(key), hashlib.sha256()
    with src.open("rb") as fin, dst.open("wb") as fout:
        header = fin.read(HEADER)
        if len(header) != HEADER or not header.startswith(MAGIC):
            raise IntegrityError(f"{src.name}: not a Cutover backup file")
        (chunk,) = struct.unpack(">I", header[len(MAGIC) : len(MAGIC) + 4])
        if not 0 < chunk <= 1 << 30:
            raise IntegrityError(f"{src.name}: implausible chunk size in the header")
        prefix = header[len(MAGIC) + 4 :]
        index, finished = 0, False
        for sealed, last in _chunks(fin, chunk + TAG):
            try:
                plain = aead.decrypt(prefix + struct.pack(">I", index), sealed, b"last" if last else b"more")
            except InvalidTag as exc:
                raise IntegrityError(
                    f"{src.name}: chunk {index} fails authentication (altered, truncated, or the wrong key)"
                ) from exc
            fout.write(plain)
            plain_hash.update(plain)
            index, finished = index + 1, last
        if not finished:
            raise IntegrityError(f"{src.name}: truncated (no chunks after the header)")
    return plain_hash.hexdigest()
