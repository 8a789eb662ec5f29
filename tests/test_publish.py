"""The channel-service library (orchestrator/publish.py) and its runnable example,
against a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from orchestrator.publish import OUTCOME_NAMESPACE, Publisher, PublishError
from orchestrator.records import NextBestAction, Touchpoint
from orchestrator.topics import ensure_topics
from orchestrator.wire import decode_deadletter, decode_touchpoint, encode_action
from tests.conftest import read_topic

ROOT = Path(__file__).resolve().parent.parent


def action(n: int, channel: str = "sms") -> NextBestAction:
    return NextBestAction(
        action_id=f"act-{n}",
        customer_id=f"cust-{n}",
        journey_id="welcome",
        journey_version=1,
        instance_id="i1",
        step="text_hello",
        channel=channel,
        created_at=1_700_000_000_000 + n,
        template="hello",
    )


def publish_actions(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value, b"k")
    assert producer.flush(10) == 0


def test_outcome_ids_match_the_connectors_so_reports_de_duplicate():
    from connectors.outcomes import OUTCOME_NAMESPACE as CONNECTORS

    assert OUTCOME_NAMESPACE == CONNECTORS


def test_publish_needs_a_name_a_channel_and_a_customer():
    with Publisher("127.0.0.1:1") as p:
        with pytest.raises(ValueError, match="name and channel"):
            p.publish_touchpoint(name="X", customer_id="c")
        with pytest.raises(ValueError, match="customer_id or anonymous_id"):
            p.publish_touchpoint(name="X", channel="web")


def test_flush_raises_when_kafka_does_not_acknowledge():
    p = Publisher("127.0.0.1:1", timeout=1.0)
    p.publish_touchpoint(name="Order Completed", channel="store", customer_id="c1")
    with pytest.raises(PublishError, match="1"):
        p.flush(timeout=5.0)


@pytest.mark.kafka
def test_published_touchpoints_land_keyed_and_in_the_avro_schema(kafka, topics):
    ensure_topics(kafka.bootstrap, [topics.touchpoints], partitions=2)
    with Publisher(kafka.bootstrap, topics.prefix, source="pos") as p:
        made = p.publish_touchpoint(
            name="Order Completed",
            channel="store",
            customer_id="c-1",
            properties={"total": 12.5},
        )
        given = Touchpoint(
            event_id="fixed-id",
            type="track",
            name="Product Viewed",
            channel="web",
            occurred_at=1_700_000_000_000,
            anonymous_id="a-1",
        )
        assert p.publish_touchpoint(given) is given
    msgs = read_topic(kafka.bootstrap, topics.touchpoints, until=lambda got: len(got) >= 2)
    got = {m.key(): decode_touchpoint(m.value()) for m in msgs}
    assert got[b"c-1"] == made and made.source == "pos" and len(made.event_id) == 36
    assert got[b"anon:a-1"] == given


@pytest.mark.kafka
def test_an_action_not_processed_is_delivered_again_and_undecodable_ones_dead_letter(kafka, topics):
    topic = topics.actions("sms")
    ensure_topics(kafka.bootstrap, [topic, topics.deadletter, topics.touchpoints], partitions=1)
    values = [encode_action(action(1)), b"garbage", encode_action(action(2))]
    publish_actions(kafka.bootstrap, topic, [*values, encode_action(action(3))])
    seen: list[str] = []
    with Publisher(kafka.bootstrap, topics.prefix) as p:
        with pytest.raises(RuntimeError, match="provider down"):  # noqa: SIM117
            with p.consume_actions("sms", "gw", idle_timeout=20) as actions:
                for a in actions:
                    if a.action_id == "act-3":
                        raise RuntimeError("provider down")  # act-3 is not processed
                    seen.append(a.action_id)
                    p.publish_outcome(a, "Action Delivered")
        with p.consume_actions("sms", "gw", idle_timeout=2) as actions:
            again = [a.action_id for a in actions]
    assert seen == ["act-1", "act-2"]
    assert again == ["act-3"]  # redelivered; the processed ones are not
    (dl,) = read_topic(kafka.bootstrap, topics.deadletter, until=lambda got: len(got) >= 1)
    letter = decode_deadletter(dl.value())
    assert (letter.reason, letter.original_value, letter.source_offset) == (
        "undecodable",
        b"garbage",
        1,
    )
    outcomes = read_topic(kafka.bootstrap, topics.touchpoints, until=lambda got: len(got) >= 2)
    reported = sorted(decode_touchpoint(m.value()).action_id or "" for m in outcomes)
    assert reported == ["act-1", "act-2"]


@pytest.mark.kafka
def test_the_channel_service_example_runs(kafka, topics):
    ensure_topics(
        kafka.bootstrap,
        [topics.actions("sms"), topics.touchpoints, topics.deadletter],
        partitions=1,
    )
    publish_actions(kafka.bootstrap, topics.actions("sms"), [encode_action(action(7))])
    env = {
        **os.environ,
        "ROTA_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "ROTA_TOPIC_PREFIX": topics.prefix,
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "channel_service.py"), "--idle-timeout", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "sms: hello for cust-7" in done.stdout
    msgs = read_topic(kafka.bootstrap, topics.touchpoints, until=lambda got: len(got) >= 2)
    names = sorted(decode_touchpoint(m.value()).name for m in msgs)
    assert names == ["Action Delivered", "Order Completed"]
