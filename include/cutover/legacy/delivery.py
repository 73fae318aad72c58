"""A delivery of CSV files (a nightly extract such as WebPT's Standard Extract), taken once per run
and read as a legacy database.

**Taking** (:func:`take`: the ``take_delivery`` task, right after a DAG's preflight). The
``legacy_db`` connection names a folder of CSV files, on this machine or on an SFTP server
(:mod:`cutover.legacy.transport`). Before anything is written, every file the profile names must
be there with a header holding every column the profile reads (a vendor's other spelling of a
column counts: ``csv.aliases``); a missing file or column is one error naming it. Then each file
is fetched once, streamed to a private work file while its SHA-256 and size are computed, and
stored in the staging store in parts of :data:`PART_BYTES` (so no file, however large, is ever
held whole in memory, and the store's encryption at rest covers the delivery). The delivery's
identity is the SHA-256 of its files' names and hashes: a file that changes on the server while
the run works is never read, since every task reads the parts this run took. The run records
which deliveries it reads (:data:`RUN_RECORD`, signed like the staged manifests): the deliveries
taken before it, in order, and its own.

**Reading** (:func:`database`). A delivery's rows are applied in order onto the state the
deliveries before it left, by WebPT's rule: a row replaces the stored row with the same key (new
and modified rows alike; a removed row stays, with its export flag, for the pipeline to report).
The result is a SQLite database per machine, built once per chain of deliveries under the state
folder, whose tables are named by the profile's ``source`` (the file name) and whose columns are
the profile's: every reader of a legacy database (extract, scope, delta, assessment, backup
fingerprint) reads it unchanged.

**A malformed line** (wrong number of fields, an unclosed quote, undecodable bytes, a truncated
last line) is kept as a row of its own: every column NULL and :data:`MALFORMED` naming the file,
the line and what is wrong (never a value). The mapping rejects it ``csv_malformed`` under the
legacy id ``csv-line-<n>``, so every line of every file is accounted.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

from cutover.errors import ConfigError, IntegrityError
from cutover.legacy.csvfile import CsvFormat, Malformed, read_header, read_records
from cutover.legacy.profile import Profile, current
from cutover.legacy.schema import LegacyTable
from cutover.legacy.source import MALFORMED, as_int
from cutover.legacy.transport import DeliverySource, is_delivery, open_delivery
from cutover.locks import file_lock

log = logging.getLogger(__name__)

PART_BYTES = 16 << 20
"""A delivered file is stored in parts of this many bytes: bounded memory whatever the file's size
(the local store seals an object whole)."""
RUN_RECORD = "delivery.json"
"""Under a run's prefix in the staging store: the deliveries the run reads, signed."""
CHAIN = "deliveries/chain.json"
"""Every delivery taken so far, in the order taken: the next delivery is applied onto them."""


class StoredPart(TypedDict):
    key: str
    bytes: int
    sha256: str


class DeliveredFile(TypedDict):
    """One file of a delivery: ids, hashes and counts only (its name is the vendor's, not PHI)."""

    table: str
    bytes: int
    sha256: str
    records: int
    """Lines read as rows (a row spanning lines counts once)."""
    malformed: int
    parts: list[StoredPart]


class Delivery(TypedDict):
    delivery: str
    """The delivery's id: the first 16 hex digits of the SHA-256 of its files' names and hashes."""
    source: str
    """Where it was taken from (the URL without any secret)."""
    taken_at: str
    profile: str
    files: dict[str, DeliveredFile]


class RunDelivery(TypedDict):
    delivery: str
    chain: list[str]
    """The deliveries the run reads, oldest first, its own last."""


# --- the profile's view of a file ----------------------------------------------------------------------
def csv_tables(profile: Profile) -> dict[str, LegacyTable]:
    """The tables a delivery holds: every table of a CSV profile, by its file name."""
    return {t.source_name: t for t in profile.tables.values()}


def csv_format(profile: Profile, table: str) -> CsvFormat:
    """How ``table``'s file is read: the profile's source options, overridden by the table's ``csv``.

    >>> from cutover.legacy.profile import simulator
    >>> csv_format(simulator(), "visits")
    CsvFormat(encoding='utf-8', delimiter=',', quoting='minimal', null='', max_record_lines=200)
    """
    options = {k: v for k, v in (profile.document.get("source") or {}).items() if k != "format"}
    own = dict(profile.document["tables"][table].get("csv") or {})
    own.pop("aliases", None)
    return CsvFormat(**{**options, **own})


def column_positions(header: list[str], profile: Profile, table: str, *, name: str) -> list[int]:
    """Where each of ``table``'s columns is in a file's ``header`` (by name, or by one of its aliases).

    A column the header does not have is a :class:`ConfigError` naming the file and every missing
    column; extra columns in the file are not read.

    >>> from cutover.legacy.profile import simulator
    >>> column_positions(["name", "clinic_id", "x"], simulator(), "payers", name="payers.csv")
    Traceback (most recent call last):
    ...
    cutover.errors.ConfigError: legacy_db: payers.csv has no column payer_id, payer_name, payer_type
    """
    spec = profile.tables[table]
    aliases = ((profile.document["tables"][table].get("csv") or {}).get("aliases")) or {}
    at = {column: i for i, column in enumerate(header)}
    positions: list[int] = []
    missing: list[str] = []
    for column in spec.column_names:
        found = [at[n] for n in (column, *aliases.get(column, ())) if n in at]
        if not found:
            missing.append(column)
        elif len(found) > 1:
            raise ConfigError(f"legacy_db: {name} has column {column} under two names")
        else:
            positions.append(found[0])
    if missing:
        raise ConfigError(f"legacy_db: {name} has no column {', '.join(missing)}")
    return positions


def check_source(source: DeliverySource, profile: Profile) -> None:
    """Every file ``profile`` names is in the delivery, with a header holding every column it reads:
    one line naming what is missing, before anything is written (the preflight's check and the take's)."""
    missing = sorted(set(csv_tables(profile)) - set(source.files()))
    if missing:
        raise ConfigError(f"legacy_db: {source.describe()} has no file {', '.join(missing)}")
    check_headers(source.open, profile)


def check_headers(open_file: Callable[[str], AbstractContextManager[BinaryIO]], profile: Profile) -> None:
    """Every file of ``profile`` opens and its header has every column read: before anything is written."""
    for name, spec in csv_tables(profile).items():
        with open_file(name) as stream:
            header = read_header(stream, csv_format(profile, spec.name), name=name)
        column_positions(header, profile, spec.name, name=name)


# --- applying files onto a SQLite state --------------------------------------------------------------
_SQL = {"int": "INTEGER", "text": "TEXT", "blob": "BLOB"}


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _create(conn: sqlite3.Connection, spec: LegacyTable) -> None:
    """A table of the state: the profile's columns with SQLite affinities (an integer id written as
    text is stored as an integer; ``12abc`` stays text for the reader to refuse), the malformed
    sidecar, and a unique key, so a row replaces the stored row with its key (NULL keys never do)."""
    columns = ", ".join(f"{_quoted(c)} {_SQL[k]}" for c, k in spec.columns)
    table = _quoted(spec.source_name)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}, {_quoted(MALFORMED)} TEXT)")
    index = _quoted(f"key_of_{spec.source_name}")
    conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} ({_quoted(spec.key)})")


HEAD_BYTES = 1 << 20
"""Bytes read to find a file's header (a header line is far shorter)."""


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read from ``rest``) followed by the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _key(value: str | None, kind: str) -> Any:
    """A row's key as the reader will read it (:mod:`cutover.legacy.source`), so that two spellings of
    one key (``7`` and `` 7 ``) are one key of the state and the later replaces the earlier: a text key
    trimmed (blank: none), an integer key as its integer where it is one within int64 (else the text,
    which the reader refuses as an invalid id).

    >>> [_key(v, "int") for v in (" 7 ", "-0", "1e20", None)], _key("  ", "text")
    ([7, 0, '1e20', None], None)
    """
    if value is None:
        return None
    if kind == "text":
        return value.strip() or None
    number, ok = as_int(value)
    return number if ok and number is not None else value


def _malformed_row(width: int, name: str, bad: Malformed, later: str | None) -> tuple[Any, ...]:
    of = f"{name} (delivery {later})" if later else name
    return (*([None] * width), f"{of} line {bad.line}: {bad.reason}")


def apply_file(
    conn: sqlite3.Connection,
    profile: Profile,
    table: str,
    stream: BinaryIO,
    *,
    name: str,
    later: str | None = None,
) -> dict[str, int]:
    """Apply one delivered file onto the state in ``conn``; its counts (records, malformed, replaced).

    ``replaced``: rows that took the place of a stored row with the same key (an earlier line of the
    same file, or an earlier delivery's row). ``later``: the delivery's id when it is not the first of
    its chain, so its malformed lines are told apart from the first one's (their legacy ids).
    """
    spec = profile.tables[table]
    fmt = csv_format(profile, table)
    _create(conn, spec)
    target = _quoted(spec.source_name)
    width = len(spec.columns)
    insert = f"INSERT OR REPLACE INTO {target} VALUES ({', '.join('?' * (width + 1))})"
    (before,) = conn.execute(f"SELECT COUNT(*) FROM {target}").fetchone()
    head = stream.read(HEAD_BYTES)  # the header is read from the file's start, then the whole file
    positions = column_positions(read_header(io.BytesIO(head), fmt, name=name), profile, table, name=name)
    records = malformed = 0
    at = spec.column_names.index(spec.key)
    for batch in read_records(io.BufferedReader(_Prefixed(head, stream)), fmt, name=name):
        rows: list[tuple[Any, ...]] = [(*(row[i] for i in positions), None) for row in batch.rows]
        rows = [(*r[:at], _key(r[at], spec.key_type), *r[at + 1 :]) for r in rows]
        rows += [_malformed_row(width, name, bad, later) for bad in batch.malformed]
        records += len(batch.rows)
        malformed += len(batch.malformed)
        conn.executemany(insert, rows)
    (after,) = conn.execute(f"SELECT COUNT(*) FROM {target}").fetchone()
    return {"records": records, "malformed": malformed, "replaced": before + records + malformed - after}


def _new_state(path: Path) -> sqlite3.Connection:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = OFF")  # built once into a private temporary file, then renamed
    conn.execute("PRAGMA synchronous = OFF")
    return conn


def materialize(folder: Path, profile: Profile | None, db: Path) -> str:
    """Read one delivery in a local ``folder`` into a new SQLite database ``db``; its ``sqlite:///`` URL.

    For tests and tools: a run reads the delivery it took (:func:`database`).
    """
    profile = profile or current()
    with open_delivery(f"csv://{folder.resolve()}") as source:
        check_headers(source.open, profile)
        conn = _new_state(db)
        try:
            for name, spec in csv_tables(profile).items():
                with source.open(name) as stream:
                    apply_file(conn, profile, spec.name, stream, name=name)
            conn.commit()
        finally:
            conn.close()
    return f"sqlite:///{db}"


# --- taking a delivery --------------------------------------------------------------------------------
def _sign(record: Mapping[str, Any]) -> str:
    from cutover.staging.store import manifest_key

    body = json.dumps({k: v for k, v in record.items() if k != "signature"}, sort_keys=True).encode()
    return hmac.new(manifest_key(), body, hashlib.sha256).hexdigest()


def _put_signed(store: Any, key: str, record: Mapping[str, Any]) -> None:
    store.put(key, json.dumps({**record, "signature": _sign(record)}, indent=1, sort_keys=True).encode())


def _get_signed(store: Any, key: str) -> dict[str, Any]:
    record = json.loads(store.get(key))
    if not isinstance(record, dict) or not hmac.compare_digest(
        str(record.get("signature", "")), _sign(record)
    ):
        raise IntegrityError(f"{key}: not signed by this pipeline")
    record.pop("signature")
    return record


def _store_parts(store: Any, prefix: str, path: Path) -> list[StoredPart]:
    parts: list[StoredPart] = []
    with path.open("rb") as fin:
        while block := fin.read(PART_BYTES):
            info = store.put(f"{prefix}/part-{len(parts):05d}", block)
            parts.append(StoredPart(key=info.key, bytes=info.size, sha256=info.sha256))
    return parts


class _Parts(io.RawIOBase):
    """A stored file read back part by part, each part checked against its SHA-256: one part in memory."""

    def __init__(self, store: Any, parts: list[StoredPart]) -> None:
        self._store, self._parts, self._next = store, list(parts), 0
        self._part, self._at = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._at == len(self._part):
            if self._next == len(self._parts):
                return 0
            part = self._parts[self._next]
            self._part, self._at, self._next = (
                self._store.get(part["key"], sha256=part["sha256"]),
                0,
                self._next + 1,
            )
        n = min(len(buffer), len(self._part) - self._at)
        buffer[:n] = self._part[self._at : self._at + n]
        self._at += n
        return n


def stored_file(store: Any, parts: list[StoredPart]) -> BinaryIO:
    """A delivered file as the run stored it, as a binary stream."""
    return io.BufferedReader(_Parts(store, parts), buffer_size=1 << 20)


def delivery_id(files: Mapping[str, str]) -> str:
    """A delivery's id from its files' names and SHA-256.

    >>> delivery_id({"b.csv": "00", "a.csv": "ff"})
    '66d87584b965cc70'
    """
    body = "".join(f"{name}\t{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def take(source_url: str, store_url: str, run_id: str, *, profile: Profile | None = None) -> Delivery:
    """Take the delivery at ``source_url`` for the run: check, fetch once, store, record (see the module)."""
    from cutover.config import state_dir
    from cutover.pipeline import run_key
    from cutover.staging.store import open_store, private_dirs

    profile = profile or current()
    store = open_store(store_url)
    tables = csv_tables(profile)
    with open_delivery(source_url) as source:
        check_source(source, profile)
        work = state_dir() / "delivery-work"
        private_dirs(work)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            facts = {name: source.fetch(name, Path(tmp) / name) for name in tables}
            ident = delivery_id({name: f.sha256 for name, f in facts.items()})
            files: dict[str, DeliveredFile] = {}
            for name, spec in tables.items():
                with (Path(tmp) / name).open("rb") as stream:
                    records = malformed = 0
                    for batch in read_records(stream, csv_format(profile, spec.name), name=name):
                        records += len(batch.rows)
                        malformed += len(batch.malformed)
                files[name] = DeliveredFile(
                    table=spec.name,
                    bytes=facts[name].size,
                    sha256=facts[name].sha256,
                    records=records,
                    malformed=malformed,
                    parts=_store_parts(store, f"deliveries/{ident}/{name}", Path(tmp) / name),
                )
        described = source.describe()
    delivery = Delivery(
        delivery=ident,
        source=described,
        taken_at=datetime.now(UTC).isoformat(timespec="seconds"),
        profile=profile.name,
        files=files,
    )
    _put_signed(store, f"deliveries/{ident}/{RUN_RECORD}", delivery)
    chain: list[str] = _get_signed(store, CHAIN)["chain"] if store.exists(CHAIN) else []
    if ident in chain and ident != chain[-1]:
        raise ConfigError(
            f"legacy_db: delivery {ident} was taken before delivery {chain[-1]}: an older delivery "
            "cannot be applied again after a newer one"
        )
    if not chain or chain[-1] != ident:
        chain.append(ident)
        _put_signed(store, CHAIN, {"chain": chain})
    _put_signed(store, f"runs/{run_key(run_id)}/{RUN_RECORD}", RunDelivery(delivery=ident, chain=chain))
    log.info(
        "took delivery %s from %s: %d files, %d bytes, %d records, %d malformed",
        ident,
        described,
        len(files),
        sum(f["bytes"] for f in files.values()),
        sum(f["records"] for f in files.values()),
        sum(f["malformed"] for f in files.values()),
    )
    database(store_url, run_id, profile=profile)  # built once here, so a broken state fails this task
    return delivery


def run_delivery(store_url: str, run_id: str) -> RunDelivery:
    """The deliveries a run reads; a run that took none is refused (fail closed)."""
    from cutover.pipeline import run_key
    from cutover.staging.store import open_store

    key = f"runs/{run_key(run_id)}/{RUN_RECORD}"
    store = open_store(store_url)
    if not store.exists(key):
        raise ConfigError(
            f"run {run_key(run_id)} took no delivery: legacy_db names a CSV delivery, which a run reads "
            "only once its take_delivery task has run"
        )
    record = _get_signed(store, key)
    return RunDelivery(delivery=str(record["delivery"]), chain=[str(d) for d in record["chain"]])


def delivery(store_url: str, ident: str) -> Delivery:
    from cutover.staging.store import open_store

    return Delivery(**_get_signed(open_store(store_url), f"deliveries/{ident}/{RUN_RECORD}"))  # type: ignore[typeddict-item]


def _state_name(profile: Profile, chain: list[str]) -> str:
    """The name of the state a chain of deliveries builds under a profile (its cache file's stem)."""
    return hashlib.sha256(f"{profile.sha256}:{','.join(chain)}".encode()).hexdigest()[:16]


def database(store_url: str, run_id: str, *, profile: Profile | None = None) -> str:
    """The ``sqlite:///`` URL of the legacy state a run reads: its chain of deliveries applied in order.

    Built once per machine and chain under ``<state folder>/deliveries/`` (0700; it holds PHI, like
    the simulator's legacy file), from the parts in the staging store, each checked against its
    SHA-256; a concurrent task waits for the one building it. Building one removes the stale states
    of other chains (:data:`STALE_SECONDS`).
    """
    from cutover.config import state_dir
    from cutover.staging.store import open_store, private_dirs

    profile = profile or current()
    chain = run_delivery(store_url, run_id)["chain"]
    name = _state_name(profile, chain)
    folder = state_dir() / "deliveries"
    private_dirs(folder)
    db = folder / f"{name}.db"
    with file_lock(folder / f"{name}.lock"):
        if db.is_file() and (folder / f"{name}.json").is_file():
            return f"sqlite:///{db}"
        store = open_store(store_url)
        building = folder / f".{name}.building"
        conn = _new_state(building)
        applied: dict[str, dict[str, dict[str, int]]] = {}
        try:
            for n, ident in enumerate(chain):
                for file_name, facts in delivery(store_url, ident)["files"].items():
                    with stored_file(store, facts["parts"]) as stream:
                        later = ident if n else None
                        counts = apply_file(
                            conn, profile, facts["table"], stream, name=file_name, later=later
                        )
                    applied.setdefault(ident, {})[file_name] = counts
            conn.commit()
        except BaseException:
            conn.close()
            building.unlink(missing_ok=True)
            raise
        conn.close()
        building.chmod(0o600)
        (folder / f"{name}.json").write_text(json.dumps(applied))
        shutil.move(building, db)
    _sweep(folder, keep=name)
    return f"sqlite:///{db}"


STALE_SECONDS = 6 * 3600
"""A delivery's state no run has built for this long is removed when another is built: it is a
plaintext copy of PHI, and any run that still needs it builds it again from the staging store."""


def _sweep(folder: Path, *, keep: str) -> None:
    """Remove the states (and their counts and locks) of other chains older than :data:`STALE_SECONDS`.

    A reader that still has one open keeps reading it (the file goes when it closes)."""
    import time

    cutoff = time.time() - STALE_SECONDS
    for path in folder.glob("*.db"):
        if path.stem != keep and path.stat().st_mtime < cutoff:
            for leftover in (path, path.with_suffix(".json"), path.with_suffix(".lock")):
                leftover.unlink(missing_ok=True)
            log.info("removed the stale delivery state %s", path.name)


def applied(store_url: str, run_id: str, *, profile: Profile | None = None) -> dict[str, dict[str, int]]:
    """How the run's own delivery was applied, per file: records, malformed lines and ``replaced`` (rows
    that took the place of a stored row with their key): a file's lines are accounted as rows of the
    state (records + malformed - replaced new rows)."""
    from cutover.config import state_dir

    profile = profile or current()
    run = run_delivery(store_url, run_id)
    database(store_url, run_id, profile=profile)
    name = _state_name(profile, run["chain"])
    counts: dict[str, dict[str, dict[str, int]]] = json.loads(
        (state_dir() / "deliveries" / f"{name}.json").read_text()
    )
    return counts[run["delivery"]]


def readable(legacy_url: str, store_url: str, run_id: str) -> str:
    """What a stage reads: the legacy database itself, or the run's delivery read as one."""
    return database(store_url, run_id) if is_delivery(legacy_url) else legacy_url


class TakenManifest(TypedDict):
    """What ``take_delivery`` hands on: ids and counts (None: the legacy source is a database)."""

    delivery: str | None
    chain: int
    files: int
    records: int
    malformed: int


def take_for_run(legacy_url: str, store_url: str, run_id: str) -> TakenManifest:
    """The ``take_delivery`` task: take the delivery ``legacy_url`` names (nothing for a database) and
    put its record in the run's evidence folder (``delivery.json``: files, SHA-256, sizes, counts)."""
    if not is_delivery(legacy_url):
        return TakenManifest(delivery=None, chain=0, files=0, records=0, malformed=0)
    from cutover.pipeline import evidence_dir

    taken = take(legacy_url, store_url, run_id)
    chain = run_delivery(store_url, run_id)["chain"]
    replaced = applied(store_url, run_id)
    files = {
        name: {k: v for k, v in facts.items() if k != "parts"}
        | {"parts": len(facts["parts"]), "replaced": replaced[name]["replaced"]}
        for name, facts in taken["files"].items()
    }
    record = {**taken, "files": files, "chain": chain}
    (evidence_dir(run_id) / RUN_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True))
    return TakenManifest(
        delivery=taken["delivery"],
        chain=len(chain),
        files=len(files),
        records=sum(f["records"] for f in taken["files"].values()),
        malformed=sum(f["malformed"] for f in taken["files"].values()),
    )
