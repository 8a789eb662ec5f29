"""``rota deadletter list`` and ``replay`` against a real broker."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer
from conftest import read_topic

from orchestrator import wire
from orchestrator.deadletter import main
from orchestrator.topics import ensure_topics

pytestmark = pytest.mark.kafka


def _dead(reason: str, value: bytes, source: str, offset: int) -> bytes:
    return wire.encode_deadletter(
        wire.DeadLetter.now(
            reason=reason,
            detail=f"{reason} because",
            source_topic=source,
            source_partition=0,
            source_offset=offset,
            original_key=b"k",
            original_value=value,
        )
    )


def test_list_shows_reasons_and_replay_republishes_the_original_bytes(
    kafka, topics, monkeypatch, capsys
):
    ensure_topics(kafka.bootstrap, [topics.touchpoints, topics.deadletter], partitions=2)
    monkeypatch.setenv("ROTA_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("ROTA_TOPIC_PREFIX", topics.prefix)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topics.deadletter, value=_dead("undecodable", b"one", topics.touchpoints, 1))
    producer.produce(
        topics.deadletter, value=_dead("processing_error", b"two", topics.touchpoints, 2)
    )
    assert producer.flush(10) == 0

    assert main(["list"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["reason"] for r in rows) == ["processing_error", "undecodable"]
    assert {r["source"] for r in rows} == {
        f"{topics.touchpoints}[0]@1",
        f"{topics.touchpoints}[0]@2",
    }
    assert "2 dead letters" in err

    assert main(["replay", "--reason", "processing_error"]) == 0
    assert "replayed 1 records" in capsys.readouterr().out
    back = read_topic(kafka.bootstrap, topics.touchpoints, until=lambda msgs: len(msgs) >= 1)
    assert [(m.key(), m.value()) for m in back] == [(b"k", b"two")]
