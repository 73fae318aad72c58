"""The `cutover` command's one-line errors, in-process (fast); tests/integration/test_cli_errors.py runs
the command as a user would."""

from __future__ import annotations

import doctest
from pathlib import Path

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


@pytest.mark.parametrize(
    ("legacy", "said"),
    [
        ("legacy.db", "error: --legacy takes a URL (sqlite:///abs/legacy.db, postgresql://…, "),
        ("sqlite:////nowhere/legacy.db", "error: no such file: /nowhere/legacy.db\n"),
    ],
    ids=["a-path-not-a-url", "a-missing-sqlite-file"],
)
def test_a_wrong_legacy_argument_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], legacy: str, said: str
) -> None:
    draft = tmp_path / "draft.yaml"
    assert cli.main(["profile", "draft", "--legacy", legacy, "--out", str(draft)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(said)
    assert err.count("\n") == 1
    assert not draft.exists()


def test_help_says_where_the_task_logs_go_and_what_debug_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "<state>/logs/<dag id>/<run key>.log" in out
    assert (
        "--debug show an error's traceback instead of one line, and Airflow's task logs on the console" in out
    )
