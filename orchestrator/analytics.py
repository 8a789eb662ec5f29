"""What the running system records for measurement: one ``JourneyTransition`` per
funnel event, with who moved and when.

The core's ``FunnelEvent`` says what happened to a journey; Prometheus counts those,
which is enough for dashboards but not for experiments or attribution: those need the
customer, the instance and the decision time, to follow one instance from entry to
conversion and line it up with the actions it sent. The worker publishes these records
on ``<prefix>.analytics`` (``schemas/journey_transition.avsc``) and ``rota report``
reads them back (``orchestrator/report.py``). ``rota simulate`` builds the same records
with the same function, so a report over a simulation and one over the cluster agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import Struct

from orchestrator.core.decision import FunnelEvent

ENTERED = "entered"
STEP = "step"
CONVERTED = "converted"
EXITED = "exited"
COMPLETED = "completed"
#: The kinds that end an instance.
ENDINGS = frozenset({CONVERTED, EXITED, COMPLETED})


class JourneyTransition(Struct, gc=False):
    """One funnel event of one customer's journey instance (fields: see the schema).
    A Struct, immutable by convention: one is built per funnel event, ~0.6 per
    touchpoint and three per fired reminder (``orchestrator.core.state`` says why)."""

    customer_id: str
    journey_id: str
    journey_version: int
    instance_id: str | None
    kind: str
    step: str | None
    variant: str | None
    occurred_at: int
    trigger_event_id: str | None = None


def transitions(
    customer: str, funnel: Iterable[FunnelEvent], at: int, trigger_event_id: str | None
) -> list[JourneyTransition]:
    """The records of one decision's funnel events. ``at`` is the decision time (the
    touchpoint's ``occurred_at`` or the timer's firing time), ``trigger_event_id`` the
    touchpoint's id, None for a timer."""
    return [
        JourneyTransition(
            customer,
            f.journey_id,
            f.journey_version,
            f.instance_id,
            f.kind,
            f.step,
            f.variant,
            at,
            trigger_event_id,
        )
        for f in funnel
    ]
