"""CloudEvents on Kafka -> touchpoints: the converter on events made by the official
CloudEvents SDK in both modes, and the bridge against a real broker, dead-lettering what
is invalid and committing only what Kafka took."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from orchestrator.ingest.cloudevents import (
    CloudEventMapping,
    InvalidCloudEvent,
    from_binary,
    from_kafka,
    from_structured,
)
from orchestrator.ingest.cloudevents_bridge import BridgeConfig, CloudEventsBridge
from orchestrator.records import parse_time
from orchestrator.topics import Topics, ensure_topics
from orchestrator.wire import decode_deadletter, decode_touchpoint
from tests.conftest import read_topic, wait_for

ce_http = pytest.importorskip("cloudevents.v1.http")
ce_kafka = pytest.importorskip("cloudevents.v1.kafka")

MAPPING = CloudEventMapping(
    names={"com.example.order.completed": "Order Completed"}, default_channel="store"
)
NOW = parse_time("2024-06-01T12:00:00Z")


def order_event(**extra: str) -> object:
    attributes = {
        "id": "evt-1",
        "source": "https://pos.example.com/store/12",
        "type": "com.example.order.completed",
        "subject": "cust-9",
        "time": "2024-06-01T11:59:00Z",
        "datacontenttype": "application/json",
        **extra,
    }
    data = {"order_id": "o-77", "total": 42.5, "items": [{"sku": "a", "qty": 2}]}
    return ce_http.CloudEvent(attributes, data)


def headers_of(msg) -> list[tuple[str, bytes]]:
    return list(msg.headers.items())


def test_binary_mode_event_becomes_a_touchpoint():
    msg = ce_kafka.to_binary(order_event())
    tp = from_kafka(headers_of(msg), msg.value, mapping=MAPPING, received_at=NOW)
    assert (tp.event_id, tp.type, tp.name, tp.customer_id, tp.channel) == (
        "evt-1",
        "track",
        "Order Completed",
        "cust-9",
        "store",
    )
    assert tp.occurred_at == parse_time("2024-06-01T11:59:00Z") and tp.received_at == NOW
    assert tp.source == "https://pos.example.com/store/12"
    assert tp.properties["total"] == 42.5
    assert json.loads(str(tp.properties["items"])) == [{"qty": 2, "sku": "a"}]


def test_structured_mode_event_becomes_the_same_touchpoint():
    binary = ce_kafka.to_binary(order_event())
    structured = ce_kafka.to_structured(order_event())
    a = from_kafka(headers_of(binary), binary.value, mapping=MAPPING, received_at=NOW)
    b = from_kafka(headers_of(structured), structured.value, mapping=MAPPING, received_at=NOW)
    assert a == b
    envelope = {**json.loads(structured.value), "datacontenttype": "application/json"}
    spec_form = json.dumps(envelope).encode()  # the binding's own content type
    c = from_kafka(
        [("content-type", b"application/cloudevents+json")],
        spec_form,
        mapping=MAPPING,
        received_at=NOW,
    )
    assert c == a


def test_extensions_name_the_customer_channel_event_and_kind():
    msg = ce_kafka.to_binary(
        order_event(
            customerid="cust-1",
            anonymousid="anon-1",
            rotaname="Purchase",
            rotachannel="call_centre",
            actionid="act-5",
            rotatype="outcome",
        )
    )
    tp = from_kafka(headers_of(msg), msg.value, mapping=MAPPING, received_at=NOW)
    assert (tp.customer_id, tp.anonymous_id, tp.name, tp.channel, tp.type, tp.action_id) == (
        "cust-1",
        "anon-1",
        "Purchase",
        "call_centre",
        "outcome",
        "act-5",
    )


def test_unmapped_type_is_the_name_and_identify_data_are_traits():
    tp = from_binary(
        {
            "ce_specversion": "1.0",
            "ce_id": "i1",
            "ce_source": "crm",
            "ce_type": "Profile Updated",
            "ce_customerid": "c",
            "ce_rotatype": "identify",
        },
        b'{"email": "x@example.com", "vip": true}',
        mapping=MAPPING,
        received_at=NOW,
    )
    assert (tp.name, tp.type, tp.occurred_at) == ("Profile Updated", "identify", NOW)
    assert tp.traits == {"email": "x@example.com", "vip": True} and tp.properties == {}


BASE = {"ce_specversion": "1.0", "ce_id": "1", "ce_source": "s", "ce_type": "t", "ce_subject": "c"}


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ({}, b"plain bytes", "not_a_cloudevent"),
        ({}, b'{"hello": "json"}', "not_a_cloudevent"),
        ({}, None, "not_a_cloudevent"),
        ({**BASE, "ce_specversion": "0.3"}, b"{}", "unsupported_specversion"),
        ({k: v for k, v in BASE.items() if k != "ce_id"}, b"{}", "missing_attribute"),
        ({k: v for k, v in BASE.items() if k != "ce_subject"}, b"{}", "no_customer"),
        ({**BASE, "ce_time": "noon"}, b"{}", "invalid_attribute"),
        ({**BASE, "ce_rotatype": "purchase"}, b"{}", "invalid_attribute"),
        ({**BASE, "content-type": "application/json"}, b"{not json", "invalid_data"),
        ({**BASE, "content-type": "application/protobuf"}, b"\x08\x01", "unsupported_content_type"),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", "unsupported_content_type"),
    ],
)
def test_invalid_cloudevents_are_refused_with_a_reason(headers, value, reason):
    pairs = [(k, v.encode()) for k, v in headers.items()]
    with pytest.raises(InvalidCloudEvent) as err:
        from_kafka(pairs, value, mapping=MAPPING, received_at=NOW)
    assert err.value.reason == reason


def test_structured_data_base64_and_text_data():
    envelope = {
        "specversion": "1.0",
        "id": "b1",
        "source": "s",
        "type": "Note Added",
        "subject": "c",
        "datacontenttype": "text/plain",
        "data_base64": "aGVsbG8=",
    }
    tp = from_structured(json.dumps(envelope).encode(), mapping=MAPPING, received_at=NOW)
    assert tp.properties == {"data": "hello"}


# -- the bridge, against Kafka ---------------------------------------------------------


@pytest.fixture
def bridge(kafka, topics: Topics) -> Iterator[CloudEventsBridge]:
    config = BridgeConfig(bootstrap=kafka.bootstrap, topics=topics, mapping=MAPPING)
    ensure_topics(
        kafka.bootstrap,
        [config.topic, topics.touchpoints, topics.deadletter],
        partitions=1,
    )
    b = CloudEventsBridge(config)
    stop = threading.Event()
    thread = threading.Thread(target=b.run, args=(stop,), daemon=True)
    thread.start()
    yield b
    stop.set()
    thread.join(10)
    b.close()


@pytest.mark.kafka
def test_bridge_converts_both_modes_and_dead_letters_the_invalid_with_original_bytes(
    kafka, topics, bridge
):
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    topic = bridge.config.topic
    binary = ce_kafka.to_binary(order_event(id="bin-1"))
    structured = ce_kafka.to_structured(order_event(id="str-1", subject="cust-10"))
    producer.produce(topic, binary.value, b"k1", headers=headers_of(binary))
    producer.produce(topic, structured.value, b"k2", headers=headers_of(structured))
    producer.produce(topic, b"not a cloudevent", b"k3")
    bad_headers = [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"s")]
    producer.produce(topic, b"{}", b"k4", headers=bad_headers)  # no type, no customer
    assert producer.flush(10) == 0

    tps = read_topic(kafka.bootstrap, topics.touchpoints, until=lambda got: len(got) >= 2)
    by_id = {decode_touchpoint(m.value()).event_id: m for m in tps}
    assert set(by_id) == {"bin-1", "str-1"}
    assert by_id["bin-1"].key() == b"cust-9" and by_id["str-1"].key() == b"cust-10"

    dls = read_topic(kafka.bootstrap, topics.deadletter, until=lambda got: len(got) >= 2)
    letters = sorted((decode_deadletter(m.value()) for m in dls), key=lambda d: d.source_offset)
    assert [(d.reason, d.original_key, d.original_value) for d in letters] == [
        ("not_a_cloudevent", b"k3", b"not a cloudevent"),
        ("missing_attribute", b"k4", b"{}"),
    ]
    assert all(d.component == "ingest:cloudevents" and d.source_topic == topic for d in letters)
    assert '"ce_id":"x"' in letters[1].detail  # binary-mode attributes are kept

    def committed() -> int:
        c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": bridge.config.group_id})
        try:
            (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
            return tp.offset
        finally:
            c.close()

    wait_for(lambda: committed() == 4, timeout=20, what="the bridge to commit all 4 records")
