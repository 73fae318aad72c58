"""The fix for Airflow 3.3.2's clear of a run with a queued-at deadline (apache/airflow#70368)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover import airflow_compat


def test_the_fix_is_for_the_airflow_the_lock_file_pins() -> None:
    lock = (Path(__file__).resolve().parents[2] / "requirements.lock").read_text()
    assert f"apache-airflow=={airflow_compat.FOR_VERSION}\n" in lock  # an upgrade revisits the fix


def test_installed_in_every_component_that_loads_the_plugin() -> None:
    from airflow.models import taskinstance

    import cutover.airflow_plugin  # noqa: F401 (loading the plugin installs it)

    assert taskinstance._recalculate_dagrun_queued_at_deadlines is airflow_compat._recalculate


@pytest.mark.parametrize("stored", ["3600", None, {"__data__": "x"}, {}])
def test_an_interval_it_cannot_read_is_refused_not_guessed(stored: object) -> None:
    with pytest.raises(TypeError, match="deadline interval"):
        airflow_compat.interval_seconds(stored)
