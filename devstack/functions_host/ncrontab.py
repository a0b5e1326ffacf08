"""NCRONTAB schedules for timer triggers.

Azure Functions uses NCrontab with six fields ``{second} {minute} {hour} {day} {month}
{day-of-week}``; five-field expressions (no seconds) are also accepted by the host. An
``hh:mm:ss`` TimeSpan means "every interval" (App Service plans only in Azure; allowed here).
Times are UTC unless WEBSITE_TIME_ZONE names a time zone.
https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions
https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#timespan
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .appsettings import resolve_setting_expr
from .hostconfig import HostConfigError, parse_timespan


class ScheduleError(ValueError):
    """The schedule expression is invalid."""


def schedule_timezone(env: Mapping[str, str]) -> tzinfo:
    """WEBSITE_TIME_ZONE (IANA name on Linux plans) or UTC."""
    name = env.get("WEBSITE_TIME_ZONE") or env.get("TZ_FUNCTIONS")
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"WEBSITE_TIME_ZONE={name!r} is not a known IANA time zone") from exc


@dataclass(frozen=True)
class Schedule:
    expression: str
    tz: tzinfo = UTC

    def __post_init__(self) -> None:
        self._validate()

    @property
    def interval(self) -> timedelta | None:
        """Set when the schedule is a TimeSpan rather than a cron expression."""
        expr = self.expression.strip()
        if ":" in expr and " " not in expr:
            try:
                return parse_timespan(expr, what="timer schedule")
            except HostConfigError as exc:
                raise ScheduleError(str(exc)) from exc
        return None

    def _fields(self) -> tuple[str, bool]:
        parts = self.expression.split()
        if len(parts) == 6:
            return " ".join(parts), True
        if len(parts) == 5:
            return " ".join(parts), False
        raise ScheduleError(
            f"invalid NCRONTAB expression {self.expression!r}: expected 6 fields "
            "'{second} {minute} {hour} {day} {month} {day-of-week}'"
        )

    def _validate(self) -> None:
        if self.interval is not None:
            if self.interval <= timedelta(0):
                raise ScheduleError(f"timer interval must be positive: {self.expression!r}")
            return
        expr, seconds = self._fields()
        if not croniter.is_valid(expr, second_at_beginning=seconds):
            raise ScheduleError(f"invalid NCRONTAB expression {self.expression!r}")
        if re.search(r"[LW#?]", expr):
            # NCrontab has no L/W/#/? extensions; croniter would accept some of them.
            raise ScheduleError(f"NCRONTAB does not support L, W, # or ? : {self.expression!r}")

    def next_after(self, after: datetime) -> datetime:
        """First occurrence strictly after ``after`` (aware datetime), in UTC."""
        interval = self.interval
        if interval is not None:
            return after + interval
        expr, seconds = self._fields()
        local = after.astimezone(self.tz)
        # NCrontab requires day-of-month AND day-of-week to match (unlike Vixie cron's OR).
        it = croniter(expr, local, second_at_beginning=seconds, day_or=False)
        nxt: datetime = it.get_next(datetime)
        return nxt.astimezone(UTC)

    def occurrences(self, after: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        cur = after
        for _ in range(count):
            cur = self.next_after(cur)
            out.append(cur)
        return out


def parse_schedule(expr: str, env: Mapping[str, str], where: str = "timer schedule") -> Schedule:
    """Resolve ``%SETTING%`` then parse."""
    resolved = resolve_setting_expr(expr, env, where)
    return Schedule(resolved, schedule_timezone(env))
