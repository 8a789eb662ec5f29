"""Time in the customer's time zone, from event time alone (zoneinfo data, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.records import Scalar, parse_time


@lru_cache(maxsize=512)
def zone(name: str | None) -> ZoneInfo:
    """The named zone; UTC when unset or unknown (a bad trait must not stop a journey)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_local_time(now: int, minutes: int, tz: str | None) -> int:
    """The first instant at or after ``now`` when the local clock in ``tz`` shows
    ``minutes`` after midnight. On a day where that time does not exist (a DST gap),
    the wall time is interpreted by zoneinfo's fold rules, which moves it forward."""
    z = zone(tz)
    local = datetime.fromtimestamp(now / 1000, tz=UTC).astimezone(z)
    for days in range(3):
        day = local.date() + timedelta(days=days)
        candidate = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=z)
        at = int(candidate.timestamp() * 1000)
        if at >= now:
            return at
    raise AssertionError("unreachable: a local time occurs every day")


def trait_time(value: Scalar, tz: str | None) -> int | None:
    """A date or time held in a trait, as epoch ms: epoch ms, ISO-8601 time, or an ISO
    date (midnight in the customer's zone). None when it is not a time."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if len(text) == 10:
        try:
            d = datetime.strptime(text, "%Y-%m-%d")
        except ValueError:
            return None
        return int(d.replace(tzinfo=zone(tz)).timestamp() * 1000)
    try:
        return parse_time(text)
    except ValueError:
        return None
