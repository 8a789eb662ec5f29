"""The walking skeleton on a real broker: touchpoint → worker → action → webhook → outcome.

A real ``rota worker`` process runs a journey; the webhook connector (in this process)
delivers its actions to a real local HTTP server. The expected actions are not written
by hand: the pure decision core computes them from the same touchpoints, so the test
checks that the distributed system does exactly what the core decides.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from confluent_kafka import Producer
from conftest import read_topic, wait_for
from test_connector_webhook import HttpEndpoint

from connectors.runner import ConnectorRunner
from connectors.webhook import WebhookConnector
from orchestrator import wire
from orchestrator.clock import Clock
from orchestrator.core.decide import decide
from orchestrator.core.decision import TimerFired
from orchestrator.journey.catalog import Catalog
from orchestrator.records import CHANNELS, Context, Touchpoint
from orchestrator.topics import ensure_topics

pytestmark = pytest.mark.kafka

#: Sign-up → webhook "welcome" at once → an hour later (journey time) → webhook "tips".
JOURNEY = """
id: e2e_welcome
name: End-to-end welcome
version: 1
entry:
  event: Signed Up
  reentry: never
steps:
  welcome:
    type: action
    channel: webhook
    template: welcome
    next: wait_an_hour
  wait_an_hour:
    type: wait
    duration: 1h
    next: tips
  tips:
    type: action
    channel: webhook
    template: tips
    next: done
  done:
    type: end
"""

SPEED = 3600.0  # journey time runs an hour per second, so the wait fires in the test


def _signed_up(customer: str, at: int) -> Touchpoint:
    return Touchpoint(
        event_id=f"{customer}-signup",
        type="identify",
        name="Signed Up",
        channel="web",
        occurred_at=at,
        customer_id=customer,
        traits={"email": f"{customer}@example.com"},
        context=Context(timezone="UTC"),
    )


def _expected_action_ids(events: list[Touchpoint], catalog: Catalog) -> dict[str, str]:
    """What the pure core decides for these events, timers fired when due."""
    expected: dict[str, str] = {}
    for tp in events:
        d = decide(None, tp, catalog, customer_id=tp.subject)
        state = d.state
        pending = list(d.timers_set)
        expected.update({a.action_id: a.step for a in d.actions})
        while pending:
            timer = pending.pop(0)
            fired = TimerFired(timer.customer_id, timer.timer_id, timer.due_at, timer.due_at)
            d = decide(state, fired, catalog, customer_id=tp.subject)
            state = d.state
            pending.extend(d.timers_set)
            expected.update({a.action_id: a.step for a in d.actions})
    return expected


def test_touchpoints_become_webhook_deliveries_whose_outcomes_reenter_the_stream(
    kafka, topics, tmp_path, start_worker
):
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "e2e.yaml").write_text(JOURNEY)
    ensure_topics(kafka.bootstrap, topics.all_for(CHANNELS), partitions=4)
    clock = Clock(SPEED, int(time.time() * 1000))
    worker = start_worker(
        journeys,
        ROTA_CLOCK_SPEED=str(SPEED),
        ROTA_CLOCK_ORIGIN_MS=str(clock.origin_ms),
    )

    endpoint = HttpEndpoint()
    runner = ConnectorRunner(
        WebhookConnector.from_config({"ROTA_WEBHOOK_URL": endpoint.url}),
        bootstrap=kafka.bootstrap,
        topics=topics,
        now_ms=clock.now,
    )
    stop = threading.Event()
    connector = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    connector.start()
    try:
        now = clock.now()
        customers = [f"cust-{i}" for i in range(6)]
        first, rest = customers[:3], customers[3:]
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        for c in first:
            producer.produce(
                topics.touchpoints, key=c.encode(), value=wire.encode_touchpoint(_signed_up(c, now))
            )
        producer.produce(topics.touchpoints, key=b"poison", value=b"\x00 not a touchpoint")
        for c in rest:
            tp = _signed_up(c, now)
            producer.produce(topics.touchpoints, key=c.encode(), value=wire.encode_touchpoint(tp))
            # the same event again: the worker must not act twice
            producer.produce(topics.touchpoints, key=c.encode(), value=wire.encode_touchpoint(tp))
        assert producer.flush(10) == 0

        expected = _expected_action_ids(
            [_signed_up(c, now) for c in customers], Catalog.from_yaml(JOURNEY)
        )
        assert sorted(expected.values()) == ["tips"] * 6 + ["welcome"] * 6

        wait_for(
            lambda: len(endpoint.received) >= len(expected),
            timeout=60,
            what=f"{len(expected)} webhook deliveries",
        )
        delivered = {r.headers["Idempotency-Key"]: json.loads(r.body) for r in endpoint.received}
        assert len(endpoint.received) == len(expected)  # nothing twice
        assert set(delivered) == set(expected)
        for action_id, body in delivered.items():
            assert body["action_id"] == action_id
            assert body["step"] == expected[action_id]
            assert body["journey_id"] == "e2e_welcome" and body["channel"] == "webhook"
        assert {b["customer_id"] for b in delivered.values()} == set(customers)

        # The outcomes are on the touchpoint stream and the worker consumed them.
        outcomes = read_topic(
            kafka.bootstrap,
            topics.touchpoints,
            until=lambda msgs: len(_outcomes(msgs)) >= len(expected),
        )
        assert {o.action_id for o in _outcomes(outcomes)} == set(expected)
        assert {o.name for o in _outcomes(outcomes)} == {"Action Delivered"}
        wait_for(
            lambda: worker.total("rota_events_consumed_total", type="outcome") >= len(expected),
            timeout=30,
            what="the worker consuming the outcomes",
        )

        # The poison record is dead-lettered whole, and the events after it were processed.
        dead = read_topic(kafka.bootstrap, topics.deadletter, until=lambda msgs: len(msgs) >= 1)
        assert len(dead) == 1
        record = wire.decode_deadletter(dead[0].value())
        assert record.reason == "undecodable"
        assert record.original_value == b"\x00 not a touchpoint"
        assert record.original_key == b"poison"
        assert record.source_topic == topics.touchpoints and record.source_offset >= 0
        assert "not Avro single-object encoded" in record.detail
        assert worker.total("rota_deadletter_total", reason="undecodable") == 1
        assert worker.total("rota_events_duplicate_total") >= 3
        assert worker.total("rota_partitions_assigned") == 4
        assert worker.total("rota_rebalances_total") >= 1
        wait_for(
            lambda: worker.total("rota_state_customers") >= len(customers),
            timeout=10,
            what="the state-size gauge",
        )
    finally:
        stop.set()
        connector.join(timeout=30)
        endpoint.close()


def _outcomes(msgs) -> list[Touchpoint]:
    out = []
    for m in msgs:
        try:
            tp = wire.decode_touchpoint(m.value())
        except wire.DecodeError:
            continue
        if tp.type == "outcome":
            out.append(tp)
    return out
