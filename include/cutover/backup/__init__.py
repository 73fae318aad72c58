"""A verified, encrypted backup of the legacy database, and the gate a cutover passes first.

Stages (the tasks of ``pt_backup``): :func:`snapshot_legacy` → :func:`encrypt_and_store` →
:func:`restore_test` → :func:`mark_verified`; :func:`verify_backup` runs the last two.
:func:`require_verified_backup` is the gate ``pt_cutover`` calls before it touches anything: a
verified, recent backup of the very legacy database the run reads.
"""

from __future__ import annotations

from cutover.backup.crypto import backup_key
from cutover.backup.stage import (
    BackupGateError,
    BackupInfo,
    BackupManifest,
    ScratchFactory,
    SnapshotInfo,
    SourceFingerprint,
    VerifyResult,
    back_up,
    encrypt_and_store,
    mark_verified,
    require_verified_backup,
    restore_test,
    scratch_on,
    snapshot,
    snapshot_legacy,
    verify_backup,
)

__all__ = [
    "BackupGateError",
    "BackupInfo",
    "BackupManifest",
    "ScratchFactory",
    "SnapshotInfo",
    "SourceFingerprint",
    "VerifyResult",
    "back_up",
    "backup_key",
    "encrypt_and_store",
    "mark_verified",
    "require_verified_backup",
    "restore_test",
    "scratch_on",
    "snapshot",
    "snapshot_legacy",
    "verify_backup",
]
