"""A run works under one legacy profile: recorded when it begins, read again by every stage, and a
resume or a delta sync under another profile (or the same profile edited since) is refused."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from cutover.errors import ConfigError, IntegrityError
from cutover.legacy.profile import current, legacy_tables, load_profile, run_profile, simulator
from cutover.pipeline import begin_run, run_key
from cutover.staging.store import open_store
from cutover.target import upgrade


def _edited(tmp_path: Path, name: str = "edited.yaml") -> Path:
    """The simulator profile with one rule parameter changed: another SHA-256, the same tables."""
    path = tmp_path / name
    text = Path(simulator().origin).read_text()
    path.write_text(text.replace("mrn: {from: mrn, rule: text}", "mrn: {from: mrn, rule: upper}"))
    return path


def test_a_run_records_its_profile_and_refuses_to_resume_under_another(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    store_url = f"file://{tmp_path / 'store'}"
    begin_run(pg_url, "manual__r1", "pt_cutover", {"mode": "big_bang"}, "tester", store_url=store_url)
    with psycopg.connect(pg_url) as conn:
        name, sha = conn.execute(
            "SELECT profile_name, profile_sha256 FROM migration.run WHERE run_id = 'manual__r1'"
        ).fetchone()
        detail = conn.execute(
            "SELECT detail FROM migration.audit_log WHERE run_id = 'manual__r1' ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
    assert (name, sha) == ("simulator", simulator().sha256)
    assert detail["profile_sha256"] == simulator().sha256
    # every stage of the run reads the recorded profile again
    store = open_store(store_url)
    assert run_profile(store, f"runs/{run_key('manual__r1')}").sha256 == simulator().sha256
    # the same run again under the same profile (a retried task, a resume) is fine
    begin_run(pg_url, "manual__r1", "pt_cutover", {"mode": "big_bang"}, "tester", store_url=store_url)
    edited = _edited(tmp_path)
    with pytest.raises(ConfigError, match="began under another legacy profile"):
        begin_run(
            pg_url, "manual__r1", "pt_cutover", {}, "tester", store_url=store_url, profile_ref=str(edited)
        )


def test_a_profile_edited_during_a_run_is_refused_by_its_next_stage(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    edited = _edited(tmp_path)
    store_url = f"file://{tmp_path / 'store'}"
    begin_run(pg_url, "manual__r2", "pt_cutover", {}, "tester", store_url=store_url, profile_ref=str(edited))
    store, prefix = open_store(store_url), f"runs/{run_key('manual__r2')}"
    assert run_profile(store, prefix).sha256 == load_profile(edited).sha256 != simulator().sha256
    edited.write_text(
        edited.read_text().replace("mrn: {from: mrn, rule: upper}", "mrn: {from: mrn, rule: lower}")
    )
    with pytest.raises(IntegrityError, match="changed since the run began"):
        run_profile(store, prefix)
    # a record the pipeline did not sign (someone who can write to the store) is refused too
    key = f"{prefix}/profile.json"
    store.put(key, store.get(key).replace(b'"sha256": "', b'"sha256": "0'))
    with pytest.raises(IntegrityError, match="not signed"):
        run_profile(store, prefix)


def test_a_delta_sync_under_another_profile_is_refused(pg_url: str, tmp_path: Path) -> None:
    from cutover.delta import _same_profile
    from cutover.legacy.profile import use

    upgrade(pg_url)
    begin_run(pg_url, "manual__wave1", "pt_cutover", {"mode": "phased", "wave": "w1"}, "tester")
    _same_profile(pg_url, ["manual__wave1"])  # the same profile: nothing to say
    with use(load_profile(_edited(tmp_path))):
        assert current().sha256 != simulator().sha256
        assert list(legacy_tables()) == list(simulator().tables)
        with pytest.raises(ConfigError, match="a delta sync uses the waves' profile"):
            _same_profile(pg_url, ["manual__wave1"])
