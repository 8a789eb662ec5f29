"""A circuit breaker: stop calling an endpoint that keeps failing, probe it now and then.

Retries with backoff treat each action alone; when the provider is down, every action
still burns its attempts and ends dead-lettered, and the connector hammers a service
that is trying to recover. The breaker looks at the endpoint instead:

- **closed** (normal): calls go through; ``failure_threshold`` retryable failures in a
  row open it;
- **open**: no call is made. Actions are *not* failed or dropped - their delivery
  threads wait (at-least-once: they are delivered later, or abandoned uncommitted and
  read again after a restart). After ``cooldown`` seconds it turns half-open;
- **half-open**: exactly one call, the probe, goes through; the others keep waiting.
  The probe's success closes the circuit, its failure opens it for another cool-down.

A success is any answer that shows the endpoint works - a delivery, a rejection or a
bounce (the provider answered; the action was the problem). Only retryable failures
(timeouts, refused connections, 429, 5xx) count against it.

Each call gets a ``Permit`` naming the circuit's generation when it was allowed. Results
of calls allowed before the last state change are ignored: a slow call that started
while closed must not re-open a circuit its own probe just closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class CircuitState(IntEnum):
    """The values are the ``rota_connector_circuit_state`` gauge's."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class Permit:
    generation: int
    probe: bool


@dataclass(frozen=True, slots=True)
class CircuitSettings:
    failure_threshold: int = 5
    """Consecutive retryable failures that open the circuit."""
    cooldown: float = 15.0
    """Seconds the circuit stays open before a probe is allowed."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if not self.cooldown > 0:
            raise ValueError(f"cooldown must be > 0, got {self.cooldown}")


class CircuitBreaker:
    def __init__(
        self,
        settings: CircuitSettings | None = None,
        *,
        on_change: Callable[[CircuitState], None] = lambda _state: None,
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.25,
    ) -> None:
        """``on_change`` is called (under the breaker's lock, keep it quick) with every
        new state; ``poll`` bounds how long a waiting thread takes to notice a cancel."""
        self.settings = settings or CircuitSettings()
        self._on_change = on_change
        self._clock = clock
        self._poll = poll
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._cond = threading.Condition()
        on_change(CircuitState.CLOSED)

    @property
    def state(self) -> CircuitState:
        with self._cond:
            self._maybe_half_open()
            return self._state

    def try_acquire(self) -> Permit | None:
        """A permit to call now, or None while the circuit does not allow it."""
        with self._cond:
            return self._try_acquire()

    def acquire(self, cancel: threading.Event) -> Permit | None:
        """Wait until a call is allowed; None when ``cancel`` was set first."""
        with self._cond:
            while not cancel.is_set():
                permit = self._try_acquire()
                if permit is not None:
                    return permit
                wait = self._poll
                if self._state is CircuitState.OPEN:
                    remaining = self._opened_at + self.settings.cooldown - self._clock()
                    wait = min(wait, max(remaining, 0.001))
                self._cond.wait(wait)
            return None

    def record(self, permit: Permit, *, ok: bool) -> None:
        """What the call allowed by ``permit`` came to: ``ok`` = the endpoint answered."""
        with self._cond:
            if permit.generation != self._generation:
                return  # allowed before the last change of state: no longer telling
            if ok:
                self._failures = 0
                if self._state is not CircuitState.CLOSED:
                    self._set(CircuitState.CLOSED)
                return
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or (
                self._state is CircuitState.CLOSED
                and self._failures >= self.settings.failure_threshold
            ):
                self._opened_at = self._clock()
                self._set(CircuitState.OPEN)

    def release(self, permit: Permit) -> None:
        """The permit was not used (the action expired while waiting): free the probe."""
        with self._cond:
            if permit.probe and permit.generation == self._generation:
                self._probing = False
                self._cond.notify_all()

    def wake(self) -> None:
        """Let waiting threads look at their ``cancel`` event now."""
        with self._cond:
            self._cond.notify_all()

    # -- under the lock ---------------------------------------------------------------

    def _try_acquire(self) -> Permit | None:
        self._maybe_half_open()
        if self._state is CircuitState.CLOSED:
            return Permit(self._generation, probe=False)
        if self._state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return Permit(self._generation, probe=True)
        return None

    def _maybe_half_open(self) -> None:
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.settings.cooldown
        ):
            self._set(CircuitState.HALF_OPEN)

    def _set(self, state: CircuitState) -> None:
        self._state = state
        self._generation += 1
        self._probing = False
        if state is CircuitState.CLOSED:
            self._failures = 0
        self._on_change(state)
        self._cond.notify_all()
