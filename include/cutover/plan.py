"""The cutover plan (``cutover_plan.yaml``): the downtime window and, for a phased migration, the waves.

One file is the source of truth for when a cutover may run: ``pt_cutover``'s timetable (the window's
start, in the plan's timezone), the wave a scheduled Friday migrates, the sample transfer's go/no-go
and the backup gate's age limit all read it.

>>> plan = parse_plan({"timezone": "UTC", "waves": [
...     {"name": "w1", "go_live": "2026-12-04", "clinics": [1]},
...     {"name": "w2", "go_live": "2026-12-11", "clinics": "remaining"}]})
>>> plan.wave_on(date(2026, 12, 11)).name, plan.wave_on(date(2026, 12, 18))
('w2', None)
>>> plan.cron
'0 18 * * 5'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from cutover.errors import ConfigError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
REMAINING: Literal["remaining"] = "remaining"
DEFAULT_PLAN = Path(__file__).resolve().parents[2] / "cutover_plan.yaml"


@dataclass(frozen=True)
class Wave:
    name: str
    go_live: date
    clinics: tuple[int, ...] | Literal["remaining"]
    """Legacy clinic ids, or ``remaining``: every clinic no earlier wave names (last wave only)."""


@dataclass(frozen=True)
class Plan:
    timezone: str
    start_weekday: int
    start_time: time
    end_weekday: int
    end_time: time
    safety_margin: float
    backup_max_age_hours: float
    waves: tuple[Wave, ...]
    late_start_minutes: float = 30.0
    """A scheduled cutover that starts later than its window's start plus this refuses (skips)."""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def late_start(self, window_start: datetime, started: datetime) -> str | None:
        """Why a scheduled run for the window opening at ``window_start`` may not start at ``started``
        (later than the plan's tolerance: a paused DAG unpaused days later, a scheduler that was
        down), None when it may. Ids and times only.

        >>> plan = parse_plan({"timezone": "America/New_York"})
        >>> opens = datetime(2026, 12, 4, 23, 0, tzinfo=ZoneInfo("UTC"))
        >>> plan.late_start(opens, opens + timedelta(minutes=29)) is None
        True
        >>> print(plan.late_start(opens, opens + timedelta(days=2, minutes=5)))
        the scheduled run for the window opening Fri 2026-12-04 18:00 America/New_York started 2 days, 0:05 late, beyond the plan's 30 min tolerance (window.late_start_minutes): refused, nothing touched; trigger pt_cutover by hand to migrate now
        """
        late = started - window_start
        if late <= timedelta(minutes=self.late_start_minutes):
            return None
        opens = window_start.astimezone(self.tz)
        return (
            f"the scheduled run for the window opening {opens:%a %Y-%m-%d %H:%M} {self.timezone} started "
            f"{str(late - timedelta(microseconds=late.microseconds))[:-3]} late, beyond the plan's "
            f"{self.late_start_minutes:g} min tolerance (window.late_start_minutes): refused, nothing "
            "touched; trigger pt_cutover by hand to migrate now"
        )

    @property
    def window_text(self) -> str:
        """The window in words, with its timezone: ``Fri 18:00 → Mon 06:00 America/New_York``."""
        days = [d[:3].capitalize() for d in WEEKDAYS]
        return (
            f"{days[self.start_weekday]} {self.start_time:%H:%M} → {days[self.end_weekday]} "
            f"{self.end_time:%H:%M} {self.timezone}"
        )

    @property
    def cron(self) -> str:
        """The window's start as a cron expression (in the plan's timezone): the phased timetable."""
        return f"{self.start_time.minute} {self.start_time.hour} * * {(self.start_weekday + 1) % 7}"

    def window_from(self, start_day: date) -> tuple[datetime, datetime]:
        """The window that opens on ``start_day`` (tz-aware start and end)."""
        start = datetime.combine(start_day, self.start_time, self.tz)
        days = (self.end_weekday - self.start_weekday) % 7
        end = datetime.combine(start_day + timedelta(days=days), self.end_time, self.tz)
        if end <= start:
            end += timedelta(days=7)
        return start, end

    def next_window(self, after: datetime) -> tuple[datetime, datetime]:
        """The next window that has not closed at ``after`` (the one in progress, if any)."""
        local = after.astimezone(self.tz)
        day = local.date() - timedelta(days=(local.weekday() - self.start_weekday) % 7)
        start, end = self.window_from(day)
        return (start, end) if end > after else self.window_from(day + timedelta(days=7))

    @property
    def window_hours(self) -> float:
        start, end = self.window_from(date(2026, 1, 2))
        return (end - start).total_seconds() / 3600

    def wave_on(self, day: date) -> Wave | None:
        return next((w for w in self.waves if w.go_live == day), None)

    def wave(self, name: str) -> Wave:
        for wave in self.waves:
            if wave.name == name:
                return wave
        raise ConfigError(f"cutover plan: no wave {name!r}; waves: {', '.join(w.name for w in self.waves)}")

    def earlier(self, wave: Wave) -> tuple[Wave, ...]:
        return self.waves[: self.waves.index(wave)]


def _weekday(value: Any, field: str) -> int:
    if str(value).lower() not in WEEKDAYS:
        raise ConfigError(f"cutover plan: {field} must be a weekday name, not {value!r}")
    return WEEKDAYS.index(str(value).lower())


def _time(value: Any, field: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"cutover plan: {field} must be HH:MM, not {value!r}") from None


def _minutes(value: Any, field: str) -> float:
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        minutes = -1.0
    if not 0 <= minutes < 7 * 24 * 60:
        raise ConfigError(f"cutover plan: {field} must be minutes from 0 to a week, not {value!r}")
    return minutes


def parse_plan(raw: dict[str, Any]) -> Plan:
    """Validate a plan; every mistake is a ConfigError naming the field."""
    timezone = str(raw.get("timezone", "UTC"))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"cutover plan: unknown timezone {timezone!r}") from None
    window = raw.get("window") or {}
    start, end = window.get("start") or {}, window.get("end") or {}
    waves: list[Wave] = []
    seen: set[int] = set()
    for n, item in enumerate(raw.get("waves") or []):
        name = str(item.get("name") or f"wave-{n + 1}")
        try:
            go_live = date.fromisoformat(str(item["go_live"]))
        except (KeyError, ValueError):
            raise ConfigError(f"cutover plan: wave {name} needs go_live as YYYY-MM-DD") from None
        clinics = item.get("clinics")
        if clinics == REMAINING:
            if n != len(raw["waves"]) - 1:
                raise ConfigError(f"cutover plan: only the last wave may take the remaining clinics ({name})")
            waves.append(Wave(name, go_live, REMAINING))
            continue
        ids = tuple(int(c) for c in clinics or ())
        if not ids or seen & set(ids):
            raise ConfigError(f"cutover plan: wave {name} needs clinic ids that no earlier wave names")
        seen |= set(ids)
        waves.append(Wave(name, go_live, ids))
    if len({w.go_live for w in waves}) != len(waves) or [w.go_live for w in waves] != sorted(
        w.go_live for w in waves
    ):
        raise ConfigError("cutover plan: waves need distinct go_live dates in order")
    plan = Plan(
        timezone=timezone,
        start_weekday=_weekday(start.get("weekday", "friday"), "window.start.weekday"),
        start_time=_time(start.get("time", "18:00"), "window.start.time"),
        end_weekday=_weekday(end.get("weekday", "monday"), "window.end.weekday"),
        end_time=_time(end.get("time", "06:00"), "window.end.time"),
        safety_margin=float(raw.get("safety_margin", 1.5)),
        backup_max_age_hours=float(raw.get("backup_max_age_hours", 24)),
        waves=tuple(waves),
        late_start_minutes=_minutes(window.get("late_start_minutes", 30), "window.late_start_minutes"),
    )
    for wave in plan.waves:
        if wave.go_live.weekday() != plan.start_weekday:
            raise ConfigError(
                f"cutover plan: wave {wave.name} goes live on {wave.go_live:%A}, not on the window's "
                f"{WEEKDAYS[plan.start_weekday]}"
            )
    return plan


def plan_path() -> Path:
    return Path(os.environ.get("CUTOVER_PLAN") or DEFAULT_PLAN)


def load_plan(path: Path | None = None) -> Plan:
    """The plan at ``path`` (default: ``CUTOVER_PLAN``, else the repository's ``cutover_plan.yaml``)."""
    path = path or plan_path()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"cutover plan {path} not found (set CUTOVER_PLAN)") from None
    return parse_plan(raw)
