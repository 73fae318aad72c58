"""The evidence bundle's manifest: checked by the real ``sha256sum -c``, tampering found, copied to the store."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import require

from cutover.errors import IntegrityError
from cutover.report.bundle import (
    MANIFEST,
    publish_bundle,
    read_bundle_manifest,
    verify_bundle,
    verify_published,
    write_bundle_manifest,
)
from cutover.staging.store import S3Store, open_store

RUN_ID = "manual__2026-11-27T18:00:00+00:00"
RUN_KEY = "manual__2026-11-27T18-00-00-00-00"

needs_sha256sum = pytest.mark.usefixtures("coreutils_sha256sum")


@pytest.fixture
def coreutils_sha256sum() -> None:
    """The real ``sha256sum``: skipped where coreutils lacks it, a failure in CI."""
    require(shutil.which("sha256sum") is not None, "coreutils sha256sum is missing")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """An evidence folder as a run leaves it: JSON, HTML, a nested data docs site, a binary file."""
    folder = tmp_path / "evidence"
    (folder / "gates").mkdir(parents=True)
    (folder / "data_docs" / "local_site" / "validations").mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"run_id": RUN_ID, "tables": {}}))
    (folder / "report.html").write_text("<!DOCTYPE html><title>r</title>")
    (folder / "gates" / "mapped.json").write_text('{"gate": "mapped", "passed": true, "results": []}')
    (folder / "data_docs" / "local_site" / "index.html").write_text("<html></html>")
    (folder / "data_docs" / "local_site" / "validations" / "a b.json").write_text("{}")  # a space in a name
    (folder / "backup_manifest.json").write_bytes(bytes(range(256)) * 64)
    (folder / "results").mkdir()
    (folder / "results" / ".ge_store_backend_id").write_text("store_backend_id = 1\n")  # GX's, hidden
    return folder


def _sha256sum_check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "--check", "--strict", MANIFEST],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


@needs_sha256sum
def test_manifest_lists_every_file_sorted_and_sha256sum_accepts_it(bundle: Path) -> None:
    path = write_bundle_manifest(bundle)
    lines = path.read_text().splitlines()
    names = [line.split("  ", 1)[1] for line in lines]
    assert names == sorted(names)
    assert MANIFEST not in names
    assert set(names) == {
        "summary.json",
        "report.html",
        "gates/mapped.json",
        "data_docs/local_site/index.html",
        "data_docs/local_site/validations/a b.json",
        "backup_manifest.json",
        "results/.ge_store_backend_id",
    }
    assert (
        lines[names.index("backup_manifest.json")].split()[0]
        == hashlib.sha256((bundle / "backup_manifest.json").read_bytes()).hexdigest()
    )
    result = _sha256sum_check(bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 7
    assert verify_bundle(bundle) == []


@needs_sha256sum
def test_a_tampered_file_fails_sha256sum_and_verify(bundle: Path) -> None:
    write_bundle_manifest(bundle)
    summary = bundle / "summary.json"
    summary.write_text(summary.read_text().replace("tables", "tablez"))  # same size, other bytes
    result = _sha256sum_check(bundle)
    assert result.returncode != 0
    assert "summary.json: FAILED" in result.stdout
    assert verify_bundle(bundle) == ["changed: summary.json"]


def test_missing_and_extra_files_are_named(bundle: Path) -> None:
    write_bundle_manifest(bundle)
    (bundle / "gates" / "mapped.json").unlink()
    (bundle / "gates" / "late.json").write_text("{}")
    assert verify_bundle(bundle) == ["missing: gates/mapped.json", "extra: gates/late.json"]
    (bundle / MANIFEST).unlink()
    assert verify_bundle(bundle) == [f"missing: {MANIFEST}"]


@needs_sha256sum
def test_odd_names_are_escaped_as_coreutils_does(bundle: Path) -> None:
    (bundle / "back\\slash.txt").write_text("x")
    write_bundle_manifest(bundle)
    assert "\\" + hashlib.sha256(b"x").hexdigest() + "  back\\\\slash.txt" in (bundle / MANIFEST).read_text()
    assert _sha256sum_check(bundle).returncode == 0
    assert verify_bundle(bundle) == []
    ours = (bundle / MANIFEST).read_text()
    coreutils = subprocess.run(
        ["sha256sum", *sorted(read_bundle_manifest(ours))],
        cwd=bundle,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert coreutils == ours  # byte for byte what sha256sum itself writes


def test_a_malformed_manifest_is_refused(bundle: Path) -> None:
    (bundle / MANIFEST).write_text("not a manifest\n")
    with pytest.raises(IntegrityError, match="line 1"):
        verify_bundle(bundle)
    (bundle / MANIFEST).write_text(f"{'0' * 64}  ../outside.txt\n")
    with pytest.raises(IntegrityError, match="outside the bundle"):
        verify_bundle(bundle)


def test_publish_to_a_folder_store_copies_every_file_and_verifies(bundle: Path, tmp_path: Path) -> None:
    store_url = f"file://{tmp_path / 'staging'}"
    published = publish_bundle(bundle, store_url, RUN_ID)  # writes the manifest first
    assert published["prefix"] == f"runs/{RUN_KEY}/evidence"
    assert published["objects"] == 8
    store = open_store(store_url)
    assert (
        store.get(f"runs/{RUN_KEY}/evidence/gates/mapped.json")
        == (bundle / "gates" / "mapped.json").read_bytes()
    )
    assert verify_published(store_url, RUN_ID) == []
    copy = tmp_path / "staging" / "runs" / RUN_KEY / "evidence"
    if shutil.which("sha256sum"):
        assert _sha256sum_check(copy).returncode == 0  # the store's copy checks on its own too
    (copy / "summary.json").write_text("{}")
    assert verify_published(store_url, RUN_ID) == ["changed: summary.json"]


def test_publish_refuses_a_folder_that_no_longer_matches(bundle: Path, tmp_path: Path) -> None:
    write_bundle_manifest(bundle)
    (bundle / "report.html").write_text("changed after the manifest")
    store_url = f"file://{tmp_path / 'staging'}"
    with pytest.raises(IntegrityError, match=r"changed: report\.html"):
        publish_bundle(bundle, store_url, RUN_ID)
    assert open_store(store_url).list(f"runs/{RUN_KEY}/evidence") == []


@pytest.mark.services
def test_publish_to_s3_with_encryption_and_checksums(bundle: Path, s3_endpoint: str) -> None:
    import boto3

    bucket = f"evidence-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ).create_bucket(Bucket=bucket)
    store_url = f"s3://{bucket}/clinic?endpoint_url={s3_endpoint}&aws_access_key_id=k&aws_secret_access_key=s&region_name=us-east-1"
    published = publish_bundle(bundle, store_url, RUN_ID)
    store = open_store(store_url)
    assert isinstance(store, S3Store)
    keys = store.list(f"runs/{RUN_KEY}/evidence/")
    assert len(keys) == published["objects"] == 8
    assert f"runs/{RUN_KEY}/evidence/data_docs/local_site/validations/a b.json" in keys
    head = store.head(f"runs/{RUN_KEY}/evidence/{MANIFEST}")
    assert head["ServerSideEncryption"] == "AES256"
    assert verify_published(store_url, RUN_ID) == []
    store.client.put_object(Bucket=bucket, Key=f"clinic/runs/{RUN_KEY}/evidence/report.html", Body=b"swapped")
    store.client.put_object(Bucket=bucket, Key=f"clinic/runs/{RUN_KEY}/evidence/added.json", Body=b"{}")
    assert verify_published(store_url, RUN_ID) == ["extra: added.json", "changed: report.html"]
