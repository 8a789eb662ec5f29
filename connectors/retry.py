"""When to try a failed delivery again, and how long to wait first.

Exponential backoff with jitter: the n-th retry waits about ``base * multiplier**(n-1)``
seconds, capped at ``max_delay``, scaled down by a random factor so that many actions
failing together (a provider outage) do not all come back at the same instant. A
provider's ``Retry-After`` raises the wait, never past the cap: a hostile or broken
header must not park the connector for an hour.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from connectors.base import DeliveryResult, DeliveryStatus


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    """Attempts per action, the first included; 1 = never retry."""
    base_delay: float = 0.2
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.5
    """Fraction of the delay that is random: 0.5 waits between 50 % and 100 % of it."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def should_retry(self, result: DeliveryResult, attempts: int) -> bool:
        """After ``attempts`` attempts ended in ``result``, is another one allowed?"""
        return (
            result.status is DeliveryStatus.FAILED
            and result.retryable
            and attempts < self.max_attempts
        )

    def delay(
        self,
        attempts: int,
        retry_after: float | None = None,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        exponential = min(self.max_delay, self.base_delay * self.multiplier ** (attempts - 1))
        wait = exponential * (1.0 - self.jitter * rand())
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_delay)
