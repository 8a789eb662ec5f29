"""How fast a channel may be called: a token bucket per channel.

Providers meter their APIs (Twilio queues and then refuses above a number's rate, FCM
and SendGrid answer 429 past a quota), and a journey launch can put a million actions
on a topic in one second. The bucket holds up to ``burst`` tokens and gains
``per_second`` of them each second; every delivery attempt (retries included: they
reach the provider too) takes one, waiting for it when the bucket is empty. Over any
interval of ``t`` seconds at most ``burst + per_second * t`` attempts start.

The bucket is shared by all delivery threads of a runner. A waiting thread reserves
its token first and then sleeps outside the lock (the "virtual scheduling" form of the
algorithm), so threads are served in arrival order and none of them busy-waits.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``per_second`` sustained attempts per second, up to ``burst`` at once."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.per_second) or self.per_second <= 0:
            raise ValueError(f"per_second must be > 0, got {self.per_second}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"per_second[:burst]"``, e.g. ``"50"`` or ``"50:200"``; the burst defaults to
        one second's worth (at least 1)."""
        rate_text, _, burst_text = text.strip().partition(":")
        per_second = float(rate_text)
        if not math.isfinite(per_second) or per_second <= 0:
            raise ValueError(f"per_second must be a number > 0, got {rate_text!r}")
        burst = int(burst_text) if burst_text.strip() else max(1, math.ceil(per_second))
        return cls(per_second, burst)

    def __str__(self) -> str:
        return f"{self.per_second:g}/s, burst {self.burst}"


class TokenBucket:
    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; returns how many seconds to wait before using it (0 = now)."""
        with self._lock:
            now = self._clock()
            rate, burst = self.limit.per_second, self.limit.burst
            self._tokens = min(float(burst), self._tokens + (now - self._updated) * rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / rate

    def acquire(self, cancel: threading.Event) -> bool:
        """Wait for a token; False when ``cancel`` was set meanwhile (the token is then
        spent: a stopping runner does not care)."""
        wait = self.reserve()
        return wait <= 0 or not cancel.wait(wait)
