"""Backup encryption: round trips over chunk boundaries; any altered byte, wrong key or truncation fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cutover.backup.crypto import decrypt_file, encrypt_file, load_key, new_key
from cutover.errors import ConfigError, IntegrityError

KEY = load_key(new_key())


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 640, 1000])
def test_round_trip_over_chunk_boundaries(tmp_path: Path, size: int) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(size))
    encrypt_file(plain, tmp_path / "enc", KEY, chunk=64)
    decrypt_file(tmp_path / "enc", tmp_path / "out", KEY)
    assert (tmp_path / "out").read_bytes() == plain.read_bytes()
    if size >= 64:
        assert plain.read_bytes()[:64] not in (tmp_path / "enc").read_bytes()


def _sealed(tmp_path: Path) -> Path:
    plain = tmp_path / "plain"
    plain.write_bytes(b"legacy database bytes " * 50)
    encrypt_file(plain, tmp_path / "enc", KEY, chunk=100)
    return tmp_path / "enc"


def test_any_altered_byte_fails(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path)
    data = bytearray(sealed.read_bytes())
    for position in (30, len(data) // 2, len(data) - 1):
        altered = bytearray(data)
        altered[position] ^= 0x01
        sealed.write_bytes(bytes(altered))
        with pytest.raises(IntegrityError, match="authentication"):
            decrypt_file(sealed, tmp_path / "out", KEY)


def test_truncation_and_wrong_key_fail(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path)
    data = sealed.read_bytes()
    sealed.write_bytes(data[: 22 + 116])  # header + first whole chunk: the last-chunk marker is missing
    with pytest.raises(IntegrityError):
        decrypt_file(sealed, tmp_path / "out", KEY)
    sealed.write_bytes(data)
    with pytest.raises(IntegrityError):
        decrypt_file(sealed, tmp_path / "out", load_key(new_key()))


def test_keys_must_be_32_bytes_of_base64() -> None:
    with pytest.raises(ConfigError):
        load_key("not base64!")
    with pytest.raises(ConfigError):
        load_key("c2hvcnQ=")
