"""Reading connector settings from environment variables, with errors that name them.

Each reader raises ``ConfigError(variable, problem)``; connectors call them from their
``from_config`` so a misconfigured connector fails at start, not at the first action.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from connectors.base import ConfigError

_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def required(env: Mapping[str, str], variable: str, hint: str = "") -> str:
    value = env.get(variable, "").strip()
    if not value:
        raise ConfigError(variable, "is required" + (f" ({hint})" if hint else ""))
    return value


def http_url(env: Mapping[str, str], variable: str) -> str:
    """A required absolute http(s) URL."""
    value = required(env, variable, "an http:// or https:// URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(variable, f"{value!r} is not an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(variable, f"{value!r} has an invalid port") from None
    return value


def seconds(
    env: Mapping[str, str], variable: str, default: float, *, maximum: float = 3600.0
) -> float:
    """An optional positive duration in seconds."""
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(variable, f"{raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= maximum:
        raise ConfigError(variable, f"must be > 0 and <= {maximum:g} seconds, got {raw!r}")
    return value


def channels(env: Mapping[str, str], variable: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of channel names (the suffixes of action topics)."""
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    bad = [n for n in names if not _CHANNEL.match(n)]
    if bad or not names:
        raise ConfigError(
            variable,
            f"{raw!r} is not a comma-separated list of channel names "
            "(lower-case letters, digits, '_' and '-')",
        )
    return names
