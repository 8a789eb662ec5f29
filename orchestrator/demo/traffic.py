"""Demo traffic: a deterministic population of customers doing plausible things.

Customers sign up, browse on web and app, add to cart, check out (or abandon), buy in
store, open emails, answer NPS surveys and call the support line; a few are anonymous
visitors first. A small share of records is deliberately malformed, so the dead-letter
path shows up in the demo too. Same seed, same traffic.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import Producer

from orchestrator import wire
from orchestrator.clock import Clock
from orchestrator.kafka_security import producer_config
from orchestrator.records import Context, Touchpoint

FIRST_NAMES = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Tim", "Hedy", "Dennis", "Radia")
TIMEZONES = ("Europe/London", "Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC")
PRODUCTS = (("sku-tee", 25.0), ("sku-mug", 12.0), ("sku-hoodie", 60.0), ("sku-cap", 18.0))


@dataclass
class _Customer:
    id: str
    anonymous_id: str
    known: bool = False
    cart: list[str] = field(default_factory=list)
    orders: int = 0


@dataclass
class TrafficStats:
    published: int = 0
    malformed: int = 0
    failed: int = 0
    by_name: dict[str, int] = field(default_factory=dict)


class DemoTraffic:
    """Generates touchpoints; ``run`` publishes them at a steady rate."""

    def __init__(
        self,
        *,
        customers: int = 5000,
        seed: int = 7,
        clock: Clock | None = None,
        malformed_share: float = 0.002,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = clock or Clock()
        self.malformed_share = malformed_share
        self.population = [
            _Customer(id=f"cust-{i:06d}", anonymous_id=f"anon-{i:06d}") for i in range(customers)
        ]
        self._seq = 0
        self.stats = TrafficStats()

    def _event(
        self,
        c: _Customer,
        name: str,
        channel: str,
        *,
        kind: str = "track",
        known: bool | None = None,
        properties: dict | None = None,
        traits: dict | None = None,
    ) -> Touchpoint:
        self._seq += 1
        is_known = c.known if known is None else known
        return Touchpoint(
            event_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
            type=kind,
            name=name,
            channel=channel,
            occurred_at=self.clock.now(),
            customer_id=c.id if is_known else None,
            anonymous_id=None if is_known else c.anonymous_id,
            properties=properties or {},
            traits=traits or {},
            context=Context(timezone=TIMEZONES[int(c.id[-6:]) % len(TIMEZONES)], locale="en-GB"),
            source="demo",
        )

    def next_events(self) -> list[Touchpoint]:
        """The next little story of one random customer."""
        rng = self.rng
        c = rng.choice(self.population)
        if not c.known:
            if rng.random() < 0.5:
                return [self._event(c, "Page Viewed", "web", kind="page", properties={"path": "/"})]
            c.known = True
            name = rng.choice(FIRST_NAMES)
            return [
                self._event(
                    c,
                    "Signed Up",
                    rng.choice(("web", "app")),
                    kind="identify",
                    traits={
                        "email": f"{c.id}@example.com",
                        "phone": "+4470000" + c.id[-5:],
                        "first_name": name,
                        "email_consent": True,
                        "sms_consent": True,
                        "push_consent": rng.random() < 0.6,
                    },
                )
            ]
        roll = rng.random()
        channel = rng.choice(("web", "web", "app"))
        sku, price = rng.choice(PRODUCTS)
        if roll < 0.35:
            return [
                self._event(c, "Product Viewed", channel, properties={"sku": sku, "price": price})
            ]
        if roll < 0.55:
            c.cart.append(sku)
            return [
                self._event(c, "Product Added", channel, properties={"sku": sku, "price": price})
            ]
        if roll < 0.65 and c.cart:
            total = round(sum(p for s, p in PRODUCTS if s in c.cart), 2)
            events = [self._event(c, "Checkout Started", channel, properties={"total": total})]
            if rng.random() < 0.6:
                c.orders += 1
                events.append(
                    self._event(
                        c,
                        "Order Completed",
                        channel,
                        properties={
                            "order_id": f"o-{self._seq}",
                            "total": total,
                            "currency": "EUR",
                        },
                    )
                )
                c.cart.clear()
            return events
        if roll < 0.72:
            c.orders += 1
            return [
                self._event(
                    c,
                    "Order Completed",
                    "store",
                    properties={"order_id": f"o-{self._seq}", "total": price, "currency": "EUR"},
                )
            ]
        if roll < 0.84:
            return [self._event(c, rng.choice(("Email Opened", "Email Link Clicked")), "email")]
        if roll < 0.90:
            return [self._event(c, "Push Opened", "push")]
        if roll < 0.95 and c.orders:
            return [
                self._event(
                    c,
                    "NPS Submitted",
                    "email",
                    properties={"score": rng.choice((2, 5, 7, 8, 9, 10))},
                )
            ]
        return [
            self._event(
                c, "Support Call Completed", "call_centre", properties={"effort": rng.randint(1, 5)}
            )
        ]

    def records(self) -> Iterator[tuple[bytes | None, bytes]]:
        """(key, value) pairs, a few of them deliberately broken."""
        while True:
            if self.rng.random() < self.malformed_share:
                self.stats.malformed += 1
                yield b"broken", b'{"not": "avro"}'
                continue
            for tp in self.next_events():
                self.stats.by_name[tp.name] = self.stats.by_name.get(tp.name, 0) + 1
                yield tp.subject.encode(), wire.encode_touchpoint(tp)

    def run(
        self,
        bootstrap: str,
        topic: str,
        *,
        rate: float,
        stop: threading.Event,
        on_tick: Callable[[TrafficStats], None] | None = None,
    ) -> TrafficStats:
        """Publish about ``rate`` records/s until ``stop`` is set."""
        producer = Producer(
            {**producer_config(bootstrap), "linger.ms": 5, "enable.idempotence": True}
        )
        source = self.records()

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                self.stats.failed += 1

        started = time.monotonic()
        try:
            while not stop.is_set():
                due = int((time.monotonic() - started) * rate) - self.stats.published
                for _ in range(max(0, min(due, 5000))):
                    key, value = next(source)
                    producer.produce(topic, key=key, value=value, on_delivery=delivered)
                    self.stats.published += 1
                producer.poll(0)
                if on_tick:
                    on_tick(self.stats)
                stop.wait(0.01)
        finally:
            producer.flush(30)
        return self.stats
