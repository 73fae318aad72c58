"""Encryption at rest for backups: AES-256-GCM over fixed-size chunks, streamed.

File layout: ``CUTOVERBK1`` magic, a 4-byte chunk size, an 8-byte random nonce prefix, then
chunks, each the GCM ciphertext of up to ``chunk`` plaintext bytes with its 16-byte tag. The
nonce of chunk *i* is the prefix followed by *i* (4 bytes), and the associated data says whether
the chunk is the last one, so chunks cannot be reordered, dropped or truncated without the
decryption failing. Memory holds one chunk at a time.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cutover.errors import ConfigError, IntegrityError

MAGIC = b"CUTOVERBK1"
CHUNK = 4 * 1024 * 1024
TAG = 16


def load_key(value: str) -> bytes:
    """A 32-byte key from its base64 text (``CUTOVER_BACKUP_KEY``)."""
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ConfigError("backup key: not base64") from exc
    if len(key) != 32:
        raise ConfigError("backup key: must be 32 bytes (AES-256)")
    return key


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _chunks(src: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    current = src.read(size)
    while True:
        following = src.read(size)
        yield current, not following
        if not following:
            return
        current = following


def encrypt_file(src: Path, dst: Path, key: bytes, *, chunk: int = CHUNK) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, prefix = AESGCM(key), os.urandom(8)
    with src.open("rb") as fin, dst.open("wb") as fout:
        fout.write(MAGIC + struct.pack(">I", chunk) + prefix)
        for index, (plain, last) in enumerate(_chunks(fin, chunk)):
            fout.write(aead.encrypt(prefix + struct.pack(">I", index), plain, b"last" if last else b"more"))


def decrypt_file(src: Path, dst: Path, key: bytes) -> None:
    """Decrypt and authenticate every chunk; any change, reorder or truncation raises IntegrityError."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(key)
    with src.open("rb") as fin, dst.open("wb") as fout:
        header = fin.read(len(MAGIC) + 12)
        if len(header) != len(MAGIC) + 12 or not header.startswith(MAGIC):
            raise IntegrityError(f"{src.name}: not a Cutover backup file")
        (chunk,) = struct.unpack(">I", header[len(MAGIC) : len(MAGIC) + 4])
        prefix = header[len(MAGIC) + 4 :]
        index, finished = 0, False
        for sealed, last in _chunks(fin, chunk + TAG):
            try:
                fout.write(
                    aead.decrypt(prefix + struct.pack(">I", index), sealed, b"last" if last else b"more")
                )
            except InvalidTag as exc:
                raise IntegrityError(
                    f"{src.name}: chunk {index} fails authentication (altered, or wrong key)"
                ) from exc
            index, finished = index + 1, last
        if not finished:
            raise IntegrityError(f"{src.name}: truncated")
