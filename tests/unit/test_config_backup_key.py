"""Where the backup key comes from: a key file (a mounted secret), and the switch that refuses the
embedded default (``cutover.config.key_text``). Every error is one line that names its variable
and never shows the key."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from cutover.backup.crypto import load_key, new_key
from cutover.config import KEY_ENV, KEY_FILE_ENV, REQUIRE_KEY_ENV, key_text
from cutover.errors import ConfigError


@pytest.fixture
def no_key(cutover_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No key configured (tests/conftest.py sets one for the session), an empty state folder."""
    for name in (KEY_ENV, KEY_FILE_ENV, REQUIRE_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    return cutover_home


def test_key_file_is_read_and_trimmed(no_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    secret = tmp_path / "backup_key"
    secret.write_text(f"  {key}\n")
    secret.chmod(0o444)  # a mounted secret's mode is its store's business, not checked
    monkeypatch.setenv(KEY_FILE_ENV, str(secret))
    monkeypatch.setenv(REQUIRE_KEY_ENV, "1")
    assert key_text() == key
    assert load_key(key_text()) == load_key(key)
    assert not (no_key / "backup.key").exists(), "the default key file was made although a key was given"


def test_connection_extra_wins_over_the_key_file(
    no_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "absent"))
    extra = new_key()
    assert key_text(extra) == extra


@pytest.mark.parametrize(
    ("title", "content", "message"),
    [
        ("missing", None, "not found"),
        ("empty", "", "is empty"),
        ("only a newline", "\n", "is empty"),
        ("not base64", "not a key!\n", "does not hold base64 of 32 bytes"),
        ("16 bytes, not 32", base64.b64encode(bytes(16)).decode(), "does not hold base64 of 32 bytes"),
        ("a folder", "folder", "cannot be read"),
        ("binary", b"\xff\xfe\x00", "is not text"),
    ],
)
def test_a_bad_key_file_is_one_line_naming_it(
    no_key: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    title: str,
    content: str | bytes | None,
    message: str,
) -> None:
    secret = tmp_path / "backup_key"
    if content == "folder":
        secret.mkdir()
    elif isinstance(content, bytes):
        secret.write_bytes(content)
    elif content is not None:
        secret.write_text(content)
    monkeypatch.setenv(KEY_FILE_ENV, str(secret))
    with pytest.raises(ConfigError) as caught:
        key_text()
    text = str(caught.value)
    assert message in text, title
    assert str(secret) in text, title
    assert KEY_FILE_ENV in text, title
    assert "\n" not in text, title
    assert "not a key" not in text, f"{title}: the error shows the file's content"
    assert not (no_key / "backup.key").exists(), f"{title}: fell back to the default key file"


def test_key_and_key_file_together_are_refused(
    no_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    secret = tmp_path / "backup_key"
    secret.write_text(new_key())
    monkeypatch.setenv(KEY_ENV, key)
    monkeypatch.setenv(KEY_FILE_ENV, str(secret))
    with pytest.raises(ConfigError, match=f"both {KEY_ENV} and {KEY_FILE_ENV}") as caught:
        key_text()
    assert key not in str(caught.value)


@pytest.mark.parametrize("switch", ["1", "true", "YES", "on"])
def test_required_key_refuses_the_embedded_default(
    no_key: Path, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    monkeypatch.setenv(REQUIRE_KEY_ENV, switch)
    monkeypatch.setenv(KEY_ENV, "")  # set but empty, as `${VAR:-}` leaves it: no key
    with pytest.raises(ConfigError) as caught:
        key_text()
    text = str(caught.value)
    assert "\n" not in text
    assert KEY_FILE_ENV in text
    assert KEY_ENV in text
    assert not (no_key / "backup.key").exists(), "a key was minted despite the refusal"


def test_required_key_refuses_even_an_existing_default_file(
    no_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_text()  # a fresh machine: the default file is made
    monkeypatch.setenv(REQUIRE_KEY_ENV, "1")
    with pytest.raises(ConfigError, match="refuses the embedded default"):
        key_text()


def test_a_mistyped_switch_is_refused(no_key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_KEY_ENV, "ture")
    with pytest.raises(ConfigError, match=f"{REQUIRE_KEY_ENV} must be 1 or 0"):
        key_text()


@pytest.mark.parametrize("switch", [None, "", "0", "false"])
def test_without_the_switch_a_fresh_machine_gets_the_default_file(
    no_key: Path, monkeypatch: pytest.MonkeyPatch, switch: str | None
) -> None:
    if switch is not None:
        monkeypatch.setenv(REQUIRE_KEY_ENV, switch)
    made = key_text()
    path = no_key / "backup.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(load_key(made)) == 32
    assert key_text() == made
