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
from connectors.circuit import CircuitSettings
from connectors.ratelimit import RateLimit

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


def flag(env: Mapping[str, str], variable: str, default: bool) -> bool:
    """An optional boolean: true/false, yes/no, on/off, 1/0."""
    raw = env.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(variable, f"{raw!r} is not a boolean (true/false)")


def integer(
    env: Mapping[str, str], variable: str, default: int, *, minimum: int = 1, maximum: int = 10**9
) -> int:
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(variable, f"{raw!r} is not an integer") from None
    if not minimum <= value <= maximum:
        raise ConfigError(variable, f"must be within [{minimum}, {maximum}], got {value}")
    return value


def choice(env: Mapping[str, str], variable: str, options: tuple[str, ...]) -> str:
    """One of ``options``; the first is the default."""
    raw = env.get(variable, "").strip().lower()
    if not raw:
        return options[0]
    if raw not in options:
        raise ConfigError(variable, f"{raw!r} is not one of {', '.join(options)}")
    return raw


def channel_variable(prefix: str, channel: str) -> str:
    """``ROTA_RATE_LIMIT_`` + ``call-centre`` -> ``ROTA_RATE_LIMIT_CALL_CENTRE``."""
    return prefix + channel.upper().replace("-", "_")


def rate_limits(env: Mapping[str, str], channels: tuple[str, ...]) -> dict[str, RateLimit]:
    """``ROTA_RATE_LIMIT_<CHANNEL>=per_second[:burst]`` for each of ``channels``."""
    limits: dict[str, RateLimit] = {}
    for channel in channels:
        variable = channel_variable("ROTA_RATE_LIMIT_", channel)
        raw = env.get(variable, "").strip()
        if not raw:
            continue
        try:
            limits[channel] = RateLimit.parse(raw)
        except ValueError:
            raise ConfigError(
                variable,
                f"{raw!r} is not per_second[:burst] (e.g. 50 or 50:200; rate > 0, burst >= 1)",
            ) from None
    return limits


def circuit(env: Mapping[str, str]) -> CircuitSettings:
    """``ROTA_CIRCUIT_FAILURES`` (default 5) and ``ROTA_CIRCUIT_COOLDOWN`` (seconds,
    default 15)."""
    return CircuitSettings(
        failure_threshold=integer(env, "ROTA_CIRCUIT_FAILURES", 5, maximum=10_000),
        cooldown=seconds(env, "ROTA_CIRCUIT_COOLDOWN", 15.0),
    )
