"""Where table recovery stops reading a changelog, on the real broker.

Recovery must read every record the previous owner wrote, even on a broker that
reports the high watermark too low (Tansu: the base offset of the last batch + 1).
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from orchestrator.topics import ensure_topics
from orchestrator.worker.faust_context import true_end_offsets

pytestmark = pytest.mark.kafka


def _reported_end(bootstrap: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rota-test-watermarks"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return high
    finally:
        consumer.close()


def test_the_end_is_after_the_last_record_written_in_several_batches(kafka, topics):
    topic = f"{topics.prefix}-changelog"
    ensure_topics(kafka.bootstrap, [topic], partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 50})
    for batch in range(3):
        for i in range(40):
            producer.produce(topic, partition=0, key=f"k{i}".encode(), value=bytes([batch]))
        assert producer.flush(10) == 0
    reported = {(topic, 0): _reported_end(kafka.bootstrap, topic, 0), (topic, 1): 0}

    ends = true_end_offsets(kafka.bootstrap, reported)

    assert ends == {(topic, 0): 120, (topic, 1): 0}  # the empty partition stays empty


def test_a_partition_that_never_answers_is_an_error_not_a_short_recovery(kafka, topics):
    missing = (f"{topics.prefix}-never-created", 0)
    with pytest.raises(RuntimeError, match="refusing to recover from a partial log"):
        true_end_offsets(kafka.bootstrap, {missing: 5}, deadline_s=2.0)
