"""Identity stitching on the real broker: visitors browse anonymously, sign in while
events keep arriving under both identities, and end up as one customer each - every
event counted once, the visitor's journey carried on under the customer's id."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Producer
from conftest import get_json, read_topic, wait_for

from orchestrator import broker as brokers
from orchestrator import wire
from orchestrator.clock import Clock
from orchestrator.kafka_security import producer_config
from orchestrator.records import CHANNELS, Touchpoint
from orchestrator.topics import ensure_topics

pytestmark = pytest.mark.kafka

#: At 3600x, the 12h wait is 12 s: long after every merge is through.
JOURNEY = """
id: browse_nudge
name: Browse nudge
version: 1
entry: {event: Product Viewed, reentry: never}
steps:
  wait: {type: wait, duration: 12h, next: nudge}
  nudge: {type: action, channel: web, template: nudge, next: done}
  done: {type: end}
"""
VISITORS = 20
PAGE_VIEWS = 4


def test_visitors_who_sign_in_become_one_customer_each(kafka, topics, tmp_path, start_worker):
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "browse.yaml").write_text(JOURNEY)
    ensure_topics(kafka.bootstrap, topics.all_for(CHANNELS), partitions=4)
    clock = Clock(3600.0, int(time.time() * 1000))
    port = brokers.free_port()
    worker = start_worker(
        journeys,
        ROTA_WEB_PORT=str(port),
        ROTA_CLOCK_SPEED=str(clock.speed),
        ROTA_CLOCK_ORIGIN_MS=str(clock.origin_ms),
    )
    producer = Producer(producer_config(kafka.bootstrap))
    n = 0

    def publish(name: str, *, anon: str | None = None, customer: str | None = None) -> None:
        nonlocal n
        n += 1
        tp = Touchpoint(
            event_id=f"ev-{n}",
            type="identify" if anon and customer else "track",
            name=name,
            channel="web",
            occurred_at=clock.now(),
            customer_id=customer,
            anonymous_id=anon,
        )
        producer.produce(
            topics.touchpoints, key=tp.subject.encode(), value=wire.encode_touchpoint(tp)
        )

    for v in range(VISITORS):
        publish("Product Viewed", anon=f"v{v}")
    for v in range(VISITORS):  # both identities busy while the link is made
        publish("Page Viewed", anon=f"v{v}")
        publish("Signed In", anon=f"v{v}", customer=f"c{v}")
        publish("Order Completed", customer=f"c{v}")
        for _ in range(PAGE_VIEWS - 1):
            publish("Page Viewed", anon=f"v{v}")
    assert producer.flush(10) == 0

    def merged(v: int) -> dict[str, Any] | None:
        status, body = get_json(port, f"/v1/customers/c{v}")
        linked = status == 200 and f"anon:v{v}" in body["identities"]["linked"]
        return body if linked else None

    for v in range(VISITORS):
        body = wait_for(
            lambda v=v: (
                (b := merged(v))
                and b["profile"]["event_counts"].get("Page Viewed") == PAGE_VIEWS
                and b["profile"]["event_counts"].get("Product Viewed") == 1
                and b
            ),
            timeout=90,
            what=f"visitor v{v} merged into c{v} with all their events",
        )
        assert body["profile"]["event_counts"] == {
            "Product Viewed": 1,
            "Page Viewed": PAGE_VIEWS,
            "Signed In": 1,
            "Order Completed": 1,
        }
        assert [j["journey_id"] for j in body["journeys"]] == ["browse_nudge"]
        assert get_json(port, f"/v1/customers/anon:v{v}")[0] == 404  # nothing left behind

    nudges = read_topic(
        kafka.bootstrap,
        topics.actions("web"),
        until=lambda msgs: len(msgs) >= VISITORS,
        timeout=90,
    )
    customers = sorted(wire.decode_action(m.value()).customer_id for m in nudges)
    assert customers == sorted(f"c{v}" for v in range(VISITORS))
    assert worker.total("rota_identities_merged_total") == VISITORS
