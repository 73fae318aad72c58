"""The audit log's hash chain: what the schema owner can still do to it is found by `cutover audit verify`.

The owner (here the superuser that owns the test database's schemas, which can do at least as
much) disables the append-only trigger and deletes or alters an entry: verify names it. The loader
role may only append.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from cutover import pipeline
from cutover.audit import audit_head, verify
from cutover.cli import main
from cutover.security import migrate_and_grant, provision_target_roles
from cutover.target import upgrade


def _owner(url: str, statement: str) -> None:
    """What the owner can do: the trigger off, a change, the trigger on again."""
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE migration.audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute(statement)
        conn.execute("ALTER TABLE migration.audit_log ENABLE TRIGGER audit_log_append_only")


def _verify(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    monkeypatch.setenv("AIRFLOW_CONN_TARGET_DB", url)
    code = main(["audit", "verify", *args])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1, out
    return code, out[0]


@pytest.fixture
def logged(pg_url: str) -> str:
    """A target whose log predates the chain (chained by the migration), then three runs' entries."""
    upgrade(pg_url, to_version=6)
    with psycopg.connect(pg_url) as conn:
        for action in ("upgrade", "trace", "trace"):
            conn.execute(
                "INSERT INTO migration.audit_log (actor, action, detail) VALUES ('old', %s, '{\"n\": 1.50}')",
                (action,),
            )
    upgrade(pg_url)
    for run_id in ("run-1", "run-2", "run-3"):
        pipeline.begin_run(pg_url, run_id, "pt_cutover", {"mode": "big_bang", "wave": "ünï"}, "ops@clinic")
        with psycopg.connect(pg_url) as conn:
            conn.execute("UPDATE migration.run SET state = 'success' WHERE run_id = %s", (run_id,))
    return pg_url


def test_an_untouched_log_verifies_with_its_head(
    logged: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    head = audit_head(logged)
    assert head["count"] == 6  # 3 before the chain, 3 runs
    code, line = _verify(logged, monkeypatch, capsys)
    assert code == 0
    assert line == f"audit log OK: 6 entries, head id {head['last_id']} hash {head['last_hash']}"
    with psycopg.connect(logged) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM migration.audit_log ORDER BY id")]
        actions = [r[0] for r in conn.execute("SELECT action FROM migration.audit_log ORDER BY id")]
    assert ids == list(range(1, 7))  # consecutive, in chain order
    assert actions[3] == "start pt_cutover"
    assert _verify(logged, monkeypatch, capsys, "--anchor", f"{head['last_id']}:{head['last_hash']}")[0] == 0


def test_a_deleted_entry_is_named(
    logged: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _owner(logged, "DELETE FROM migration.audit_log WHERE id = 4")
    code, line = _verify(logged, monkeypatch, capsys)
    assert code == 1
    assert line == "audit log BROKEN at id 4: missing: entry 4 is gone (entry 5 chains to it)"
    # the first entry too
    _owner(logged, "DELETE FROM migration.audit_log WHERE id = 1")
    assert _verify(logged, monkeypatch, capsys)[1].startswith("audit log BROKEN at id 1: missing")


def test_an_altered_entry_is_named_even_with_its_hash_recomputed(
    logged: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _owner(logged, "UPDATE migration.audit_log SET actor = 'someone else' WHERE id = 5")
    code, line = _verify(logged, monkeypatch, capsys)
    assert (code, line) == (1, "audit log BROKEN at id 5: altered: its content does not match its hash")
    # the owner recomputes that entry's hash with the database's own function: the next entry still
    # chains to the old one
    _owner(
        logged,
        "UPDATE migration.audit_log SET hash = encode(sha256(convert_to(prev_hash || migration.audit_content("
        "id, prev_id, at, actor, action, run_id, detail), 'UTF8')), 'hex') WHERE id = 5",
    )
    code, line = _verify(logged, monkeypatch, capsys)
    assert (code, line) == (
        1,
        "audit log BROKEN at id 5: altered: its hash is not the one entry 6 chained to",
    )


def test_a_rewritten_tail_is_caught_against_an_earlier_anchor(
    logged: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    head = audit_head(logged)
    anchor = f"{head['last_id']}:{head['last_hash']}"
    # the last entry deleted and another appended in its place: a consistent chain…
    _owner(logged, f"DELETE FROM migration.audit_log WHERE id = {head['last_id']}")
    with psycopg.connect(logged) as conn:
        conn.execute("INSERT INTO migration.audit_log (actor, action) VALUES ('owner', 'nothing to see')")
    assert _verify(logged, monkeypatch, capsys)[0] == 0
    # …but not the one the evidence recorded
    code, line = _verify(logged, monkeypatch, capsys, "--anchor", anchor)
    assert (code, line) == (
        1,
        f"audit log BROKEN at id {head['last_id']}: altered: its hash differs from the anchor recorded earlier",
    )


def test_an_entry_written_with_the_chain_off_is_unchained(logged: str) -> None:
    with psycopg.connect(logged) as conn:
        conn.execute("ALTER TABLE migration.audit_log DISABLE TRIGGER audit_log_chain")
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute("INSERT INTO migration.audit_log (actor, action) VALUES ('owner', 'unchained')")
    assert verify(logged).ok


@pytest.fixture
def roles(pg_url: str) -> Iterator[tuple[str, str]]:
    prefix = f"a{uuid.uuid4().hex[:8]}"
    made = provision_target_roles(pg_url, owner=f"{prefix}_owner", loader=f"{prefix}_loader")
    yield made.owner_url, made.loader_url
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{prefix}_owner", "{prefix}_loader" CASCADE')
        conn.execute(f'DROP ROLE "{prefix}_owner"')
        conn.execute(f'DROP ROLE "{prefix}_loader"')


def test_the_loader_may_only_append(roles: tuple[str, str]) -> None:
    owner, loader = roles
    migrate_and_grant(owner, loader)
    pipeline.begin_run(loader, "run-l", "pt_cutover", {}, "tester")  # the loader writes the log, chained
    with psycopg.connect(loader) as conn:
        conn.execute("INSERT INTO migration.audit_log (actor, action) VALUES ('tester', 'probe')")
    for statement in (
        "UPDATE migration.audit_log SET actor = 'x'",
        "DELETE FROM migration.audit_log",
        "TRUNCATE migration.audit_log",
        "ALTER TABLE migration.audit_log DISABLE TRIGGER audit_log_append_only",
        "ALTER TABLE migration.audit_log DISABLE TRIGGER audit_log_chain",
    ):
        with psycopg.connect(loader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    report = verify(loader)
    assert report.ok
    assert report.count == 2  # the run's start, the probe
