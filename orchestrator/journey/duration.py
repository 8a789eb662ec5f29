"""Durations as journeys write them: ``90s``, ``15m``, ``48h``, ``3d``, ``2w``, ``1d12h``.

A negative sign is allowed where an offset makes sense (``-7d`` before a date).
"""

from __future__ import annotations

import re

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
PATTERN = r"^-?(\d+(ms|s|m|h|d|w))+$"
_WHOLE = re.compile(PATTERN)


def parse_duration(text: str) -> int:
    """Milliseconds in ``text``; ``ValueError`` with the accepted forms otherwise."""
    if not isinstance(text, str) or not _WHOLE.match(text.strip()):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 48h, 3d, 1d12h)")
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    return sign * sum(int(n) * _UNIT_MS[unit] for n, unit in _PART.findall(text))


def format_duration(ms: int) -> str:
    """The shortest exact form of ``ms`` (``parse_duration`` reads it back)."""
    if ms == 0:
        return "0s"
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNIT_MS[unit]
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return sign + "".join(parts)
