"""Backup encryption: round trips over chunk boundaries; any altered byte, wrong key or truncation fails;
where the key comes from."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from cutover.backup.crypto import (
    HEADER,
    KEY_ENV,
    TAG,
    backup_key,
    decrypt_file,
    encrypt_file,
    key_id,
    load_key,
    new_key,
)
from cutover.errors import ConfigError, IntegrityError

KEY = load_key(new_key())


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 127, 128, 129, 640, 1000])
def test_round_trip_over_chunk_boundaries(tmp_path: Path, size: int) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(size))
    sealed = encrypt_file(plain, tmp_path / "enc", KEY, chunk=64)
    assert decrypt_file(tmp_path / "enc", tmp_path / "out", KEY) == sealed.plain_sha256
    assert (tmp_path / "out").read_bytes() == plain.read_bytes()
    assert sealed.plain_sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()
    assert sealed.sealed_sha256 == hashlib.sha256((tmp_path / "enc").read_bytes()).hexdigest()
    assert sealed.sealed_bytes == (tmp_path / "enc").stat().st_size
    assert sealed.chunks == max(1, -(-size // 64))  # an empty file still has one (final) chunk
    assert sealed.sealed_bytes == HEADER + size + TAG * sealed.chunks
    if size >= 64:
        assert plain.read_bytes()[:64] not in (tmp_path / "enc").read_bytes()


def test_same_plaintext_encrypts_differently(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x" * 200)
    first = encrypt_file(plain, tmp_path / "a", KEY, chunk=64)
    second = encrypt_file(plain, tmp_path / "b", KEY, chunk=64)
    assert first.plain_sha256 == second.plain_sha256
    assert first.sealed_sha256 != second.sealed_sha256  # a fresh nonce prefix per file


def _sealed(tmp_path: Path, size: int = 1100) -> Path:
    plain = tmp_path / "plain"
    plain.write_bytes((b"legacy database bytes " * 50)[:size])
    encrypt_file(plain, tmp_path / "enc", KEY, chunk=100)
    return tmp_path / "enc"


def test_every_altered_byte_fails(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path, size=250)  # three chunks: first, middle, last
    data = sealed.read_bytes()
    for position in range(len(data)):
        altered = bytearray(data)
        altered[position] ^= 0x01
        sealed.write_bytes(bytes(altered))
        with pytest.raises(IntegrityError, match=r"authentication|not a Cutover backup|chunk size"):
            decrypt_file(sealed, tmp_path / "out", KEY)


def test_reordered_chunks_fail(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path)
    data = sealed.read_bytes()
    one, two = data[HEADER : HEADER + 116], data[HEADER + 116 : HEADER + 232]
    sealed.write_bytes(data[:HEADER] + two + one + data[HEADER + 232 :])
    with pytest.raises(IntegrityError, match="chunk 0 fails authentication"):
        decrypt_file(sealed, tmp_path / "out", KEY)


def test_truncation_and_wrong_key_fail(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path)
    data = sealed.read_bytes()
    sealed.write_bytes(data[: HEADER + 116])  # header + first whole chunk: the last-chunk marker is missing
    with pytest.raises(IntegrityError, match="chunk 0"):
        decrypt_file(sealed, tmp_path / "out", KEY)
    sealed.write_bytes(data[:HEADER])
    with pytest.raises(IntegrityError, match="truncated"):
        decrypt_file(sealed, tmp_path / "out", KEY)
    sealed.write_bytes(data)
    with pytest.raises(IntegrityError, match="wrong key"):
        decrypt_file(sealed, tmp_path / "out", load_key(new_key()))


def test_keys_must_be_32_bytes_of_base64() -> None:
    with pytest.raises(ConfigError):
        load_key("not base64!")
    with pytest.raises(ConfigError):
        load_key("c2hvcnQ=")


def test_key_id_tells_keys_apart_and_hides_them() -> None:
    other = load_key(new_key())
    assert key_id(KEY) == key_id(bytes(KEY))
    assert key_id(KEY) != key_id(other)
    assert KEY.hex()[:16] != key_id(KEY)


def test_key_sources_in_order(cutover_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    made = backup_key()  # the embedded default: created once, mode 0600
    path = cutover_home / "backup.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backup_key() == made
    configured = new_key()
    monkeypatch.setenv(KEY_ENV, configured)
    assert backup_key() == load_key(configured) != made
    extra = new_key()
    assert backup_key(extra) == load_key(extra)  # the connection extra wins over the environment
    monkeypatch.delenv(KEY_ENV)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        backup_key()
