"""Read a delivery of CSV files from a local folder and through a real SFTP server on 127.0.0.1.

The server (tests/sftp_server.py, asyncssh) is chrooted to a temporary folder, accepts one generated
client key and presents a generated host key; nothing is mocked. Behaviours both sources share run
on both (the ``delivery`` fixture); what only SSH has (host keys, logins, the network) runs on SFTP.
"""

# ruff: noqa: F811 - tests take the imported fixture ``sftp_server`` as an argument of the same name

from __future__ import annotations

import asyncio
import contextlib
import doctest
import hashlib
import io
import os
import re
import socket
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncssh
import pytest
from sftp_server import SftpServer, host_key_line, sftp_server, start_sftp_server  # noqa: F401 - a fixture

from cutover.errors import ConfigError, TransientError, retry_can_help
from cutover.legacy import transport
from cutover.legacy.transport import FileFacts, is_delivery, open_delivery

PATIENTS = b"patient_id,first_name\n1,Test\n2,Sample\n"
VISITS = b"visit_id,patient_id\n10,1\n11,2\n12,2\n"


@dataclass
class Delivery:
    """A folder the test fills (``folder``) and the URL that reads it (``url``)."""

    kind: str
    folder: Path
    url: str


@pytest.fixture(params=["local", "sftp"])
def delivery(request: pytest.FixtureRequest, tmp_path: Path) -> Delivery:
    """An empty delivery folder of the test's own, on this machine or on the SFTP server."""
    if request.param == "local":
        folder = tmp_path / "delivery"
        folder.mkdir()
        return Delivery("local", folder, f"csv://{quote(str(folder))}")
    sftp_server: SftpServer = request.getfixturevalue("sftp_server")
    name = _folder_name(request)
    folder = sftp_server.root / name
    folder.mkdir()
    return Delivery("sftp", folder, sftp_server.url(f"/{name}"))


@pytest.fixture
def outbox(request: pytest.FixtureRequest, sftp_server: SftpServer) -> Path:
    """An empty folder of the test's own on the SFTP server, served as ``/<test name>``."""
    folder = sftp_server.root / _folder_name(request)
    folder.mkdir()
    return folder


def _folder_name(request: pytest.FixtureRequest) -> str:
    """The test's own folder on the shared server: its name, parameters included, as one plain name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    assert "Traceback" not in text, text
    assert "paramiko" not in text.lower(), text
    return text


def test_doctests() -> None:
    assert doctest.testmod(transport).failed == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("csv:///srv/webpt", True),
        ("file:///srv/webpt", True),
        ("SFTP://webpt@sftp.example:2222/outbox", True),
        ("sqlite:////tmp/legacy.db", False),
        ("postgresql://etl@db/pt", False),
        ("mysql://root@db/pt", False),
        ("mariadb://root@db/pt", False),
    ],
)
def test_is_delivery(url: str, expected: bool) -> None:
    assert is_delivery(url) is expected


# --- what both sources do -------------------------------------------------------------------------


def test_lists_regular_files_directly_in_the_folder(delivery: Delivery, tmp_path: Path) -> None:
    (delivery.folder / "Visits.csv").write_bytes(VISITS)
    (delivery.folder / "Patients.csv").write_bytes(PATIENTS)
    (delivery.folder / "archive").mkdir()
    (delivery.folder / "archive" / "Old.csv").write_bytes(b"x\n")
    (delivery.folder / ".Notes.csv.part").write_bytes(b"uploading")
    outside = tmp_path / "secret.csv"
    outside.write_bytes(b"not part of the delivery\n")
    (delivery.folder / "Escape.csv").symlink_to(outside)

    with open_delivery(delivery.url) as source:
        files = source.files()

    assert files == {"Patients.csv": len(PATIENTS), "Visits.csv": len(VISITS)}
    assert list(files) == sorted(files)


def test_open_streams_a_file(delivery: Delivery) -> None:
    (delivery.folder / "Patients.csv").write_bytes(PATIENTS)
    with open_delivery(delivery.url) as source, source.open("Patients.csv") as file:
        assert file.read(10) == PATIENTS[:10]
        assert file.read() == PATIENTS[10:]
    with open_delivery(delivery.url) as source, source.open("Patients.csv") as file:
        lines = list(io.TextIOWrapper(file, encoding="utf-8", newline=""))
    assert lines == ["patient_id,first_name\n", "1,Test\n", "2,Sample\n"]


def test_fetch_streams_to_disk_with_size_and_sha256(delivery: Delivery, tmp_path: Path) -> None:
    body = os.urandom(3 * (1 << 20) + 17)  # more than one chunk, not a multiple of it
    (delivery.folder / "Visits.csv").write_bytes(body)
    dest = tmp_path / "staged"
    dest.mkdir()

    with open_delivery(delivery.url) as source:
        facts = source.fetch("Visits.csv", dest / "visits.csv", chunk=1 << 20)
        into_folder = source.fetch("Visits.csv", dest)

    expected = hashlib.sha256(body).hexdigest()
    assert facts == FileFacts(name="Visits.csv", size=len(body), sha256=expected)
    assert _sha256(dest / "visits.csv") == _sha256(delivery.folder / "Visits.csv") == expected
    assert into_folder == facts
    assert (dest / "Visits.csv").read_bytes() == body
    assert sorted(p.name for p in dest.iterdir()) == ["Visits.csv", "visits.csv"]  # no .part left


def test_a_missing_file_is_named(delivery: Delivery, tmp_path: Path) -> None:
    with open_delivery(delivery.url) as source:
        with pytest.raises(ConfigError) as raised, source.open("Appointments.csv"):
            pass
        assert _one_line(raised.value) == f"{source.describe()}: no file Appointments.csv"
        with pytest.raises(ConfigError, match=r"no file Appointments\.csv"):
            source.fetch("Appointments.csv", tmp_path / "a.csv")
    assert not (tmp_path / "a.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


@pytest.mark.parametrize("name", ["../secret.csv", "sub/../../secret.csv", "/etc/passwd", "..", ".hidden"])
def test_a_name_that_is_not_plain_is_refused(delivery: Delivery, name: str) -> None:
    with (
        open_delivery(delivery.url) as source,
        pytest.raises(ConfigError, match="is not a plain file name"),
        source.open(name),
    ):
        pass


def test_a_link_out_of_the_folder_is_refused(delivery: Delivery, tmp_path: Path) -> None:
    outside = tmp_path / "other_clinic.csv"
    outside.write_bytes(b"somebody else's data\n")
    (delivery.folder / "Patients.csv").symlink_to(outside)

    with open_delivery(delivery.url) as source:
        with pytest.raises(ConfigError) as raised, source.open("Patients.csv") as file:
            file.read()
        assert "Patients.csv" not in source.files()
    message = _one_line(raised.value)
    assert "Patients.csv" in message
    assert ("symbolic link" if delivery.kind == "sftp" else "leads out of the folder") in message
    assert "somebody" not in message


def test_a_file_that_grows_while_it_is_read_is_transient(delivery: Delivery) -> None:
    path = delivery.folder / "Visits.csv"
    path.write_bytes(VISITS)
    later = time.time() + 5
    with open_delivery(delivery.url) as source:
        reading = source.open("Visits.csv")
        file = reading.__enter__()
        assert file.read(5) == VISITS[:5]
        with path.open("ab") as upload:  # the nightly upload is still writing
            upload.write(b"13,3\n")
        os.utime(path, (later, later))
        file.read()
        with pytest.raises(TransientError, match="changed while it was read"):
            reading.__exit__(None, None, None)


# --- a local folder -------------------------------------------------------------------------------


def test_local_folder_follows_links_that_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "Patients-2024-06-01.csv").write_bytes(PATIENTS)
    (tmp_path / "Patients.csv").symlink_to("Patients-2024-06-01.csv")
    with open_delivery(f"file://{tmp_path}") as source:
        assert source.describe() == f"file://{tmp_path}"
        assert source.files() == {"Patients-2024-06-01.csv": len(PATIENTS), "Patients.csv": len(PATIENTS)}
        with source.open("Patients.csv") as file:
            assert file.read() == PATIENTS


def test_local_folder_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "Patients.csv")
    with open_delivery(f"csv://{tmp_path}") as source:
        assert source.files() == {}
        with (
            pytest.raises(ConfigError, match=r"Patients\.csv is not a regular file"),
            source.open("Patients.csv"),
        ):
            pass


def test_local_folder_must_exist_and_be_absolute(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as raised:
        open_delivery(f"csv://{missing}")
    assert _one_line(raised.value) == f"legacy_db: no folder {missing}"
    for relative in ("csv://exports/webpt", "csv:exports/webpt", "file:exports"):
        with pytest.raises(ConfigError, match="must be an absolute path"):
            open_delivery(relative)
    with pytest.raises(ConfigError, match="unsupported delivery scheme 'ftp'"):
        open_delivery("ftp://user:pw@host/outbox")


# --- SFTP: the host key ---------------------------------------------------------------------------


def test_sftp_describe_hides_the_password(sftp_server: SftpServer, outbox: Path) -> None:
    url = sftp_server.url(f"/{outbox.name}").replace("webpt@", "webpt:Pa55-w0rd%21@")
    with open_delivery(url) as source:  # the key logs in; the password is only offered, as a passphrase
        assert source.describe() == f"sftp://webpt@127.0.0.1:{sftp_server.port}/{outbox.name}"
        assert "Pa55" not in repr(source)
        with pytest.raises(ConfigError) as raised, source.open("nothing.csv"):
            pass
    assert "Pa55" not in str(raised.value)


def test_sftp_host_key_may_be_given_without_its_type(sftp_server: SftpServer, outbox: Path) -> None:
    (outbox / "Patients.csv").write_bytes(PATIENTS)
    bare = sftp_server.host_key.split()[1]
    with open_delivery(sftp_server.url(f"/{outbox.name}", host_key=bare)) as source:
        assert source.files() == {"Patients.csv": len(PATIENTS)}


@pytest.mark.parametrize("form", ["typed", "bare"])
def test_sftp_wrong_host_key_is_refused_before_logging_in(
    sftp_server: SftpServer,
    outbox: Path,
    form: str,
) -> None:
    impostor = host_key_line(asyncssh.generate_private_key("ssh-ed25519"))
    host_key = impostor if form == "typed" else impostor.split()[1]
    url = sftp_server.url(f"/{outbox.name}", host_key=host_key).replace("webpt@", "webpt:s3cret@")
    attempts = sftp_server.seen.auth_attempts

    with pytest.raises(ConfigError) as raised:
        open_delivery(url)

    message = _one_line(raised.value)
    assert f"127.0.0.1 port {sftp_server.port} presented a host key other than host_key" in message
    assert impostor.split()[1] not in message
    assert sftp_server.host_key.split()[1] not in message
    assert "s3cret" not in message
    assert sftp_server.seen.auth_attempts == attempts  # neither key nor password was offered
    assert not retry_can_help(raised.value)


def test_sftp_known_hosts_never_overrules_host_key(
    sftp_server: SftpServer,
    outbox: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """paramiko consults ~/.ssh/known_hosts before the hook's host_key: the URL's key still decides."""
    known_hosts = tmp_path / "home" / ".ssh" / "known_hosts"
    known_hosts.parent.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    impostor = host_key_line(asyncssh.generate_private_key("ssh-ed25519"))
    entry = f"[127.0.0.1]:{sftp_server.port}"

    known_hosts.write_text(f"{entry} {sftp_server.host_key}\n")  # known_hosts trusts the server...
    with pytest.raises(ConfigError, match="presented a host key other than host_key"):
        open_delivery(sftp_server.url(f"/{outbox.name}", host_key=impostor))  # ...host_key does not

    known_hosts.write_text(f"{entry} {impostor}\n")  # a stale line: host_key is right, the message says so
    with pytest.raises(ConfigError, match=r"presented host_key, but ~/\.ssh/known_hosts holds another key"):
        open_delivery(sftp_server.url(f"/{outbox.name}"))


@pytest.mark.parametrize(
    "extra",
    [
        {"host_key": ""},
        {"no_host_key_check": "true"},
        {"no_host_key_check": "True", "host_key": ""},
        {"allow_host_key_change": "true"},
    ],
)
def test_sftp_without_a_host_key_check_is_refused(
    sftp_server: SftpServer,
    outbox: Path,
    extra: dict[str, str],
) -> None:
    connections = sftp_server.seen.connections
    with pytest.raises(ConfigError) as raised:
        open_delivery(sftp_server.url(f"/{outbox.name}", **extra))
    message = _one_line(raised.value)
    assert "host_key" in message
    assert message.startswith(f"legacy_db: sftp://webpt@127.0.0.1:{sftp_server.port}/{outbox.name}: ")
    assert sftp_server.seen.connections == connections  # refused before connecting at all


def test_sftp_garbled_host_key_is_a_config_error(sftp_server: SftpServer, outbox: Path) -> None:
    for garbled in ("not-base64!", "ssh-ed25519 AAAA", "ssh-rsa " + sftp_server.host_key.split()[1]):
        with pytest.raises(ConfigError, match="host_key"):
            open_delivery(sftp_server.url(f"/{outbox.name}", host_key=garbled))


# --- SFTP: logging in -----------------------------------------------------------------------------


def test_sftp_wrong_client_key_or_user_is_refused(
    sftp_server: SftpServer,
    outbox: Path,
    tmp_path: Path,
) -> None:
    stranger = tmp_path / "id_stranger"
    stranger.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))
    stranger.chmod(0o600)
    url = sftp_server.url(f"/{outbox.name}")
    for wrong in (sftp_server.url(f"/{outbox.name}", key_file=str(stranger)), url.replace("webpt@", "bob@")):
        with pytest.raises(ConfigError, match="the server refused user") as raised:
            open_delivery(wrong)
        _one_line(raised.value)
        assert not retry_can_help(raised.value)


def test_sftp_private_key_in_the_url_logs_in(sftp_server: SftpServer, outbox: Path) -> None:
    """Airflow's ``private_key`` extra (the key itself, not a path) works, and never shows."""
    (outbox / "Patients.csv").write_bytes(PATIENTS)
    private_key = sftp_server.key_file.read_text()
    with open_delivery(sftp_server.url(f"/{outbox.name}", key_file="", private_key=private_key)) as source:
        assert source.files() == {"Patients.csv": len(PATIENTS)}
        assert "PRIVATE" not in source.describe()
    with pytest.raises(ConfigError, match="key_file or private_key, not both") as raised:
        open_delivery(sftp_server.url(f"/{outbox.name}", private_key=private_key))
    assert "PRIVATE" not in str(raised.value)


def test_sftp_password_login_is_refused_without_echoing_it(
    sftp_server: SftpServer,
    outbox: Path,
) -> None:
    url = sftp_server.url(f"/{outbox.name}", key_file="").replace("webpt@", "webpt:hunter2@")
    with pytest.raises(ConfigError, match="refused user 'webpt'") as raised:
        open_delivery(url)
    assert "hunter2" not in str(raised.value)


def test_sftp_unreadable_key_file_is_named(sftp_server: SftpServer, outbox: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "id_garbage"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n")
    encrypted = tmp_path / "id_encrypted"
    key = asyncssh.generate_private_key("ssh-ed25519")
    encrypted.write_bytes(key.export_private_key("openssh", passphrase="pass phrase"))
    cases = {
        str(tmp_path / "id_missing"): "no key_file",
        str(garbage): "is not an RSA, ECDSA or Ed25519 private key",
        str(encrypted): "is encrypted",
    }
    for key_file, expected in cases.items():
        with pytest.raises(ConfigError, match=expected) as raised:
            open_delivery(sftp_server.url(f"/{outbox.name}", key_file=key_file))
        assert key_file in _one_line(raised.value)


def test_sftp_missing_folder_is_named(sftp_server: SftpServer) -> None:
    with pytest.raises(ConfigError) as raised:
        open_delivery(sftp_server.url("/no-such-outbox"))
    assert _one_line(raised.value).endswith(": no folder no-such-outbox")


# --- SFTP: the network ----------------------------------------------------------------------------


def test_sftp_closed_port_is_transient(sftp_server: SftpServer) -> None:
    url = sftp_server.url("/").replace(f":{sftp_server.port}/", f":{_closed_port()}/")
    with pytest.raises(TransientError, match="cannot connect") as raised:
        open_delivery(url)
    _one_line(raised.value)
    assert retry_can_help(raised.value)


def test_sftp_malformed_url_never_echoes_the_password(sftp_server: SftpServer) -> None:
    for url in ("sftp://webpt:hunter2@127.0.0.1:notaport/x", "sftp://webpt:hunter2@[::1/x", "sftp:///x"):
        with pytest.raises(ConfigError) as raised:
            open_delivery(url)
        assert "hunter2" not in _one_line(raised.value)


def test_sftp_closing_the_source_ends_the_session(tmp_path: Path) -> None:
    # a server of its own: on the shared one, sessions that other tests' refused logins leave behind
    # (the provider does not close a client whose connect failed) end whenever the server times them out
    server = start_sftp_server(tmp_path / "root")
    try:
        (server.root / "Patients.csv").write_bytes(PATIENTS)
        with open_delivery(server.url("/")) as source:
            assert source.files() == {"Patients.csv": len(PATIENTS)}
            assert server.seen.open == 1
        assert _wait_until(lambda: server.seen.open == 0)
    finally:
        server.close()


def test_sftp_connection_lost_while_reading_is_transient(tmp_path: Path) -> None:
    server = start_sftp_server(tmp_path / "root")
    try:
        (server.root / "Notes.csv").write_bytes(os.urandom(8 << 20))
        with open_delivery(server.url("/")) as source:
            reading = source.open("Notes.csv")
            file = reading.__enter__()
            assert len(file.read(1000)) == 1000
            server.close()  # the server goes away mid-transfer
            with pytest.raises(TransientError, match="failed") as raised:
                file.read()
            _one_line(raised.value)
            assert retry_can_help(raised.value)
            with contextlib.suppress(TransientError):
                reading.__exit__(None, None, None)
    finally:
        server.close()


def test_sftp_a_server_that_stops_answering_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "READ_TIMEOUT_S", 0.3)
    server = start_sftp_server(tmp_path / "root")
    try:
        (server.root / "Patients.csv").write_bytes(PATIENTS)
        with open_delivery(server.url("/")) as source:
            server.stall(1.0)
            with pytest.raises(TransientError, match="failed listing the folder") as raised:
                source.files()
        _one_line(raised.value)
    finally:
        server.close()


def test_sftp_a_symlink_inside_the_folder_is_refused_too(sftp_server: SftpServer, outbox: Path) -> None:
    (outbox / "Patients-2024-06-01.csv").write_bytes(PATIENTS)
    (outbox / "Patients.csv").symlink_to("Patients-2024-06-01.csv")
    with open_delivery(sftp_server.url(f"/{outbox.name}")) as source:
        assert source.files() == {"Patients-2024-06-01.csv": len(PATIENTS)}
        with (
            pytest.raises(ConfigError, match=r"Patients\.csv is a symbolic link"),
            source.open("Patients.csv"),
        ):
            pass


def test_sftp_fetches_50_mb_in_bounded_memory(sftp_server: SftpServer, outbox: Path, tmp_path: Path) -> None:
    size = 50 * (1 << 20)
    big = outbox / "Notes.csv"
    with big.open("wb") as out:
        block = os.urandom(1 << 20)
        for i in range(50):
            out.write(block[i:] + block[:i])  # 50 different MiB blocks, cheaply
    tracemalloc.start()
    try:
        with open_delivery(sftp_server.url(f"/{outbox.name}")) as source:
            facts = source.fetch("Notes.csv", tmp_path / "notes.csv")
            # stopping early leaves the connection usable (the prefetch of the rest is abandoned)
            with source.open("Notes.csv") as file:
                assert len(file.read(1000)) == 1000
            (outbox / "Patients.csv").write_bytes(PATIENTS)
            with source.open("Patients.csv") as file:
                assert file.read() == PATIENTS
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert facts == FileFacts("Notes.csv", size, _sha256(big))
    assert _sha256(tmp_path / "notes.csv") == facts.sha256
    assert peak < size // 2, f"peak {peak >> 20} MiB while fetching a {size >> 20} MiB file"


def test_server_helper_serves_its_root_only(tmp_path: Path) -> None:
    """The helper itself: its own key file (0600) logs in, nothing above its root can be named."""
    server = start_sftp_server(tmp_path / "root")
    try:
        (server.root / "a.csv").write_bytes(b"a\n")
        (tmp_path / "above.csv").write_bytes(b"above\n")

        async def read(path: str) -> bytes:
            async with (
                asyncssh.connect(
                    server.host,
                    server.port,
                    username=server.user,
                    client_keys=[str(server.key_file)],
                    known_hosts=None,
                ) as conn,
                conn.start_sftp_client() as sftp,
                sftp.open(path, "rb") as file,
            ):
                data = await file.read()
                assert isinstance(data, bytes)
                return data

        assert asyncio.run(read("/a.csv")) == b"a\n"
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            asyncio.run(read("/../above.csv"))
    finally:
        server.close()
    assert server.key_file.stat().st_mode & 0o777 == 0o600
