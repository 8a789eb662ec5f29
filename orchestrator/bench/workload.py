"""The benchmark's workload: 50 generated journeys and a deterministic touchpoint stream.

The journeys come in three kinds, so that the share of events that reach a journey and
the share that produce an action are set exactly, not hoped for:

- *offer* journeys (``bench_offer_NN``): entered on ``Offer NN Requested`` when a CEL
  condition holds (it always does), they emit one email action and end. Every such
  event produces exactly one action.
- *browse* journeys (``bench_browse_NN``): entered on ``Offer NN Viewed``; they wait up
  to 7 days for ``Offer NN Clicked`` (a durable timer each). These events trigger or
  advance a journey without producing an action.
- one *reminder* journey (``bench_reminder``): entered on ``Reminder Scheduled``, it
  waits until the epoch-ms time in the customer's ``remind_at`` trait, then emits a
  ``log`` action. The timer phase arms it, one pending timer per customer.

Every other event (page and product views, cart, email opens, ...) changes only the
profile: no journey listens to it. Same seed, same stream.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator import wire
from orchestrator.records import Context, Touchpoint

TIMEZONES = ("Europe/London", "Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC")
#: (name, channel, type) of events no journey listens to: they update the profile only.
BACKGROUND = (
    ("Page Viewed", "web", "page"),
    ("Product Viewed", "web", "track"),
    ("Product Viewed", "app", "track"),
    ("Product Added", "web", "track"),
    ("Search Performed", "app", "track"),
    ("Email Opened", "email", "track"),
    ("Push Opened", "push", "track"),
    ("Order Completed", "store", "track"),
    ("Support Call Completed", "call_centre", "track"),
)
REMINDER_EVENT = "Reminder Scheduled"
REMINDER_JOURNEY = "bench_reminder"
#: Channels whose action topics the benchmark reads: channels without a contact point,
#: so every customer is reachable and the contact policy lets every action through.
OFFER_CHANNEL = "webhook"
REMINDER_CHANNEL = "log"


@dataclass(frozen=True)
class WorkloadSpec:
    """What the generated traffic looks like."""

    customers: int = 100_000
    """Customers the background, offer and browse events are spread over (uniformly)."""
    journeys: int = 50
    """Live journeys: one reminder journey, the rest split between offer and browse."""
    journey_share: float = 0.30
    """Share of events named for a journey - its trigger, or the event one of its steps
    waits for (actions included). Whether an instance enters or moves depends on the
    customer's state: a trigger while an instance is live, or a click with no instance
    waiting, is evaluated and changes nothing."""
    action_share: float = 0.10
    """Share of events that produce an action (a subset of ``journey_share``)."""
    seed: int = 7

    def __post_init__(self) -> None:
        if self.journeys < 3:
            raise ValueError("the workload needs at least 3 journeys")
        if not 0 <= self.action_share <= self.journey_share <= 1:
            raise ValueError("need 0 <= action share <= journey share <= 1")
        if self.customers < 1:
            raise ValueError("the workload needs at least one customer")

    @property
    def offer_journeys(self) -> int:
        return (self.journeys - 1) // 2

    @property
    def browse_journeys(self) -> int:
        return self.journeys - 1 - self.offer_journeys


def journeys_yaml(spec: WorkloadSpec) -> str:
    """Every journey of the workload, as one multi-document YAML text."""
    docs = []
    for i in range(spec.offer_journeys):
        docs.append(
            f"""id: bench_offer_{i:02d}
name: Offer {i:02d}
version: 1
priority: {i % 7}
entry:
  event: Offer {i:02d} Requested
  condition: event.properties.value >= 0.0
  reentry: always
steps:
  send:
    type: action
    channel: {OFFER_CHANNEL}
    template: offer_{i:02d}
    params: {{discount_pct: {5 + i % 20}}}
    next: done
  done:
    type: end
"""
        )
    for i in range(spec.browse_journeys):
        docs.append(
            f"""id: bench_browse_{i:02d}
name: Browse {i:02d}
version: 1
entry:
  event: Offer {i:02d} Viewed
  reentry: always
steps:
  wait_click:
    type: wait_for
    event: Offer {i:02d} Clicked
    timeout: 7d
    on_event: done
    on_timeout: done
  done:
    type: end
"""
        )
    docs.append(
        f"""id: {REMINDER_JOURNEY}
name: Reminder at a customer's chosen time
version: 1
entry:
  event: {REMINDER_EVENT}
  reentry: always
steps:
  until_due:
    type: wait
    until_trait: remind_at
    next: remind
  remind:
    type: action
    channel: {REMINDER_CHANNEL}
    template: reminder
    next: done
  done:
    type: end
"""
    )
    return "---\n".join(docs)


def write_journeys(spec: WorkloadSpec, directory: Path) -> Path:
    """Write the journeys where a worker's ``ROTA_JOURNEYS`` can point."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bench.yaml"
    path.write_text(journeys_yaml(spec), encoding="utf-8")
    return directory


@dataclass(frozen=True, slots=True)
class Generated:
    """One touchpoint, encoded, and whether it should produce an action."""

    key: bytes
    value: bytes
    event_id: str
    acts: bool


class Workload:
    """Deterministic touchpoints for ``spec``; each instance continues its own stream."""

    def __init__(self, spec: WorkloadSpec, *, seed_offset: int = 0) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed + seed_offset)
        self._contexts = [Context(timezone=tz, locale="en-GB") for tz in TIMEZONES]

    def _event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    def touchpoint(self, now_ms: int) -> tuple[Touchpoint, bool]:
        """The next event and whether it produces an action."""
        spec, rng = self.spec, self.rng
        n = rng.randrange(spec.customers)
        customer = f"cust-{n:07d}"
        context = self._contexts[n % len(self._contexts)]
        roll = rng.random()
        properties: dict[str, bool | int | float | str | None]
        if roll < spec.action_share:
            i = rng.randrange(spec.offer_journeys)
            name, channel, kind, acts = f"Offer {i:02d} Requested", "web", "track", True
            properties = {"value": round(rng.uniform(1, 200), 2), "campaign": f"c{i:02d}"}
        elif roll < spec.journey_share:
            i = rng.randrange(spec.browse_journeys)
            verb = "Viewed" if rng.random() < 0.5 else "Clicked"
            name, channel, kind, acts = f"Offer {i:02d} {verb}", "web", "track", False
            properties = {"campaign": f"c{i:02d}"}
        else:
            name, channel, kind = BACKGROUND[rng.randrange(len(BACKGROUND))]
            acts = False
            properties = {"sku": f"sku-{rng.randrange(500):03d}", "price": 19.5}
            if name == "Order Completed":
                properties = {"order_id": self._event_id()[:8], "total": 42.0, "currency": "EUR"}
        tp = Touchpoint(
            event_id=self._event_id(),
            type=kind,
            name=name,
            channel=channel,
            occurred_at=now_ms,
            customer_id=customer,
            properties=properties,
            context=context,
            source="bench",
        )
        return tp, acts

    def touchpoints(
        self, count: int, now_ms: int | None = None
    ) -> Iterator[tuple[Touchpoint, bool]]:
        """``count`` events occurring at ``now_ms`` (default: now)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        for _ in range(count):
            yield self.touchpoint(now)

    def encoded(self, count: int, now_ms: int | None = None) -> list[Generated]:
        """``count`` events, encoded up front so publishing them is not the bottleneck."""
        out = []
        for tp, acts in self.touchpoints(count, now_ms):
            assert tp.customer_id is not None
            out.append(
                Generated(tp.customer_id.encode(), wire.encode_touchpoint(tp), tp.event_id, acts)
            )
        return out

    def reminders(
        self, first: int, count: int, due_at: list[int], now_ms: int | None = None
    ) -> list[Generated]:
        """``count`` reminder customers (``timer-<n>`` from ``first``), each arming one
        timer due at ``due_at[k]``, published at ``now_ms`` (default: now)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        out = []
        for k in range(count):
            customer = f"timer-{first + k:07d}"
            tp = Touchpoint(
                event_id=self._event_id(),
                type="identify",
                name=REMINDER_EVENT,
                channel="app",
                occurred_at=now,
                customer_id=customer,
                traits={"remind_at": due_at[k]},
                context=self._contexts[k % len(self._contexts)],
                source="bench",
            )
            out.append(Generated(customer.encode(), wire.encode_touchpoint(tp), tp.event_id, True))
        return out
