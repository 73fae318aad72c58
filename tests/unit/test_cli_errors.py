"""The `cutover` command's one-line errors, in-process (fast); tests/integration/test_cli_errors.py runs
the command as a user would."""

from __future__ import annotations

import doctest

import pytest

from cutover import cli, errors
from cutover.errors import ConfigError, TransientError, UnknownNameError


@pytest.mark.parametrize("module", [cli, errors], ids=lambda m: m.__name__)
def test_doctests(module: object) -> None:
    failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried
    assert not failures


def test_a_cutover_error_is_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trace", "visits_", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: unknown legacy table 'visits_'; known (closest first): visits, ")
    assert err.count("\n") == 1


def test_debug_raises_instead(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownNameError) as raised:
        cli.main(["--debug", "trace", "visits_", "1"])
    assert raised.value.known[0] == "visits"
    assert isinstance(raised.value, ConfigError)


def test_multi_line_messages_become_one_line() -> None:
    assert cli.user_error(TransientError("S3 put failed\n  for runs/r1/backup/legacy.db.enc")) == (
        "S3 put failed for runs/r1/backup/legacy.db.enc"
    )


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise KeyError("bug")

    monkeypatch.setattr(cli, "cmd_stop", broken)
    with pytest.raises(KeyError):
        cli.main(["stop"])
