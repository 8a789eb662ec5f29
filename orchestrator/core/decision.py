"""What the decision core gives back: the seam between the pure core and its adapters.

The Faust worker, ``rota simulate`` and the tests all consume a ``Decision`` the same
way: persist ``state``, emit ``actions``, set and cancel timers, count ``funnel``.

These values are Structs, immutable by convention: several are built per event
(``orchestrator.core.state`` says why).
"""

from __future__ import annotations

from msgspec import Struct


class Timer(Struct, gc=False):
    """A wake-up the core asked for. ``timer_id`` is unique per customer; setting a
    timer with an existing id replaces it."""

    customer_id: str
    timer_id: str
    due_at: int


class TimerFired(Struct, gc=False):
    """Input to the core when a timer is due. ``now`` is the time the adapter fires it
    (simulated or wall clock), ``due_at`` the time it was set for."""

    customer_id: str
    timer_id: str
    due_at: int
    now: int


class FunnelEvent(Struct, gc=False):
    """One journey transition, for funnels and metrics.

    ``kind`` is one of: entered, step, converted, exited, completed.
    ``step`` is set for kind == "step" (the step the instance reached), and for the
    endings (the step the instance was at). ``variant`` is the split arm the instance
    was assigned, once assigned. ``instance_id`` says which of the customer's instances
    moved: conversions are attributed to the actions of that instance.
    """

    journey_id: str
    journey_version: int
    kind: str
    step: str | None = None
    variant: str | None = None
    instance_id: str | None = None
