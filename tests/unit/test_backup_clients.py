"""Client programs get passwords out of band (environment, 0600 option file), never on the command line."""

from __future__ import annotations

import stat
from pathlib import Path

from cutover.backup.mariadb import _options
from cutover.backup.postgres import _conninfo


def test_pg_password_goes_through_the_environment() -> None:
    url, env = _conninfo("postgres://etl:s%40cret@db:5433/legacy")
    assert url == "postgresql://etl@db:5433/legacy"
    assert env["PGPASSWORD"] == "s@cret"
    assert _conninfo("postgresql://etl@db/legacy")[0] == "postgresql://etl@db/legacy"


def test_mariadb_password_goes_through_a_private_option_file() -> None:
    with _options("mysql://etl:s%40cret@db:3307/legacy") as (args, database):
        assert database == "legacy"
        assert len(args) == 1
        assert "s@cret" not in args[0]
        path = Path(args[0].removeprefix("--defaults-extra-file="))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().splitlines() == [
            "[client]",
            "host=db",
            "port=3307",
            "user=etl",
            "password=s@cret",
        ]
    assert not path.exists()
