from confluent_kafka import Consumer, Producer

from orchestrator.topics import ensure_topics

pytestmark = __import__("pytest").mark.kafka


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
