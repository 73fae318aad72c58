"""The cutover's chain as Airflow Assets: what each DAG produces and what it relies on, so the Assets
page shows the lineage (a verified backup and a trial verdict before a migration, a migrated target
before a delta sync or a monitor run). Lineage only: the DAGs keep their own schedules, and
pt_cutover still checks its backup itself (``require_verified_backup``)."""

from __future__ import annotations

from airflow.sdk import Asset

VERIFIED_BACKUP = Asset(name="verified_backup", uri="cutover://backup/verified", group="cutover")
"""A pt_backup whose restore test passed: what pt_cutover requires."""

TRIAL_VERDICT = Asset(name="trial_verdict", uri="cutover://trial/verdict", group="cutover")
"""pt_sample_transfer's estimate and go/no-go."""

MIGRATED_TARGET = Asset(name="migrated_target", uri="cutover://target/migrated", group="cutover")
"""The target after a cutover (big bang or a wave) or a delta sync wrote it."""
