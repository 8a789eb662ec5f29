import pytest
from confluent_kafka import Consumer, Producer

from orchestrator.broker import BrokerError, free_port, start_embedded, wait_until_ready
from orchestrator.topics import ensure_topics

pytestmark = pytest.mark.kafka


def test_broker_round_trips_a_record_and_topics_are_created_once(kafka, topics):
    created = ensure_topics(kafka.bootstrap, topics.all_for(["email"]), partitions=3)
    assert created == sorted(topics.all_for(["email"]))
    assert ensure_topics(kafka.bootstrap, topics.all_for(["email"]), partitions=3) == []

    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topics.touchpoints, key=b"c1", value=b"hello")
    assert producer.flush(10) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": topics.prefix,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topics.touchpoints])
    try:
        got = None
        for _ in range(100):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got = msg
                break
        assert got is not None and got.value() == b"hello" and got.key() == b"c1"
    finally:
        consumer.close()


def test_an_embedded_broker_starts_without_a_refused_connection_on_stderr(capfd):
    """librdkafka prints each refused connection; the readiness wait must not make one
    while the broker is still binding its port."""
    with start_embedded() as broker:
        assert broker.kind == "embedded"
    assert "Connection refused" not in capfd.readouterr().err


def test_waiting_for_a_port_nobody_listens_on_ends_with_a_clear_error():
    with pytest.raises(BrokerError, match="no connection accepted"):
        wait_until_ready(f"PLAINTEXT://127.0.0.1:{free_port()}", timeout=1.0)
