"""A real SFTP server on 127.0.0.1 for tests (asyncssh), serving one local folder as its root.

Importable like ``cli_helpers`` (pytest's pythonpath has tests/): ``from sftp_server import ...``.
Every server generates its own host key and its own authorized client key (written 0600 under the
server's folder, never anywhere shared), accepts only that key for only :attr:`SftpServer.user`, and
refuses passwords. Its event loop runs in a daemon thread, so synchronous code under test (paramiko,
Airflow's SFTP hook) can talk to it from the test's thread.

The server is chrooted to :attr:`SftpServer.root`, asyncssh-style: paths cannot name anything above
it, but a symbolic link placed inside the root is followed wherever it points, as a careless
real server would; the tests of the client's symlink refusal rely on exactly that.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import asyncssh
import pytest

USER = "webpt"
"""The only login the server accepts (WebPT's Standard Extract account, by name only)."""

# asyncssh logs every connection and channel at INFO: noise in a failing test's captured log
logging.getLogger("asyncssh").setLevel(logging.WARNING)


@dataclass
class Seen:
    """What the server saw, for tests that must prove a client never got as far as logging in."""

    connections: int = 0
    """SSH connections accepted (TCP and key exchange started)."""
    open: int = 0
    """Connections not yet closed."""
    auth_attempts: int = 0
    """Logins attempted: a client that rejected the host key never gets here."""
    logins: int = 0


def host_key_line(key: asyncssh.SSHKey) -> str:
    """A public key as Airflow's ``host_key`` extra takes it: ``<type> <base64>``, no comment."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


@dataclass
class SftpServer:
    """A running loopback SFTP server; :meth:`close` stops it (the fixture does)."""

    root: Path
    """The folder served as ``/``; tests write their deliveries here."""
    host: str
    port: int
    user: str
    key_file: Path
    """The authorized client's private key (OpenSSH format, mode 0600)."""
    host_key: str
    """The server's public host key, ``ssh-ed25519 AAAA…`` (Airflow's ``host_key`` extra)."""
    seen: Seen
    _live: set[asyncssh.SSHServerConnection] = field(repr=False)
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _acceptor: asyncssh.SSHAcceptor = field(repr=False)

    def url(self, path: str = "/", **extra: str) -> str:
        """The ``sftp://`` URL (Airflow's connection URI form) of ``path`` on this server.

        ``extra`` adds or overrides query parameters (``host_key=...``); an empty value drops one.
        """
        query = {"key_file": str(self.key_file), "host_key": self.host_key, **extra}
        query = {k: v for k, v in query.items() if v}
        return f"sftp://{self.user}@{self.host}:{self.port}{quote(path)}?{urlencode(query)}"

    def stall(self, seconds: float) -> None:
        """Make the server unresponsive for ``seconds`` (connections stay open, nothing is answered)."""
        self._loop.call_soon_threadsafe(time.sleep, seconds)

    def close(self) -> None:
        """Stop listening, close every session (as a crashed server would) and end the loop's thread."""
        if not self._loop.is_running():
            return

        async def _stop() -> None:
            self._acceptor.close()  # asyncssh leaves the sessions open: close them too
            for conn in list(self._live):
                conn.close()
            await asyncio.gather(*(conn.wait_closed() for conn in list(self._live)))
            await self._acceptor.wait_closed()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class _KeyOnly(asyncssh.SSHServer):
    """Public-key authentication only, for one user and one key."""

    def __init__(
        self, user: str, client_key: asyncssh.SSHKey, seen: Seen, live: set[asyncssh.SSHServerConnection]
    ) -> None:
        self._user, self._client_key, self._seen, self._live = user, client_key, seen, live
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._live.add(conn)
        self._seen.connections += 1
        self._seen.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._live.discard(self._conn)
        self._seen.open -= 1

    def begin_auth(self, username: str) -> bool:
        self._seen.auth_attempts += 1
        return True  # every login must authenticate

    def auth_completed(self) -> None:
        self._seen.logins += 1

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._user and key.public_data == self._client_key.public_data


def start_sftp_server(root: Path, *, user: str = USER) -> SftpServer:
    """Serve ``root`` over SFTP on 127.0.0.1 at a free port, with fresh keys; call ``.close()`` after.

    The client key goes to ``root``'s sibling folder ``<root>.keys/`` so that the served folder holds
    only what the test puts there.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    keys = root.with_name(root.name + ".keys")
    keys.mkdir(mode=0o700, exist_ok=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = keys / "id_ed25519"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(client_key.export_private_key("openssh"))

    seen, live = Seen(), set[asyncssh.SSHServerConnection]()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sftp-server", daemon=True)
    thread.start()

    def sftp_factory(chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        return asyncssh.SFTPServer(chan, chroot=os.fsencode(root))

    async def listen() -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            server_factory=lambda: _KeyOnly(user, client_key, seen, live),
            sftp_factory=sftp_factory,
            allow_scp=False,
        )

    try:
        acceptor = asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=10)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        raise
    return SftpServer(
        root=root,
        host="127.0.0.1",
        port=acceptor.get_port(),
        user=user,
        key_file=key_file,
        host_key=host_key_line(host_key),
        seen=seen,
        _live=live,
        _loop=loop,
        _thread=thread,
        _acceptor=acceptor,
    )


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    """One loopback SFTP server for the session over an empty temporary folder (``server.root``).

    Tests share it: give each test its own subfolder (``server.url("/<name>")``).
    """
    server = start_sftp_server(tmp_path_factory.mktemp("sftp") / "root")
    try:
        yield server
    finally:
        server.close()
