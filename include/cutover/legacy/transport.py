"""Read a delivery of CSV files from a local folder or a folder on an SFTP server.

Clinics leaving a PT system often receive a nightly CSV export over SFTP (WebPT's "Standard
Extract"); the ``legacy_db`` connection may name such a delivery instead of a database:

- ``csv:///abs/folder`` (or ``file:///abs/folder``): a folder on this machine;
- ``sftp://user@host:port/folder?key_file=/abs/id_ed25519&host_key=ssh-ed25519%20AAAA…``: Airflow's
  connection URI of an SFTP connection, read by Airflow's SFTP provider with the same meaning as
  ``AIRFLOW_CONN_LEGACY_DB=<that URI>`` (extras ``key_file``, ``private_key``,
  ``private_key_passphrase``, ``host_key``, ``conn_timeout``, …). As in Airflow, the path after the
  host is the connection's ``schema``: ``/outbox`` is ``outbox`` in the login folder, ``//data/outbox``
  the absolute ``/data/outbox``, ``/`` the login folder itself.

The server's host key is always checked against ``host_key`` (fail closed: no trust on first use).
A delivery holds plain files directly in its folder; a name with a ``/``, ``..`` or a leading ``.`` is
refused, and so is a symbolic link on the server (an account that can write to the folder must not
make Cutover read elsewhere) or, locally, a link that leads out of the folder.

>>> [is_delivery(u) for u in ("csv:///srv/webpt", "sftp://webpt@sftp.example/outbox", "sqlite:///x.db")]
[True, True, False]
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import logging
import os
import posixpath
import stat
import struct
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, get_args
from urllib.parse import unquote, urlsplit

from cutover.errors import ConfigError, TransientError

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

log = logging.getLogger(__name__)

DeliveryScheme = Literal["csv", "file", "sftp"]
DELIVERY_SCHEMES: frozenset[str] = frozenset(get_args(DeliveryScheme))

CONN_TIMEOUT_S = 30
"""TCP connect timeout when the URL gives no ``conn_timeout``: the provider's default is none at all,
so an unreachable server would hold a worker for the OS's minutes instead of failing for a retry."""

READ_TIMEOUT_S = 120.0
"""Seconds a read waits for the server before it fails (a :class:`TransientError`): paramiko would wait
forever on a server that keeps the connection open but stops answering."""

READ_REQUEST = 32 * 1024
"""Bytes per SFTP read request: paramiko's largest (``SFTPFile.MAX_REQUEST_SIZE``)."""

READ_WINDOW = 64 * READ_REQUEST
"""Bytes of a remote file asked for at once (2 MiB, paramiko's SSH channel window): enough requests in
flight to hide the round trip, and the most of a file ever held in memory."""


@dataclass(frozen=True)
class FileFacts:
    """What :meth:`DeliverySource.fetch` copied: the file's name, its size in bytes and its SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


def is_delivery(url: str) -> bool:
    """Whether ``url`` names a delivery of files (``csv:``, ``file:``, ``sftp:``) rather than a database.

    >>> is_delivery("file:///srv/exports"), is_delivery("postgresql://etl@db/pt")
    (True, False)
    """
    return url.strip().partition(":")[0].lower() in DELIVERY_SCHEMES  # not urlsplit: no ValueError


def open_delivery(url: str) -> DeliverySource:
    """The delivery ``url`` names, opened (for SFTP: connected, host key checked); close it after use.

    :raises ConfigError: an unsupported or malformed URL, a missing folder, a refused key or host key.
    :raises TransientError: the server cannot be reached.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder, open_delivery(f"csv://{folder}") as delivery:
    ...     delivery.files()
    {}
    >>> open_delivery("ftp://clinic.example/outbox")
    Traceback (most recent call last):
    cutover.errors.ConfigError: legacy_db: unsupported delivery scheme 'ftp' (csv:///folder, file:///folder or sftp://…)
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # an unbalanced "[" in the host; the URL itself may hold a password
        raise ConfigError("legacy_db: the delivery URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme in {"csv", "file"}:
        return LocalFolder.at(scheme, parts.netloc, unquote(parts.path))
    if scheme == "sftp":
        return SftpFolder.connect(url.strip())
    raise ConfigError(
        f"legacy_db: unsupported delivery scheme {scheme!r} (csv:///folder, file:///folder or sftp://…)"
    )


def plain_name(name: str, where: str) -> str:
    """``name`` if it names a file directly in the folder, else a :class:`ConfigError`.

    >>> plain_name("Patients.csv", "csv:///srv/x")
    'Patients.csv'
    >>> plain_name("../etc/passwd", "csv:///srv/x")
    Traceback (most recent call last):
    cutover.errors.ConfigError: csv:///srv/x: '../etc/passwd' is not a plain file name (no '/', '..' or leading '.')
    """
    if not _is_plain(name):
        raise ConfigError(f"{where}: {name!r} is not a plain file name (no '/', '..' or leading '.')")
    return name


def _is_plain(name: str) -> bool:
    # a leading "." also covers "." and "..", hidden files and the ".part" files of uploads in progress;
    # control characters would break a one-line message
    return bool(name) and not name.startswith(".") and not any(c in "/\\" or c < " " for c in name)


class DeliverySource(ABC):
    """A folder of delivered files, read-only; a context manager (closing an SFTP connection)."""

    @abstractmethod
    def describe(self) -> str:
        """The delivery's URL without its password or any other secret, for messages and logs."""

    @abstractmethod
    def files(self) -> dict[str, int]:
        """File name → size in bytes of the regular files directly in the folder, sorted by name.

        Sub-folders, links the source refuses to read and hidden names (``.part`` uploads) are left
        out: every name listed can be :meth:`open`-ed.
        """

    @abstractmethod
    def open(self, name: str) -> AbstractContextManager[BinaryIO]:
        """A streaming binary read of one file, never held whole in memory.

        :raises ConfigError: ``<describe>: no file <name>``, or a name or file the source refuses.
        :raises TransientError: the file changed while it was read (an upload in progress?).
        """

    def close(self) -> None:  # noqa: B027 - a local folder has nothing to close
        """Release the connection, if any."""

    def fetch(self, name: str, dest: Path, *, chunk: int = 1 << 20) -> FileFacts:
        """Copy ``name`` to ``dest`` (a file path, or an existing folder to copy into), hashing as it streams.

        One pass, ``chunk`` bytes at a time; the copy appears under its name only once complete and
        flushed to disk, so a failed or repeated fetch never leaves a partial file behind.
        """
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / plain_name(name, self.describe())
        digest, size = hashlib.sha256(), 0
        fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, self.open(name) as src:
                while block := src.read(chunk):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, dest)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise
        return FileFacts(name=name, size=size, sha256=digest.hexdigest())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


# --- a local folder -------------------------------------------------------------------------------


class LocalFolder(DeliverySource):
    """A delivery in a folder on this machine; links are followed only while they stay inside it."""

    def __init__(self, scheme: str, folder: Path) -> None:
        self._where = f"{scheme}://{folder}"
        self._folder = folder
        self._real = folder.resolve()

    @classmethod
    def at(cls, scheme: str, host: str, path: str) -> LocalFolder:
        """The folder of a ``csv:///abs/path`` URL's parts, which must exist."""
        if host not in {"", "localhost"} or not path.startswith("/"):
            raise ConfigError(
                f"legacy_db: a {scheme}: folder must be an absolute path: {scheme}:///abs/folder"
            )
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"legacy_db: no folder {folder}")
        return cls(scheme, folder)

    def describe(self) -> str:
        return self._where

    def files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        with os.scandir(self._folder) as entries:
            for entry in entries:
                target = self._inside(entry.name) if _is_plain(entry.name) else None
                if target is not None and target.is_file():
                    found[entry.name] = target.stat().st_size
        return dict(sorted(found.items()))

    def _inside(self, name: str) -> Path | None:
        """Where ``name`` leads once links are followed, if that is still inside the folder."""
        target = (self._real / name).resolve()
        return target if target.is_relative_to(self._real) else None

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        where = self._where
        target = self._inside(plain_name(name, where))
        if target is None:
            raise ConfigError(f"{where}: {name} is a link that leads out of the folder; refused")
        # O_NOFOLLOW: the resolved path must not have become a link since; O_NONBLOCK: a FIFO planted
        # in the folder must not hang the open (it is refused just below)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(target, flags)
        except FileNotFoundError:
            raise ConfigError(f"{where}: no file {name}") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot open {name} ({type(exc).__name__})") from exc
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            os.close(fd)
            raise ConfigError(f"{where}: {name} is not a regular file")
        with os.fdopen(fd, "rb") as file:
            yield file
        # by path: the reader may have closed the file (a TextIOWrapper, pyarrow) before it was done
        with contextlib.suppress(FileNotFoundError):
            after = os.stat(target, follow_symlinks=False)
            if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                return
        raise TransientError(f"{where}: {name} changed while it was read (still being delivered?)")


# --- a folder on an SFTP server -------------------------------------------------------------------


def _describe_sftp(parts: Any) -> str:
    """``sftp://user@host:port/path`` without password and query (``parts`` from urlsplit)."""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"sftp://{user}{host}{port}{parts.path}"


def host_key_line(value: str, where: str) -> str:
    """``host_key`` as the provider reads it, ``<type> <base64>``; a bare base64 key gets its type.

    The provider takes a bare key for RSA; this reads the type the key's own bytes carry instead, so
    ``host_key=<base64>`` works for the Ed25519 and ECDSA keys most servers present first.

    >>> host_key_line("AAAAC3NzaC1lZDI1NTE5AAAAIFRxK93gDTArJE+gidLURnvaH4hcYjV7cVdc8WYYgxUd", "sftp://h")
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFRxK93gDTArJE+gidLURnvaH4hcYjV7cVdc8WYYgxUd'
    """
    import paramiko

    fields = value.split()
    encoded = fields[1] if len(fields) >= 2 else (fields[0] if fields else "")
    try:
        blob = base64.b64decode(encoded, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        key_type = blob[4 : 4 + length].decode("ascii")
        paramiko.PKey.from_type_string(key_type, blob)  # a complete public key of a known type
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError, paramiko.SSHException):
        raise ConfigError(
            f"legacy_db: {where}: host_key is not an SSH public key (want 'ssh-ed25519 AAAA…' or its base64)"
        ) from None
    if len(fields) >= 2 and fields[0] != key_type:
        raise ConfigError(f"legacy_db: {where}: host_key says {fields[0]} but holds an {key_type} key")
    return f"{key_type} {encoded}"


def _check_key_file(path: str, passphrase: str | None, where: str) -> None:
    """Fail before connecting if the private key cannot be read, in terms a user can act on.

    ``from None`` throughout: a key loader's exception may carry the key's bytes.
    """
    import paramiko

    try:
        try:
            paramiko.PKey.from_path(path)
        except TypeError:  # cryptography: an encrypted key, read without a passphrase
            if not passphrase:
                raise
            paramiko.PKey.from_path(path, password=passphrase.encode())
    except FileNotFoundError:
        raise ConfigError(f"legacy_db: {where}: no key_file {path}") from None
    except (PermissionError, IsADirectoryError) as exc:
        raise ConfigError(f"legacy_db: {where}: cannot read key_file {path} ({type(exc).__name__})") from None
    except TypeError:
        raise ConfigError(
            f"legacy_db: {where}: key_file {path} is encrypted; give its passphrase as the URL's password"
        ) from None
    except (ValueError, paramiko.SSHException, paramiko.pkey.UnknownKeyType):
        raise ConfigError(
            f"legacy_db: {where}: key_file {path} is not an RSA, ECDSA or Ed25519 private key "
            "(or its passphrase is wrong)"
        ) from None


def _is_true(value: object) -> bool:
    return str(value).strip().lower() == "true"


class _RemoteReader(io.RawIOBase):
    """An SFTP file as a raw stream, read ahead one window of requests at a time.

    paramiko's ``prefetch`` would queue requests for the whole file from a background thread, which
    dies with a traceback on stderr if the connection drops; here each window's requests (``readv``)
    are sent at once and answered before the next window is asked for, so at most one window is held
    in memory however slowly the caller reads. Network failures of a read are :class:`TransientError`;
    what the caller does with the bytes is not translated.
    """

    def __init__(self, remote: Any, size: int, where: str, name: str) -> None:
        self._remote, self._size, self._where, self._name = remote, size, where, name
        self._asked = 0  # bytes requested so far
        self._window: Iterator[bytes] | None = None
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _next_piece(self) -> bytes:
        while True:
            piece = next(self._window, None) if self._window is not None else None
            if piece:
                return bytes(piece)
            if piece is not None or self._asked >= self._size:  # a short file ends the stream
                self._window, self._asked = None, self._size
                return b""
            end = min(self._size, self._asked + READ_WINDOW)
            chunks = [(at, min(READ_REQUEST, end - at)) for at in range(self._asked, end, READ_REQUEST)]
            self._asked, self._window = end, iter(self._remote.readv(chunks))

    def readinto(self, buffer: Any) -> int:
        import paramiko

        if not self._pending:
            try:
                self._pending = memoryview(self._next_piece())
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise TransientError(
                    f"{self._where}: reading {self._name} failed ({type(exc).__name__})"
                ) from exc
        size = min(len(buffer), len(self._pending))
        memoryview(buffer).cast("B")[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self._window = None
            with contextlib.suppress(OSError, EOFError):
                self._remote.close()
        super().close()


class SftpFolder(DeliverySource):
    """A delivery in a folder on an SFTP server, read through Airflow's SFTP hook (paramiko)."""

    def __init__(self, where: str, folder: str, sftp: Any, stack: ExitStack) -> None:
        self._where, self._folder, self._sftp, self._stack = where, folder, sftp, stack

    @classmethod
    def connect(cls, url: str) -> SftpFolder:
        """Connect to the server ``url`` names, check its host key, log in and find the folder."""
        try:
            parts = urlsplit(url)
            where = _describe_sftp(parts)
        except ValueError:  # a port that is not a number; the URL itself may hold a password
            raise ConfigError("legacy_db: the sftp:// URL is malformed (host or port)") from None
        if not parts.hostname:
            raise ConfigError(f"legacy_db: {where}: no host")

        import paramiko
        from airflow.providers.sftp.hooks.sftp import SFTPHook
        from airflow.sdk import Connection

        try:  # Airflow's own parser, so that the URL means here what it means as an Airflow connection
            conn = Connection.from_uri(url, conn_id="legacy_db")
        except Exception:  # its message quotes the whole URL, password included
            raise ConfigError(f"legacy_db: {where}: not a valid Airflow connection URI") from None
        extra = conn.extra_dejson
        if any(
            _is_true(extra.get(k))
            for k in ("no_host_key_check", "ignore_hostkey_verification", "allow_host_key_change")
        ):
            raise ConfigError(
                f"legacy_db: {where}: Cutover always checks the server's host key; "
                "remove no_host_key_check / allow_host_key_change and give host_key"
            )
        if not str(extra.get("host_key") or "").strip():
            raise ConfigError(
                f"legacy_db: {where}: no host_key given; Cutover checks the server's host key "
                "— add host_key=<base64> (ssh-keyscan)"
            )
        extra["host_key"] = host_key_line(str(extra["host_key"]), where)
        if extra.get("key_file") and extra.get("private_key"):
            raise ConfigError(f"legacy_db: {where}: give key_file or private_key, not both")
        if extra.get("key_file"):
            _check_key_file(str(extra["key_file"]), conn.password, where)
        conn.extra = json.dumps(extra)

        class _UrlSFTPHook(SFTPHook):
            # The provider reads settings only from a connection id; this hands it the connection
            # parsed above instead of looking one up (no Airflow database or task context needed).
            def get_connection(self, conn_id: str) -> Any:  # type: ignore[override]
                return conn

        try:
            hook = _UrlSFTPHook(
                ssh_conn_id=conn.conn_id,
                # one attempt: Airflow retries the task, and the provider's own 3 would wait ~10 s
                conn_retry_attempts=1,
                conn_timeout=None if "conn_timeout" in extra else CONN_TIMEOUT_S,
            )
        except Exception as exc:  # messages may quote an extra's value: keep the type only
            raise ConfigError(
                f"legacy_db: {where}: invalid connection extras ({type(exc).__name__})"
            ) from None
        if hook.host_key is None or hook.no_host_key_check or hook.allow_host_key_change:
            raise ConfigError(f"legacy_db: {where}: the SFTP provider would not check the host key; refused")

        stack = ExitStack()
        folder = conn.schema or "."
        try:
            sftp = stack.enter_context(hook.get_managed_conn())
            # paramiko prefers ~/.ssh/known_hosts to the key the hook gives it: host_key has the last word
            channel = sftp.get_channel()
            server_key = channel.get_transport().get_remote_server_key()
            if server_key != hook.host_key:
                raise paramiko.BadHostKeyException(hook.remote_host, server_key, hook.host_key)
            channel.settimeout(READ_TIMEOUT_S)
            attrs = sftp.stat(folder)
            if attrs.st_mode is not None and not stat.S_ISDIR(attrs.st_mode):
                raise NotADirectoryError
        except BaseException as exc:
            stack.close()
            error = _connect_error(exc, where, hook, folder)
            if error is exc:
                raise
            raise error from exc
        log.info("legacy_db: connected to %s (host key checked)", where)
        return cls(where, folder, sftp, stack)

    def describe(self) -> str:
        return self._where

    def close(self) -> None:
        self._stack.close()

    def _path(self, name: str) -> str:
        return posixpath.join(self._folder, plain_name(name, self._where))

    def files(self) -> dict[str, int]:
        with self._errors("listing the folder"):
            entries = self._sftp.listdir_attr(self._folder)
            found: dict[str, int] = {}
            for entry in entries:
                if not _is_plain(entry.filename):
                    continue
                # the listing's attributes are lstat's (a link shows as a link); fetch them if omitted
                attrs = entry if entry.st_mode is not None else self._sftp.lstat(self._path(entry.filename))
                if attrs.st_mode is not None and stat.S_ISREG(attrs.st_mode):
                    found[entry.filename] = attrs.st_size or 0
        return dict(sorted(found.items()))

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        import paramiko

        where, path = self._where, self._path(name)
        with self._errors(f"opening {name}"):
            try:
                before = self._sftp.lstat(path)
            except FileNotFoundError:
                raise ConfigError(f"{where}: no file {name}") from None
            if before.st_mode is None or stat.S_ISLNK(before.st_mode):
                raise ConfigError(f"{where}: {name} is a symbolic link; Cutover reads only regular files")
            if not stat.S_ISREG(before.st_mode):
                raise ConfigError(f"{where}: {name} is not a regular file")
            remote = self._sftp.open(path, "rb")
            try:
                # the server follows links when it opens: the file opened must be the one lstat saw
                if _identity(remote.stat()) != _identity(before):
                    raise TransientError(f"{where}: {name} was replaced while it was opened; retry")
            except BaseException:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    remote.close()
                raise
        raw = _RemoteReader(remote, before.st_size or 0, where, name)
        with io.BufferedReader(raw, buffer_size=READ_REQUEST) as file:
            yield file
        # by path: the reader may have closed the file (a TextIOWrapper, pyarrow) before it was done
        with self._errors(f"checking {name}"):
            try:
                after = self._sftp.lstat(path)
            except FileNotFoundError:
                after = None
        if after is None or _identity(after) != _identity(before):
            raise TransientError(f"{where}: {name} changed while it was read (still being delivered?)")

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """The SFTP session's failures as Cutover errors: refusals are terminal, the network transient."""
        import paramiko

        try:
            yield
        except PermissionError as exc:
            raise ConfigError(f"{self._where}: permission denied {doing}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransientError(f"{self._where}: failed {doing} ({type(exc).__name__})") from exc


def _identity(attrs: Any) -> tuple[Any, ...]:
    """What SFTP v3 tells of a file's identity (no inode): type, size, modification time, owner."""
    return (stat.S_IFMT(attrs.st_mode or 0), attrs.st_size, attrs.st_mtime, attrs.st_uid, attrs.st_gid)


def _connect_error(exc: BaseException, where: str, hook: Any, folder: str) -> BaseException:
    """The Cutover error for a failure to connect, log in or find the folder (one line, no secret)."""
    import socket

    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException) and exc.key == hook.host_key:
        return ConfigError(
            f"legacy_db: {where}: the server {hook.remote_host} port {hook.port} presented host_key, but "
            "~/.ssh/known_hosts holds another key for it, which paramiko prefers; remove that line"
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return ConfigError(
            f"legacy_db: {where}: the server {hook.remote_host} port {hook.port} presented a host key "
            "other than host_key; refusing to connect (if it was changed on purpose, update host_key)"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return ConfigError(
            f"legacy_db: {where}: the server refused user {hook.username!r} "
            f"({type(exc).__name__}; check the key or password and the user name)"
        )
    if isinstance(exc, FileNotFoundError):
        return ConfigError(f"legacy_db: {where}: no folder {folder}")
    if isinstance(exc, NotADirectoryError):
        return ConfigError(f"legacy_db: {where}: {folder} is not a folder")
    if isinstance(exc, PermissionError):
        return ConfigError(f"legacy_db: {where}: permission denied to the folder {folder}")
    if isinstance(exc, socket.gaierror):
        return TransientError(f"legacy_db: {where}: cannot resolve the host {hook.remote_host}")
    if isinstance(exc, OSError | EOFError | paramiko.SSHException):
        return TransientError(f"legacy_db: {where}: cannot connect ({type(exc).__name__})")
    return exc
