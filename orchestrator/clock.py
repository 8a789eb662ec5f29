"""Wall-clock time for the adapters (the core never reads a clock).

A demo can run time faster: with ``speed`` 3600, one real second is one simulated hour
from ``origin`` on, so journeys that wait hours or days show their later steps within
a minute. The worker's ticks and the demo traffic use the same clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    speed: float = 1.0
    origin_ms: int = 0

    def now(self) -> int:
        wall = int(time.time() * 1000)
        if self.speed == 1.0:
            return wall
        return self.origin_ms + int((wall - self.origin_ms) * self.speed)
