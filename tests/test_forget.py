"""Forgetting a customer on the real broker: state tombstoned, later events ignored."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from conftest import read_topic, wait_for
from journey_fixtures import WELCOME

from orchestrator import wire
from orchestrator.cli import main
from orchestrator.records import CHANNELS, Touchpoint
from orchestrator.topics import ensure_topics

pytestmark = pytest.mark.kafka


def _signup(event_id: str) -> bytes:
    return wire.encode_touchpoint(
        Touchpoint(
            event_id=event_id,
            type="identify",
            name="Signed Up",
            channel="web",
            occurred_at=1_000,
            customer_id="gone",
            traits={"email": "gone@example.com"},
        )
    )


def test_rota_forget_tombstones_the_state_and_suppresses_later_events(
    kafka, topics, tmp_path, start_worker, monkeypatch
):
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "welcome.yaml").write_text(WELCOME)
    ensure_topics(kafka.bootstrap, topics.all_for(CHANNELS), partitions=4)
    worker = start_worker(tmp_path / "journeys")
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topics.touchpoints, key=b"gone", value=_signup("first"))
    assert producer.flush(10) == 0
    wait_for(lambda: worker.total("rota_actions_emitted_total") == 1, what="the welcome")

    monkeypatch.setenv("ROTA_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("ROTA_TOPIC_PREFIX", topics.prefix)
    assert main(["forget", "gone"]) == 0
    wait_for(lambda: worker.total("rota_customers_forgotten_total") == 1, what="the erasure")

    changelog = f"{topics.prefix}-worker-customers-changelog"
    records = read_topic(
        kafka.bootstrap,
        changelog,
        until=lambda msgs: any(m.key() == b"gone" and m.value() is None for m in msgs),
    )
    assert any(m.key() == b"gone" and m.value() is not None for m in records)  # it existed

    producer.produce(topics.touchpoints, key=b"gone", value=_signup("second"))
    assert producer.flush(10) == 0
    wait_for(
        lambda: worker.total("rota_events_suppressed_forgotten_total") == 1,
        what="the later event to be ignored",
    )
    assert worker.total("rota_actions_emitted_total") == 1
