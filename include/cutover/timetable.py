"""pt_cutover's timetable: the plan's window start, every week, and never a window long past.

Airflow's :class:`~airflow.timetables.trigger.CronTriggerTimetable` without catch-up still schedules
the most recent past cron point when a DAG is unpaused: unpausing pt_cutover on a Sunday started a
real migration for the Friday it had missed. :class:`WindowTimetable` schedules a past point only
while it is within the plan's ``late_start`` of now, else the next window; and the run's own
``choose_scope`` refuses a late start anyway (a scheduler that was down). Registered with Airflow
by :mod:`cutover.airflow_plugin` (an ``airflow.plugins`` entry point), which serialization needs.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable


class WindowTimetable(CronTriggerTimetable):
    """A cron trigger that never schedules a point older than ``late_start`` (without catch-up)."""

    def __init__(self, cron: str, *, timezone: Any, late_start: datetime.timedelta) -> None:
        super().__init__(cron, timezone=timezone)
        self.late_start = late_start

    @property
    def summary(self) -> str:
        minutes = self.late_start.total_seconds() / 60
        return f"{self._expression}, never more than {minutes:g} min late"

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        info = super().next_dagrun_info(
            last_automated_data_interval=last_automated_data_interval, restriction=restriction
        )
        if info is None or restriction.catchup:
            return info
        from airflow._shared.timezones.timezone import coerce_datetime, utcnow

        now = coerce_datetime(utcnow())
        if info.run_after >= now - self.late_start:
            return info
        upcoming = self._align_to_next(now)  # the window long past is never started
        if restriction.latest is not None and restriction.latest < upcoming:
            return None
        return DagRunInfo.interval(coerce_datetime(upcoming - self._interval), upcoming)

    def serialize(self) -> dict[str, Any]:
        return {**super().serialize(), "late_start": self.late_start.total_seconds()}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> WindowTimetable:
        from airflow._shared.timezones.timezone import parse_timezone

        return cls(
            data["expression"],
            timezone=parse_timezone(data["timezone"]),
            late_start=datetime.timedelta(seconds=float(data["late_start"])),
        )
