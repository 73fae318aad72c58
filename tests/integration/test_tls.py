"""TLS to PostgreSQL with ``sslmode=verify-full`` against a throwaway server whose CA the test makes.

The cluster is started with the system's PostgreSQL binaries (``/usr/lib/postgresql/*/bin``) or,
on a machine that has none, with those bundled in the ``pgserver`` wheel; ``ssl=on``, a server
certificate for ``localhost`` only, and a ``pg_hba.conf`` that accepts TLS connections only
(``hostssl`` with SCRAM passwords; ``hostnossl`` rejected).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from conftest import require
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cutover import pipeline
from cutover.config import configured_url, fields_from_env, url_from_fields
from cutover.security import (
    connection_security,
    migrate_and_grant,
    provision_target_roles,
    require_verified_tls,
)
from cutover.simulate import simulate
from cutover.target.checksums import table_checksums

SUPERUSER_PASSWORD = "tls-super-pw"
AS_OF = date(2026, 11, 27)


# --- certificates ---------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate authority valid for a day."""
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def make_server_cert(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], dns_names: list[str]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for ``dns_names`` only (no IP address in its SAN), signed by ``ca``."""
    ca_cert, ca_key = ca
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# --- a throwaway cluster --------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The newest system PostgreSQL's bin folder, else the one in the pgserver wheel.

    ``CUTOVER_TEST_EMBEDDED_ONLY=1`` takes the wheel's, as on a fresh machine.
    """
    embedded_only = os.environ.get("CUTOVER_TEST_EMBEDDED_ONLY") == "1"
    system = (
        []
        if embedded_only
        else sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        )
    )
    for folder in reversed(system):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def built_with_ssl(bins: Path) -> bool:
    """Whether the server binaries in ``bins`` support ``ssl = on`` (the pgserver 0.1.4 wheel's do not)."""
    if str(bins).startswith("/usr/lib/postgresql"):
        return True  # Debian's and PGDG's server packages are built with OpenSSL
    configure = subprocess.run([str(bins / "pg_config"), "--configure"], capture_output=True, text=True)
    return "openssl" in configure.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca_file: Path
    wrong_ca_file: Path

    def url(self, host: str = "localhost", *, user: str = "postgres", password: str = SUPERUSER_PASSWORD,
            db: str = "postgres", **params: str) -> str:  # fmt: skip
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"postgresql://{auth}{host}:{self.port}/{db}" + (f"?{query}" if query else "")


HBA = """
local     all  all                  trust
hostssl   all  all  127.0.0.1/32    scram-sha-256
hostssl   all  all  ::1/128         scram-sha-256
hostnossl all  all  0.0.0.0/0       reject
hostnossl all  all  ::/0            reject
"""


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    """initdb + ``ssl=on`` on a free loopback port; as root, the cluster runs as an unprivileged user."""
    bins = postgres_bin()
    require(
        built_with_ssl(bins),
        f"no PostgreSQL server built with SSL here ({bins} lacks it; install Debian's postgresql)",
    )
    folder = Path(tempfile.mkdtemp(prefix="cutover-tls-"))  # not under pytest's 0700 root-only tree
    as_user: str | None = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        import stat

        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        as_user = "postgres" if _user_exists("postgres") else "pgserver"
        ensure_user_exists(as_user)
        if not str(bins).startswith("/usr/lib/postgresql"):  # the wheel's binaries, as pgserver prepares them
            ensure_prefix_permissions(bins)
            ensure_folder_permissions(bins, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(bins.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ca = make_ca("Cutover test CA")
    server_cert, server_key = make_server_cert(ca, ["localhost"])
    wrong_ca, _ = make_ca("Some other CA")
    data = folder / "data"
    (folder / "ca.pem").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    (folder / "wrong-ca.pem").write_bytes(wrong_ca.public_bytes(serialization.Encoding.PEM))
    pwfile = folder / "pw"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    if as_user:
        entry = pwd.getpwnam(as_user)
        for path in (folder, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o755)
    run = {"user": as_user} if as_user else {}
    subprocess.run(
        [str(bins / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", "--auth-local=trust",
         f"--pwfile={pwfile}", "--encoding=UTF8", "--no-sync"],
        check=True, capture_output=True, **run,  # type: ignore[arg-type]
    )  # fmt: skip
    (data / "server.crt").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    (data / "server.key").write_bytes(_pem_key(server_key))
    (data / "server.key").chmod(0o600)
    (data / "pg_hba.conf").write_text(HBA)
    port = _free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data}'\n"
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            "ssl_min_protocol_version = 'TLSv1.2'\nfsync = off\nshared_buffers = 16MB\nmax_connections = 30\n"
        )
    if as_user:
        entry = pwd.getpwnam(as_user)
        for path in (
            data / "server.crt",
            data / "server.key",
            data / "pg_hba.conf",
            data / "postgresql.conf",
        ):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    pg_ctl = [str(bins / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log")]
    started = subprocess.run([*pg_ctl, "-w", "-t", "60", "start"], capture_output=True, **run)  # type: ignore[call-overload]
    assert started.returncode == 0, (folder / "server.log").read_text(errors="replace")[-3000:]
    try:
        yield TlsServer(port=port, ca_file=folder / "ca.pem", wrong_ca_file=folder / "wrong-ca.pem")
    finally:
        subprocess.run([*pg_ctl, "-w", "-m", "immediate", "stop"], capture_output=True, **run)  # type: ignore[call-overload]
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- tests ----------------------------------------------------------------------------------------


def test_verify_full_with_the_test_ca_and_localhost_connects(tls_server: TlsServer) -> None:
    url = tls_server.url(sslmode="verify-full", sslrootcert=str(tls_server.ca_file))
    require_verified_tls(url)
    security = connection_security(url)
    assert security["ssl"] is True
    assert security["version"] in {"TLSv1.2", "TLSv1.3"}
    assert security["sslmode"] == "verify-full"


def test_a_server_signed_by_another_ca_is_refused(tls_server: TlsServer) -> None:
    url = tls_server.url(sslmode="verify-full", sslrootcert=str(tls_server.wrong_ca_file))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(url).close()


def test_a_host_name_not_in_the_certificate_is_refused_under_verify_full(tls_server: TlsServer) -> None:
    url = tls_server.url("127.0.0.1", sslmode="verify-full", sslrootcert=str(tls_server.ca_file))
    with pytest.raises(psycopg.OperationalError, match=r'does not match host name "127\.0\.0\.1"'):
        psycopg.connect(url).close()
    # verify-ca checks the chain only: the same address connects, which is why the pipeline wants verify-full
    chain_only = tls_server.url("127.0.0.1", sslmode="verify-ca", sslrootcert=str(tls_server.ca_file))
    assert connection_security(chain_only)["ssl"] is True


def test_hostssl_only_pg_hba_refuses_a_connection_without_tls(tls_server: TlsServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(tls_server.url(sslmode="disable")).close()


def test_the_pipeline_loads_over_verify_full_from_an_airflow_connection(
    tls_server: TlsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    admin = tls_server.url(sslmode="verify-full", sslrootcert=str(tls_server.ca_file))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pt_tls")
        conn.execute("CREATE DATABASE pt_tls")
    # least privilege over TLS as well: the roles' SCRAM verifiers are made on the client
    roles = provision_target_roles(
        tls_server.url(db="pt_tls", sslmode="verify-full", sslrootcert=str(tls_server.ca_file)),
        owner="tls_owner",
        loader="tls_loader",
        owner_password="owner-pw-1",
        loader_password="loader-pw-1",
    )
    # the target connection as an operator configures it: Airflow's JSON form with TLS in the extras
    extras = {"sslmode": "verify-full", "sslrootcert": str(tls_server.ca_file), "cursor": "dictcursor"}
    connection = {
        "conn_type": "postgres", "host": "localhost", "port": tls_server.port, "schema": "pt_tls",
        "login": "tls_loader", "password": "loader-pw-1", "extra": extras,
    }  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_TARGET_DB", json.dumps(connection))
    target = configured_url("target_db")
    assert target is not None
    assert "sslmode=verify-full" in target
    assert "cursor" not in target  # an Airflow-hook-only extra libpq would refuse
    # the URI form carries the same options
    uri = f"postgres://tls_loader:loader-pw-1@localhost:{tls_server.port}/pt_tls?" + (
        f"sslmode=verify-full&sslrootcert={quote(str(tls_server.ca_file), safe='')}"
    )
    assert url_from_fields(fields_from_env(uri)) == target
    # …and so does Airflow's URI form with the whole extra as JSON in ``__extra__``
    packed = f"postgres://tls_loader:loader-pw-1@localhost:{tls_server.port}/pt_tls?__extra__=" + quote(
        json.dumps(extras), safe=""
    )
    assert url_from_fields(fields_from_env(packed)) == target

    assert migrate_and_grant(roles.owner_url, target)
    legacy = tmp_path / "legacy.db"
    manifest = simulate(f"sqlite:///{legacy}", patients=30, seed=77)
    store = f"file://{tmp_path / 'stage'}"
    pipeline.begin_run(target, "tls-1", "pt_cutover", {}, "tester")
    for table in pipeline.migrated_tables():
        pipeline.extract_table(f"sqlite:///{legacy}", store, "tls-1", table)
        pipeline.map_table(store, "tls-1", table, as_of=AS_OF)
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(target, store, "tls-1", table)
    outcomes = pipeline.outcomes(target, "tls-1", manifest["tables"])
    assert {t: o["migrated"] + o["merged"] + o["rejected"] for t, o in outcomes.items()} == manifest["tables"]
    security = connection_security(target)
    assert security["ssl"] is True
    assert security["sslmode"] == "verify-full"
    checksums = table_checksums(target)
    assert checksums["patient"]["rows"] > 0
    with psycopg.connect(admin, autocommit=True) as conn:
        ssl_backends = conn.execute(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE NOT s.ssl"
            " AND a.backend_type = 'client backend'"
        ).fetchone()
    assert ssl_backends == (0,)  # no client connection without TLS
