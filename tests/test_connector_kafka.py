"""The kafka connector forwards actions to a channel service's own topic, on the real
broker: the action's bytes as Rota publishes them (or its JSON form), keyed by customer,
with the action id as a header for the reader's de-duplication."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from conftest import wait_for
from test_connector_runner import action

from connectors.base import ConfigError, DeliveryStatus
from connectors.kafka import KafkaForwardConnector
from orchestrator.topics import ensure_topics
from orchestrator.wire import decode_action, encode_action

pytestmark = pytest.mark.kafka


def read_all(bootstrap: str, topic: str, count: int) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kafka-connector-test"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: list[Message] = []

        def more() -> bool:
            got.extend(m for m in consumer.consume(100, timeout=0.2) if m.error() is None)
            return len(got) >= count

        wait_for(more, timeout=20, what=f"{count} records on {topic}")
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("value_format", ["avro", "json"])
def test_actions_are_forwarded_keyed_by_customer_with_the_action_id(kafka, topics, value_format):
    target = f"{topics.prefix}.callcentre.tasks"
    ensure_topics(kafka.bootstrap, [target], partitions=2)
    connector = KafkaForwardConnector.from_config(
        {
            "ROTA_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "ROTA_KAFKA_FORWARD_TOPIC": target,
            "ROTA_KAFKA_FORWARD_FORMAT": value_format,
            "ROTA_KAFKA_FORWARD_CHANNELS": "call_centre",
        }
    )
    assert connector.channels == ("call_centre",)
    sent = [action(n, channel="call_centre") for n in range(3)]
    results = [connector.deliver(a) for a in sent]
    connector.close()

    assert all(r.status is DeliveryStatus.DELIVERED for r in results)
    assert all(r.provider_message_id.startswith(f"{target}:") for r in results)
    records = read_all(kafka.bootstrap, target, 3)
    by_id = {dict(m.headers())["rota-action-id"].decode(): m for m in records}
    assert sorted(by_id) == ["act-0", "act-1", "act-2"]
    for a in sent:
        record = by_id[a.action_id]
        assert record.key() == a.customer_id.encode()
        if value_format == "avro":
            assert record.value() == encode_action(a)
            assert decode_action(record.value()) == a
        else:
            assert json.loads(record.value()) == json.loads(json.dumps(a.to_json()))


def test_kafka_connector_needs_a_topic():
    with pytest.raises(ConfigError) as caught:
        KafkaForwardConnector.from_config({"ROTA_KAFKA_BOOTSTRAP": "k:9092"})
    assert caught.value.variable == "ROTA_KAFKA_FORWARD_TOPIC"
    with pytest.raises(ConfigError) as caught:
        KafkaForwardConnector.from_config({"ROTA_KAFKA_FORWARD_TOPIC": "t"})
    assert caught.value.variable == "ROTA_KAFKA_BOOTSTRAP"
