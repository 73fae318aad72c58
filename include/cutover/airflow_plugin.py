"""Cutover's Airflow plugin: registers :class:`cutover.timetable.WindowTimetable`, which Airflow must
know to serialize pt_cutover. Loaded through the package's ``airflow.plugins`` entry point (so every
Airflow component where ``cutover`` is installed has it, with no plugins folder to copy)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cutover.timetable import WindowTimetable


class CutoverPlugin(AirflowPlugin):
    name = "cutover"
    timetables = [WindowTimetable]  # noqa: RUF012 (AirflowPlugin declares it a plain attribute)
