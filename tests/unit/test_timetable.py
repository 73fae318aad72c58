"""pt_cutover's timetable never starts a window long past, as Airflow's own cron trigger does on unpause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.timetables.base import TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable

from cutover.timetable import WindowTimetable

FRIDAY_6PM = "0 18 * * 5"
NEW_YORK = "America/New_York"
OPENED = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)  # Friday 18:00 in New York
NEXT = datetime(2026, 12, 11, 23, 0, tzinfo=UTC)
UNPAUSED = TimeRestriction(earliest=datetime(2026, 1, 1, tzinfo=UTC), latest=None, catchup=False)


def _at(monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
    import airflow._shared.timezones.timezone as tz
    import airflow.timetables.trigger as trigger

    monkeypatch.setattr(trigger, "utcnow", lambda: now)
    monkeypatch.setattr(tz, "utcnow", lambda: now)


def _first(timetable: CronTriggerTimetable) -> datetime:
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=UNPAUSED)
    assert info is not None
    return info.run_after


def test_unpausing_on_sunday_waits_for_the_next_friday(monkeypatch: pytest.MonkeyPatch) -> None:
    _at(monkeypatch, OPENED + timedelta(days=2))
    # Airflow's own trigger starts the Friday it missed: the cutover nobody asked for
    assert _first(CronTriggerTimetable(FRIDAY_6PM, timezone=NEW_YORK)) == OPENED
    window = WindowTimetable(FRIDAY_6PM, timezone=NEW_YORK, late_start=timedelta(minutes=30))
    assert _first(window) == NEXT


def test_within_the_tolerance_the_window_still_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    _at(monkeypatch, OPENED + timedelta(minutes=10))
    window = WindowTimetable(FRIDAY_6PM, timezone=NEW_YORK, late_start=timedelta(minutes=30))
    assert _first(window) == OPENED


def test_it_serializes_through_airflow_as_a_registered_timetable() -> None:
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    window = WindowTimetable(FRIDAY_6PM, timezone=NEW_YORK, late_start=timedelta(minutes=45))
    back = decode_timetable(encode_timetable(window))  # raises for a timetable no plugin registers
    assert isinstance(back, WindowTimetable)
    assert back.late_start == timedelta(minutes=45)
    assert back.summary == "0 18 * * 5, never more than 45 min late"
