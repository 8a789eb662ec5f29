"""The worker's output producer: a flush means "in Kafka", on the real broker, and a
record Kafka never takes is an error, never a silent loss."""

from __future__ import annotations

import asyncio

import pytest
from conftest import read_topic

from orchestrator import broker as brokers
from orchestrator.topics import ensure_topics
from orchestrator.worker.outputs import OutputError, Outputs


@pytest.mark.kafka
def test_after_a_flush_every_record_is_in_kafka_on_its_keys_partition(kafka, topics):
    topic = topics.actions("email")
    ensure_topics(kafka.bootstrap, [topic], partitions=4)
    outputs = Outputs(kafka.bootstrap)
    for i in range(500):
        outputs.send(topic, f"c{i % 7}".encode(), f"v{i}".encode())
    asyncio.run(outputs.flush())
    got = read_topic(kafka.bootstrap, topic, until=lambda m: len(m) >= 500, timeout=30)
    assert sorted(m.value() for m in got) == sorted(f"v{i}".encode() for i in range(500))
    partitions: dict[bytes, set[int]] = {}
    for m in got:
        partitions.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in partitions.values())  # one partition per customer


def test_a_record_kafka_never_takes_fails_the_flush():
    nowhere = f"127.0.0.1:{brokers.free_port()}"
    outputs = Outputs(nowhere, delivery_timeout_ms=500)
    outputs.send("rota.actions.email", b"c1", b"lost?")
    with pytest.raises(OutputError, match="did not take the batch's outputs"):
        asyncio.run(outputs.flush())
